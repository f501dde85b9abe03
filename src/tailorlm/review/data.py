"""Expert review of a dataset version: a seeded sample, pass / fail / edit, and a pass rate with its interval.

"Have domain experts review a sample (100-500 examples) ... iterate until expert review passes at
95%+." A review draws a seeded random sample of a version's records (`start_data_review`), a
reviewer marks each one (`decide`: pass, fail with a reason, or edit), and `data_review_summary`
gives the pass rate with its Wilson 95% interval and whether it meets the target. The target is
judged on the interval, not the point: met when the whole interval is at or above it, missed when
the whole interval is below, undecided otherwise. An edit counts as not passing (the record needed
fixing). `finish_data_review` turns fails and edits into a new dataset version whose parent is the
reviewed one; the reviewed version is never changed.

Decisions are appended to `data_review_decisions`; the newest one for a record counts.

>>> review = start_data_review(project, "tickets", sample=200)  # doctest: +SKIP
>>> decide(project, review["id"], review["items"][0], "fail", "alice", reason="wrong label")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random

from tailorlm.errors import TailorError
from tailorlm.store import new_id, now

DECISIONS = ("pass", "fail", "edit")
DEFAULT_SAMPLE, DEFAULT_TARGET = 200, 0.95


def start_data_review(project, dataset: str, sample: int = DEFAULT_SAMPLE, seed: int = 0, split: str | None = None,
                      target: float = DEFAULT_TARGET, reviewer: str = "reviewer") -> dict:
    """Draw a seeded sample of `dataset` (NAME, NAME@HASH or NAME@ALIAS) and open a review over it."""
    from tailorlm.data.versions import load_records, resolve

    if sample < 1:
        raise TailorError(f"--sample must be at least 1, not {sample}")
    if not 0 < target <= 1:
        raise TailorError(f"the target pass rate must be in (0, 1], not {target}")
    manifest = resolve(project, dataset)
    ids = sorted(r.id for r in load_records(project, manifest, split))
    if not ids:
        raise TailorError(f"{manifest['id']} has no records to review")
    chosen = random.Random(seed).sample(ids, min(sample, len(ids)))
    review_id = new_id("dr-")
    project.store.insert("data_reviews", id=review_id, dataset_version=manifest["id"], split=split,
                         sample_size=len(chosen), seed=seed, target=target, created_by=reviewer, created_at=now())
    with project.store.engine.begin() as conn:  # one transaction: a 500-record sample is one write, not 500
        conn.execute(project.store._sa.text("INSERT INTO data_review_items (review_id, record_id, ord) VALUES (:r, :i, :o)"),
                     [{"r": review_id, "i": rid, "o": n} for n, rid in enumerate(chosen)])
    return {"id": review_id, "dataset_version": manifest["id"], "split": split, "sample_size": len(chosen),
            "of": len(ids), "seed": seed, "target": target, "items": chosen}


def get_review(project, review_id: str) -> dict:
    rows = project.store.select("data_reviews", id=review_id)
    if not rows:
        raise TailorError(f"no data review {review_id!r}; `tailor review report` lists them")
    return rows[0]


def items(project, review_id: str) -> list[dict]:
    """The sampled records in review order, each with its current decision (or None)."""
    from tailorlm.data.versions import load_records, resolve

    review = get_review(project, review_id)
    records = {r.id: r for r in load_records(project, resolve(project, review["dataset_version"]), review["split"])}
    latest = current_decisions(project, review_id)
    out = []
    for row in project.store.select("data_review_items", order_by="ord", review_id=review_id):
        r = records[row["record_id"]]
        out.append({"ord": row["ord"], "record": r.to_dict(), "decision": latest.get(r.id)})
    return out


def current_decisions(project, review_id: str) -> dict[str, dict]:
    """The newest decision for each reviewed record."""
    latest = {}
    for d in project.store.select("data_review_decisions", order_by="created_at, id", review_id=review_id):
        latest[d["record_id"]] = {**d, "edited": json.loads(d["edited"]) if d["edited"] else None}
    return latest


def decide(project, review_id: str, record_id: str, decision: str, reviewer: str, reason: str | None = None,
           edited: dict | None = None) -> dict:
    """Record a reviewer's decision on one sampled record: pass, fail (a reason is required) or edit
    (`edited` is the record's corrected content, in its kind's shape)."""
    from tailorlm.data.record import Record
    from tailorlm.registry.resolve import dataset

    review = get_review(project, review_id)
    if review["result_version"]:
        raise TailorError(f"review {review_id} is finished (it became {review['result_version']}); start a new one")
    if decision not in DECISIONS:
        raise TailorError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if not project.store.select("data_review_items", review_id=review_id, record_id=record_id):
        raise TailorError(f"record {record_id!r} is not in the sample of review {review_id}")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise TailorError("a decision needs the reviewer's name")
    reason = (reason or "").strip() or None
    if decision == "fail" and not reason:
        raise TailorError("a fail needs a reason (what is wrong with the record)")
    if decision == "edit":
        kind = dataset(project, review["dataset_version"]).kind
        _check_content(Record(record_id, kind, edited if isinstance(edited, dict) else {}))
    else:
        edited = None
    row = {"id": new_id("dd-"), "review_id": review_id, "record_id": record_id, "reviewer": reviewer,
           "decision": decision, "reason": reason, "edited": edited, "created_at": now()}
    project.store.insert("data_review_decisions", **row)
    return row


def _check_content(record) -> None:
    """An edit must still be a valid record of its kind: its fields, then the validate step's own check."""
    from tailorlm.data.steps import step_class

    need = {"chat": {"messages": list}, "preference": {"chosen": str, "rejected": str}, "text": {"text": str},
            "eval": {"input": list}}.get(record.kind, {})
    for field, kind in need.items():
        if not isinstance(record.content.get(field), kind):
            raise TailorError(f"the edited {record.kind} record needs {field!r} as a {kind.__name__}")
    try:
        verdict = step_class("validate")().keep(record)
    except (KeyError, TypeError, AttributeError) as e:
        raise TailorError(f"the edited record is not a valid {record.kind} record ({type(e).__name__}: {e})") from None
    if verdict is not True:
        raise TailorError(f"the edited record is not a valid {record.kind} record ({verdict[1]})")


