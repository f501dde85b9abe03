"""Eval reports and ladders: written and found one way, through the store's `reports` table.

Every report is a folder `.tailor/reports/ID/` with `report.json` (eval) or `ladder.json` (ladder),
indexed by a row in the store. Readers (`tailor reports`, `compare`, `gate`, `serve --check`,
`advise`, the workbench) find reports here and nowhere else, so they agree on which is newest:
the newest is the latest `created_at`, never a file's mtime (a copy or a `touch` changes that).

>>> latest(project, "ladder").recommendation["rung"]  # doctest: +SKIP
'sft'
"""

import json
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.registry.artifacts import Ladder, Report, ReportEntry

FILES = {"eval": "report.json", "ladder": "ladder.json"}


def save_report(project, report: dict, folder: Path) -> Report:
    """Write an eval report's report.json into `folder` and index it (a rerun replaces its row)."""
    path = folder / FILES["eval"]
    body = {k: v for k, v in report.items() if k != "path"}
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False), encoding="utf-8")
    report["path"] = str(path.relative_to(project.root))
    row = dict(suite=f"{report['suite']['name']}@{report['suite']['version']}", subject=report["subject"],
               n=len(report.get("examples") or []), metrics=report["metrics"], path=report["path"],
               created_at=report["created_at"])
    _index(project, report["id"], row)
    return Report.model_validate(report)


def save_ladder(project, ladder: dict, folder: Path) -> Ladder:
    """Write a ladder's ladder.json into `folder` and index it (subject `ladder`, as the store has always had it)."""
    path = folder / FILES["ladder"]
    ladder["path"] = str(path.relative_to(project.root))
    path.write_text(json.dumps(ladder, indent=1, ensure_ascii=False), encoding="utf-8")
    suite = ladder["suite"]
    _index(project, ladder["id"], dict(suite=f"{suite['name']}@{suite['version']}", subject="ladder", n=suite["n"],
                                       metrics={r["name"]: r["quality"] for r in ladder["rungs"]}, path=ladder["path"],
                                       created_at=ladder["created_at"]))
    return Ladder.model_validate(ladder)


def _index(project, rid: str, row: dict) -> None:
    if project.store.select("reports", id=rid):
        project.store.update("reports", {"id": rid}, **row)
    else:
        project.store.insert("reports", id=rid, **row)


def entries(project, kind: str | None = None) -> list[ReportEntry]:
    """Every report (eval and ladder, or one `kind`), oldest first: the store's rows, plus any report folder
    copied in without its row (from another machine, or written by hand), read from its file."""
    out, indexed = [], set()
    for r in project.store.select("reports", order_by="created_at"):
        metrics = json.loads(r["metrics"]) if isinstance(r["metrics"], str) else r["metrics"]
        out.append(ReportEntry.model_validate({**r, "metrics": metrics}))
        indexed.add(r["id"])
    unindexed = [e for e in (_unindexed(project, p) for p in sorted(project.artifacts("reports").glob("*/*.json")))
                 if e is not None and e.id not in indexed]
    if unindexed:
        out = sorted(out + unindexed, key=lambda e: e.created_at)  # stable: the store's order among equals
    return [e for e in out if kind is None or e.kind == kind]


def _unindexed(project, path: Path) -> ReportEntry | None:
    if path.name not in FILES.values():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # being written, or broken: not evidence
    suite = data.get("suite") or {}
    ladder = path.name == FILES["ladder"]
    return ReportEntry(id=data.get("id") or path.parent.name, subject="ladder" if ladder else data.get("subject", ""),
                       suite=f"{suite.get('name')}@{suite.get('version')}", n=suite.get("n") or 0,
                       metrics={} if ladder else data.get("metrics", {}), created_at=data.get("created_at", ""),
                       path=str(path.relative_to(project.root)))


def find(project, ref: str, kind: str | None = None) -> Report | Ladder:
    """A report by id, unique id prefix, or path to its report.json / ladder.json."""
    from tailorlm.paths import inside

    if ref.endswith(".json"):
        return load(project, inside(project.root, ref))
    matches = [project.root / e.path for e in entries(project, kind) if e.id.startswith(ref)]
    exact = [p for p in matches if p.parent.name == ref]
    if len(matches) != 1 and not exact:
        what = {"eval": "eval reports", "ladder": "ladder reports"}.get(kind, "reports")
        raise TailorError(f"{'no' if not matches else len(matches)} {what} match {ref!r}; "
                          "`tailor reports list` shows them" + ("; give more of the id" if matches else ""))
    return load(project, (exact or matches)[0])


def latest(project, kind: str = "eval", subject: str | None = None) -> Report | Ladder | None:
    """The newest report of `kind` (by created_at), optionally of one subject, whose file is still there."""
    for e in reversed(entries(project, kind)):
        if subject is not None and e.subject != subject:
            continue
        try:
            return load(project, project.root / e.path)
        except TailorError:
            continue  # deleted or torn: not evidence
    return None


def load(project, path: Path) -> Report | Ladder:
    """The report or ladder in a file, typed, with `path` relative to the project."""
    if not path.exists():
        raise TailorError(f"no report at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TailorError(f"{path}: cannot read the report: {e}") from e
    data["path"] = str(path.relative_to(project.root)) if path.is_relative_to(project.root) else str(path)
    return (Ladder if data.get("kind") == "ladder" or path.name == FILES["ladder"] else Report).model_validate(data)
