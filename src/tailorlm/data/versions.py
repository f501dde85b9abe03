"""Dataset versions: immutable, content-addressed outputs of a pipeline run.

A version lives in `.tailor/datasets/NAME/HASH/`:
- one Parquet file per split (`train.parquet`, `validation.parquet`, `test.parquet`, or `data.parquet`);
- `manifest.json`: sources with their hashes, steps with their parameters and counts, licence,
  parents, creation time and the content hash;
- `quarantine.jsonl`: every record the run did not keep, with its step and reason.

The id `NAME@HASH6` comes from the records and the recipe (sources and steps), so preparing the
same inputs with the same config gives the same id. Aliases such as `latest` point at versions.
"""

import json
import os
import shutil
import socket
import time
from pathlib import Path

from tailorlm.data.record import Record
from tailorlm.errors import TailorError
from tailorlm.paths import safe_name
from tailorlm.registry.artifacts import DatasetVersion
from tailorlm.registry.moves import move_alias
from tailorlm.registry.resolve import aliases, datasets, load_dataset
from tailorlm.store import now


def write_version(project, name: str, records_by_split: dict[str, list[Record]], manifest: dict,
                  quarantine: list[dict]) -> dict:
    """Write a version from lists (unless one with the same hash exists) and register it; returns the
    manifest. `tailor data prepare` streams into a `VersionWriter` instead and calls `register_version`."""
    from tailorlm.data.writer import VersionWriter

    with VersionWriter(project, name) as out:
        for q in quarantine:
            out.quarantine(q)
        for split, records in records_by_split.items():
            out.open_split(split)
            for r in records:
                out.add(r, split)
        return register_version(project, name, out, manifest)


def register_version(project, name: str, out, manifest: dict) -> dict:
    """Name the version a `VersionWriter` holds by its content hash, move it into place (unless one
    with the same hash exists) and register it; returns the manifest."""
    safe_name(name, "dataset name")
    digest = out.digest(manifest["recipe"])
    version_id = f"{name}@{digest[:6]}"
    folder = project.artifacts("datasets") / name / digest[:12]
    manifest = {**manifest, "id": version_id, "name": name, "content_hash": digest, "created_at": now(),
                "path": str(folder.relative_to(project.root)),
                "splits": dict(out.counts)}
    manifest = DatasetVersion.model_validate(manifest).to_dict()  # every producer's manifest has the one shape
    if not folder.exists():
        # Written aside (out.tmp) and renamed: a crash never leaves a half-written version behind.
        out.finish_into(folder, manifest)
        project.store.insert("dataset_versions", id=version_id, name=name, content_hash=digest, kind=manifest["kind"],
                             path=manifest["path"], n_records=sum(manifest["splits"].values()), manifest=manifest,
                             created_at=manifest["created_at"])
    else:
        manifest = load_dataset(project, manifest["path"]).to_dict()
        manifest["reused"] = True
    move_alias(project, "dataset", name, "latest", version_id)
    remove_stale_tmp(folder.parent)
    if "test" in out.counts and manifest["kind"] in ("chat", "preference"):
        move_alias(project, "suite", name, "golden", f"{version_id}:test", reason="test split of prepare")
    elif manifest["kind"] == "eval":
        move_alias(project, "suite", name, "golden", version_id, reason="eval source")
    return manifest


def remove_stale_tmp(parent: Path) -> list[Path]:
    """Delete the temporary folders that writers killed mid-write (kill -9, power loss) left in
    `parent`; a folder whose writer still runs on this machine is kept. Returns what was deleted."""
    host, removed = socket.gethostname(), []
    for tmp in parent.glob(".tmp-*"):
        pid, _, rest = tmp.name[len(".tmp-"):].partition("@")
        owner = rest.partition("@")[0]
        if not rest:  # named before writers signed their folders: stale once it is an hour old
            stale = time.time() - tmp.stat().st_mtime > 3600
        elif owner != host or not pid.isdigit():
            continue  # another machine's writer (a shared folder): only it knows whether it runs
        else:
            stale = not _alive(int(pid))
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def resolve(project, ref: str) -> dict:
    """A version's manifest from `NAME`, `NAME@latest`, `NAME@HASH` (a prefix will do), as a dict.

    Read through the typed layer (`tailorlm.registry.dataset`), so every reader sees the same fields.
    """
    from tailorlm.registry.resolve import dataset

    return dataset(project, ref).to_dict()


def load_records(project, manifest: dict, split: str | None = None) -> list[Record]:
    """The records of a version (one split, or all of them in split order)."""
    import pyarrow.parquet as pq

    folder = project.root / manifest["path"]
    splits = [split] if split else list(manifest["splits"])
    out = []
    for s in splits:
        if s not in manifest["splits"]:
            raise TailorError(f"{manifest['id']} has no split {s!r}; it has {', '.join(manifest['splits'])}")
        for row in pq.read_table(folder / f"{s}.parquet").to_pylist():
            out.append(Record(row["id"], row["kind"], json.loads(row["content"]), json.loads(row["meta"])))
    return out


def list_versions(project) -> list[dict]:
    latest = {a.name: a.target for a in aliases(project, "dataset", alias="latest")}
    return [{"id": v.id, "name": v.name, "kind": v.kind, "records": v.n_records, "created_at": v.created_at,
             "latest": latest.get(v.name) == v.id, "path": v.path} for v in datasets(project)]


def diff_versions(project, a: str, b: str) -> dict:
    """Records added, removed and changed between two versions, matched by id."""
    ma, mb = resolve(project, a), resolve(project, b)
    ra = {r.id: r for r in load_records(project, ma)}
    rb = {r.id: r for r in load_records(project, mb)}
    changed = sorted(i for i in ra.keys() & rb.keys() if ra[i].content_hash() != rb[i].content_hash())
    steps_a = {s["step"]: s["params"] for s in ma["steps"]}
    steps_b = {s["step"]: s["params"] for s in mb["steps"]}
    return {"a": ma["id"], "b": mb["id"], "added": sorted(rb.keys() - ra.keys()), "removed": sorted(ra.keys() - rb.keys()),
            "changed": changed,
            "steps_changed": sorted(k for k in steps_a.keys() | steps_b.keys() if steps_a.get(k) != steps_b.get(k)),
            "splits": {"a": ma["splits"], "b": mb["splits"]}}
