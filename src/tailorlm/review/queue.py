"""The feedback queue: served answers people disliked, first, for a reviewer to correct or accept.

`queue` lists chat traces with their feedback, thumbs-down and low ratings (1-2) first, then
unrated ones, then liked ones, newest first within each group; traces a reviewer already answered drop to the end.
`answer` stores the reviewer's correct answer as a `correction` on the trace (through
`serve.traces.add_feedback`, so it is redacted like any feedback), and `accept` marks the served
answer good with a thumbs up. Both land where `tailor loop` reads (`loop.curate.collect`), and
`next_loop` shows what the next loop would train on, without writing anything.
"""

from __future__ import annotations

import json

from tailorlm.errors import TailorError
from tailorlm.loop.curate import _answer as served_answer

REVIEWED_COMMENT = "reviewed in the feedback queue"


def _priority(signals: list[dict], reviewed: bool) -> int:
    if reviewed:
        return 3
    bad = any(f["kind"] == "thumbs" and f["value"] == "down" or f["kind"] == "rating" and f["value"] in ("1", "2")
              for f in signals)
    return 0 if bad else 2 if signals else 1  # liked answers after the ones nobody rated


def queue(project, limit: int = 100, include_reviewed: bool = True) -> list[dict]:
    """Chat traces for review, worst first; each with its question, answer and feedback.

    Only the traces that have feedback and the newest `limit` others are read, so a project with
    many thousands of traces opens its queue as fast as a small one.
    """
    feedback: dict[str, list[dict]] = {}
    for f in project.store.select("feedback", order_by="created_at"):
        feedback.setdefault(f["trace_id"], []).append(f)
    sa = project.store._sa
    with project.store.engine.connect() as conn:
        newest = [dict(r._mapping) for r in conn.execute(
            sa.text("SELECT * FROM traces ORDER BY created_at DESC LIMIT :n"), {"n": limit})]
        ids = sorted(feedback.keys() - {t["id"] for t in newest})
        rated = []
        for start in range(0, len(ids), 500):  # bounded IN lists: SQLite and PostgreSQL both take 500 binds
            chunk = ids[start:start + 500]
            binds = ", ".join(f":i{n}" for n in range(len(chunk)))
            rated += [dict(r._mapping) for r in conn.execute(
                sa.text(f"SELECT * FROM traces WHERE id IN ({binds})"), {f"i{n}": v for n, v in enumerate(chunk)})]
    rows = []
    for t in sorted(newest + rated, key=lambda t: t["created_at"], reverse=True):
        request, response = json.loads(t["request"]), json.loads(t["response"])
        messages, answer = request.get("messages"), served_answer(response)
        if not messages or answer is None:
            continue
        signals = feedback.get(t["id"], [])
        reviewed = any(f["comment"] == REVIEWED_COMMENT for f in signals)
        if reviewed and not include_reviewed:
            continue
        rows.append({"trace_id": t["id"], "model": t["model"], "model_version": t.get("model_version"),
                     "created_at": t["created_at"], "messages": messages, "answer": answer, "reviewed": reviewed,
                     "feedback": [{"kind": f["kind"], "value": f["value"], "comment": f["comment"]} for f in signals],
                     "priority": _priority(signals, reviewed)})
    rows.sort(key=lambda r: r["priority"])  # stable: newest first within a priority
    return rows[:limit]


def answer(project, trace_id: str, correction: str, reviewer: str) -> dict:
    """The reviewer's correct answer for a served trace: a correction the next loop trains on."""
    from tailorlm.serve.traces import add_feedback

    if not (correction or "").strip():
        raise TailorError("write the correct answer (it is empty)")
    return {**add_feedback(project, trace_id, correction=correction.strip(), comment=REVIEWED_COMMENT), "reviewer": reviewer}


def accept(project, trace_id: str, reviewer: str) -> dict:
    """The served answer is right: a thumbs up, which pairs with a thumbs-down answer to the same prompt."""
    from tailorlm.serve.traces import add_feedback

    return {**add_feedback(project, trace_id, thumbs="up", comment=REVIEWED_COMMENT), "reviewer": reviewer}


def next_loop(project) -> dict:
    """What the next `tailor loop` would curate from feedback: its SFT examples and preference pairs (uncurated)."""
    from tailorlm.loop.curate import collect

    sft, prefs, counts = collect(project)
    return {"counts": counts,
            "sft": [{"id": r.id, "trace": r.meta.get("trace"), "messages": r.content["messages"]} for r in sft],
            "preference": [{"id": r.id, "chosen": r.content["chosen"], "rejected": r.content["rejected"]} for r in prefs],
            "note": "before curation: the loop then drops duplicates, PII and anything overlapping an eval suite"}
