"""Model versions: what a finished run registers, and how a name finds one.

A model version is a base model plus an adapter (or full weights) plus lineage: the run, the
dataset version, the config and the metrics. Ids look like `support:sft@v3`; aliases such as
`support@production` or `support@candidate` point at versions and are moved, never deleting anything.
The typed view and the one name resolver are `tailorlm.registry`.
"""

from tailorlm.registry.artifacts import ModelVersion
from tailorlm.registry.moves import move_alias
from tailorlm.store import now


def register(project, name: str, method: str, base_model: str, run_id: str | None, dataset_version: str | None,
             adapter_path: str | None = None, weights_path: str | None = None, lineage: dict | None = None,
             metrics: dict | None = None) -> dict:
    # Numbered under the store's lock: two runs finishing at once get v3 and v4, not v3 twice.
    def make_row(version: int) -> dict:
        row = dict(id=f"{name}:{method}@v{version}", name=name, version=version, base_model=base_model,
                   adapter_path=adapter_path, weights_path=weights_path, run_id=run_id, dataset_version=dataset_version,
                   lineage=lineage or {}, metrics=metrics or {}, created_at=now())
        ModelVersion.model_validate(row)  # refused before it is stored if readers could not read it back typed
        return row

    row = project.store.insert_numbered("model_versions", "version", {"name": name}, make_row)
    move_alias(project, "model", name, "latest", row["id"], reason=f"registered by run {run_id}")
    return row


def resolve(project, ref: str) -> dict:
    """A model version from its id (`support:sft@v3`) or an alias (`support@production`), as a dict.

    The one resolver is `tailorlm.registry.model`; this is its plain-dictionary form for older callers.
    """
    from tailorlm.registry.resolve import model

    return model(project, ref).to_dict()


def versions(project) -> list[dict]:
    """Every model version with its aliases (what `tailor models versions` lists), oldest first."""
    from tailorlm.registry.resolve import aliases, models

    out = []
    for v in models(project):
        names = [a.alias for a in aliases(project, "model", v.name, v.id)]
        out.append({"id": v.id, "base_model": v.base_model, "dataset_version": v.dataset_version, "run_id": v.run_id,
                    "metrics": v.metrics, "aliases": names, "path": v.path, "created_at": v.created_at})
    return out
