"""The one resolver: a name in the grammar of `names.py` -> a typed artifact, read through the store.

>>> model(project, "support@production").id  # doctest: +SKIP
'support:sft@v3'
>>> dataset(project, "tickets@latest").splits  # doctest: +SKIP
{'train': 180, 'validation': 20, 'test': 24}
"""

import json

from tailorlm.errors import TailorError
from tailorlm.paths import safe_name
from tailorlm.registry.artifacts import Alias, DatasetVersion, ModelVersion
from tailorlm.registry.names import model_alias, parse

HEX = set("0123456789abcdef")


def dataset(project, ref: str) -> DatasetVersion:
    """A dataset version from `NAME`, `NAME@ALIAS` (latest by default) or `NAME@HASH` (a prefix will do)."""
    n = parse(ref)
    name, tag = n.name, n.tag or "latest"
    if n.qualifier:
        raise TailorError(f"{ref!r} is not a dataset version: use NAME, NAME@ALIAS or NAME@HASH")
    safe_name(name, "dataset name")
    rows = project.store.select("dataset_versions", name=name)
    if not rows:
        raise TailorError(f"no dataset named {name!r}; `tailor data list` shows what exists")
    if not set(tag) <= HEX:
        target = alias_target(project, "dataset", name, tag)
        if target is None:
            raise TailorError(f"dataset {name!r} has no alias {tag!r}")
        tag = target.partition("@")[2]
    matches = [r for r in rows if r["content_hash"].startswith(tag)]
    if len(matches) != 1:
        raise TailorError(f"{ref!r} matches {len(matches)} versions of {name!r}; give more of the hash")
    return load_dataset(project, matches[0]["path"])


def datasets(project, name: str | None = None) -> list[DatasetVersion]:
    """Every dataset version (or one dataset's), oldest first, from the manifests the store keeps."""
    where = {"name": name} if name is not None else {}
    return [DatasetVersion.model_validate(json.loads(r["manifest"]))
            for r in project.store.select("dataset_versions", order_by="created_at", **where)]


def load_dataset(project, path: str) -> DatasetVersion:
    """The manifest in a version folder (relative to the project root), typed."""
    manifest_path = project.root / path / "manifest.json"
    try:
        return DatasetVersion.model_validate(json.loads(manifest_path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        raise TailorError(f"{manifest_path}: cannot read the dataset manifest: {e}") from e


def model(project, ref: str) -> ModelVersion:
    """A model version from its id (`support:sft@v3`) or an alias (`support@production`; `support:production`
    still works, with a one-time deprecation message)."""
    rows = project.store.select("model_versions", id=ref)
    if not rows:
        found = model_alias(project, ref)
        target = alias_target(project, "model", *found) if found else None
        rows = project.store.select("model_versions", id=target) if target else []
    if not rows:
        raise TailorError(f"no model version {ref!r}; `tailor models versions` lists them")
    return _model_row(rows[0])


def models(project) -> list[ModelVersion]:
    """Every model version, oldest first."""
    return [_model_row(r) for r in project.store.select("model_versions", order_by="created_at")]


def _model_row(row: dict) -> ModelVersion:
    row = dict(row)
    for key in ("lineage", "metrics"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return ModelVersion.model_validate(row)


def aliases(project, scope: str | None = None, name: str | None = None, target: str | None = None,
            alias: str | None = None) -> list[Alias]:
    """Aliases, filtered by scope, name, target and alias, ordered by scope, name and alias."""
    where = {k: v for k, v in (("scope", scope), ("name", name), ("target", target), ("alias", alias)) if v is not None}
    return [Alias.model_validate(r) for r in project.store.select("aliases", order_by="scope, name, alias", **where)]


def alias_target(project, scope: str, name: str, alias: str) -> str | None:
    """The id `name@alias` points at in `scope` (model | dataset | suite), or None."""
    return project.store.get_alias(scope, name, alias)


def summary(project) -> dict[str, tuple[int, str | None]]:
    """(rows, newest time) of the dataset versions, model versions, reports and aliases: what the workbench
    counts, and how it sees cheaply that something was prepared, registered, reported or moved."""
    store = project.store
    return {table: (store.count(table), store.newest(table, column)) for table, column in (
        ("dataset_versions", "created_at"), ("model_versions", "created_at"), ("reports", "created_at"),
        ("aliases", "updated_at"))}