def data_review_summary(project, review_id: str) -> dict:
    """Pass rate of the decided records with its Wilson 95% interval, and the verdict on the target."""
    from tailorlm.eval.stats import wilson_ci

    review = get_review(project, review_id)
    latest = current_decisions(project, review_id)
    counts = {d: sum(1 for x in latest.values() if x["decision"] == d) for d in DECISIONS}
    decided = sum(counts.values())
    reasons: dict[str, int] = {}
    for x in latest.values():
        if x["decision"] == "fail":
            reasons[x["reason"]] = reasons.get(x["reason"], 0) + 1
    out = {"id": review_id, "dataset_version": review["dataset_version"], "sample_size": review["sample_size"],
           "seed": review["seed"], "decided": decided, "pending": review["sample_size"] - decided, **counts,
           "fail_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])), "target": review["target"],
           "reviewers": sorted({x["reviewer"] for x in latest.values()}), "result_version": review["result_version"]}
    if not decided:
        return {**out, "pass_rate": None, "meets_target": None, "verdict": "no decisions yet"}
    ci = wilson_ci(counts["pass"], decided)
    target = review["target"]
    meets = True if ci["low"] >= target else False if ci["high"] < target else None
    verdict = (f"meets the {target:.0%} target (the whole interval is at or above it)" if meets else
               f"misses the {target:.0%} target (the whole interval is below it)" if meets is False else
               f"undecided: the interval {ci['low']:.1%}-{ci['high']:.1%} straddles the {target:.0%} target; review more records")
    return {**out, "pass_rate": {**ci, "method": "wilson"}, "meets_target": meets, "verdict": verdict}


def finish_data_review(project, review_id: str) -> dict:
    """Write the reviewed version without its failed records and with its edits, as a new version whose
    parent is the reviewed one; returns its manifest. Records nobody failed or edited are kept as they were."""
    from tailorlm.data.record import Record
    from tailorlm.data.versions import load_records, resolve, write_version

    review = get_review(project, review_id)
    if review["result_version"]:
        raise TailorError(f"review {review_id} already became {review['result_version']}")
    latest = current_decisions(project, review_id)
    if not any(d["decision"] in ("fail", "edit") for d in latest.values()):
        raise TailorError(f"review {review_id} has no fails or edits: the reviewed version {review['dataset_version']} "
                          "stands as it is")
    parent = resolve(project, review["dataset_version"])
    by_split: dict[str, list[Record]] = {}
    quarantine = []
    for split in parent["splits"]:
        for r in load_records(project, parent, split):
            d = latest.get(r.id)
            if d and d["decision"] == "fail":
                quarantine.append({"step": "review", "reason": d["reason"], "id": r.id, "record": r.content, "meta": r.meta,
                                   "reviewer": d["reviewer"], "review": review_id})
                continue
            if d and d["decision"] == "edit":
                r = Record(r.id, r.kind, d["edited"], {**r.meta, "edited_in_review": review_id})
            by_split.setdefault(split, []).append(r)
    kept = sum(len(v) for v in by_split.values())
    edits = sum(1 for d in latest.values() if d["decision"] == "edit")
    summary = {"step": "review", "params": {"review": review_id}, "kept": kept,
               "dropped": {"review_fail": len(quarantine)} if quarantine else {}, "stats": {"edited": edits}}
    read = sum(parent["splits"].values())
    manifest = {"kind": parent["kind"], "license": parent.get("license"), "parents": [parent["id"]], "origin": "review",
                "review": review_id, "sources": parent.get("sources", []), "steps": [*parent.get("steps", []), summary],
                "accounting": {"read": read, "rejected_by_readers": 0, "added": 0, "dropped_by_steps": len(quarantine),
                               "kept": kept, "holds": read == kept + len(quarantine)},
                "recipe": {"parent": parent["content_hash"], "review": review_id,
                           "decisions": sorted((d["record_id"], d["decision"], d["id"]) for d in latest.values())}}
    written = write_version(project, parent["name"], by_split, manifest, quarantine)
    project.store.update("data_reviews", {"id": review_id}, result_version=written["id"])
    return written


def list_data_reviews(project) -> list[dict]:
    return [data_review_summary(project, r["id"]) for r in project.store.select("data_reviews", order_by="created_at")]
