"""Model versions: what a finished run registers, and how a name finds one.

A model version is a base model plus an adapter (or full weights) plus lineage: the run, the
dataset version, the config and the metrics. Ids look like `support:sft@v3`; aliases such as
`production` or `candidate` point at versions and are moved, never deleting anything.
"""

import json

from tailorlm.errors import TailorError
from tailorlm.store import now


def register(project, name: str, method: str, base_model: str, run_id: str | None, dataset_version: str | None,
             adapter_path: str | None = None, weights_path: str | None = None, lineage: dict | None = None,
             metrics: dict | None = None) -> dict:
    # Numbered under the store's lock: two runs finishing at once get v3 and v4, not v3 twice.
    row = project.store.insert_numbered("model_versions", "version", {"name": name}, lambda version: dict(
        id=f"{name}:{method}@v{version}", name=name, version=version, base_model=base_model, adapter_path=adapter_path,
        weights_path=weights_path, run_id=run_id, dataset_version=dataset_version,
        lineage=lineage or {}, metrics=metrics or {}, created_at=now()))
    mid = row["id"]
    project.store.set_alias("model", name, "latest", mid, reason=f"registered by run {run_id}")
    return row


def resolve(project, ref: str) -> dict:
    """A model version from its id (`support:sft@v3`) or `NAME@ALIAS` (`support@production`)."""
    rows = project.store.select("model_versions", id=ref)
    if not rows and "@" in ref and ":" not in ref:
        name, alias = ref.split("@", 1)
        target = project.store.get_alias("model", name, alias)
        rows = project.store.select("model_versions", id=target) if target else []
    if not rows:
        raise TailorError(f"no model version {ref!r}; `tailor models versions` lists them")
    row = dict(rows[0])
    row["lineage"], row["metrics"] = json.loads(row["lineage"]), json.loads(row["metrics"])
    return row


def versions(project) -> list[dict]:
    out = []
    for r in project.store.select("model_versions", order_by="created_at"):
        aliases = [a["alias"] for a in project.store.select("aliases", scope="model", name=r["name"], target=r["id"])]
        out.append({"id": r["id"], "base_model": r["base_model"], "dataset_version": r["dataset_version"],
                    "run_id": r["run_id"], "metrics": json.loads(r["metrics"]), "aliases": aliases,
                    "path": r["adapter_path"] or r["weights_path"], "created_at": r["created_at"]})
    return out
