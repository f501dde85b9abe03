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
from tailorlm.loop.curate import served_answer

REVIEWED_COMMENT = "reviewed in the feedback queue"


# Each trace's feedback in one row, and its place in the queue: 0 disliked (thumbs down, rating 1-2), 1 nobody
# said anything, 2 liked, 3 already answered here. The store sorts and cuts, so the queue reads only what it shows.
_FEEDBACK = """SELECT trace_id, COUNT(*) AS n,
    MAX(CASE WHEN comment = :reviewed THEN 1 ELSE 0 END) AS reviewed,
    MAX(CASE WHEN (kind = 'thumbs' AND value = 'down') OR (kind = 'rating' AND value IN ('1', '2')) THEN 1 ELSE 0 END) AS bad
    FROM feedback GROUP BY trace_id"""
_PRIORITY = "CASE WHEN f.reviewed = 1 THEN 3 WHEN f.bad = 1 THEN 0 WHEN f.n > 0 THEN 2 ELSE 1 END"
_WORST_FIRST = (f"SELECT t.id, t.model, t.model_version, t.created_at, t.request, t.response, {_PRIORITY} AS priority "
                f"FROM traces t LEFT JOIN ({_FEEDBACK}) f ON f.trace_id = t.id {{where}} "
                "ORDER BY priority, t.created_at DESC, t.id DESC LIMIT :n OFFSET :skip")


def _worst_first(project, limit: int, include_reviewed: bool):
    """Trace rows in queue order, `limit` at a time (non-chat traces are skipped by the caller)."""
    sa = project.store._sa
    sql = sa.text(_WORST_FIRST.format(where="" if include_reviewed else "WHERE COALESCE(f.reviewed, 0) = 0"))
    skip = 0
    with project.store.engine.connect() as conn:
        while True:
            rows = [dict(r._mapping) for r in conn.execute(sql, {"reviewed": REVIEWED_COMMENT, "n": limit, "skip": skip})]
            yield from rows
            if len(rows) < limit:
                return
            skip += limit


def _feedback_of(project, ids: list[str]) -> dict[str, list[dict]]:
    sa, out = project.store._sa, {}
    with project.store.engine.connect() as conn:
        for start in range(0, len(ids), 500):  # bounded IN lists: SQLite and PostgreSQL both take 500 binds
            chunk = ids[start:start + 500]
            binds = ", ".join(f":i{n}" for n in range(len(chunk)))
            for r in conn.execute(sa.text(f"SELECT * FROM feedback WHERE trace_id IN ({binds}) ORDER BY created_at, id"),
                                  {f"i{n}": v for n, v in enumerate(chunk)}):
                out.setdefault(r.trace_id, []).append(dict(r._mapping))
    return out


def queue(project, limit: int = 100, include_reviewed: bool = True) -> list[dict]:
    """Chat traces for review, worst first; each with its question, answer and feedback.

    Disliked answers (thumbs down, a rating of 1 or 2) first, then answers nobody rated, then liked
    ones, then the ones already reviewed here; newest first within each. The store sorts and limits
    (one query with ORDER BY and LIMIT), so only the traces shown are read: a project with many
    thousands of traces opens its queue as fast as a small one.

    >>> [q["trace_id"] for q in queue(project, limit=3)]  # doctest: +SKIP
    ['tr0', 'tr2', 'tr1']
    """
    picked = []
    for t in _worst_first(project, limit, include_reviewed):
        messages, answer = json.loads(t["request"]).get("messages"), served_answer(json.loads(t["response"]))
        if messages and answer is not None:  # embeddings and completions have no conversation to correct
            picked.append((t, messages, answer))
            if len(picked) == limit:
                break
    feedback = _feedback_of(project, [t["id"] for t, _, _ in picked])
    return [{"trace_id": t["id"], "model": t["model"], "model_version": t.get("model_version"),
             "created_at": t["created_at"], "messages": messages, "answer": answer, "reviewed": t["priority"] == 3,
             "feedback": [{"kind": f["kind"], "value": f["value"], "comment": f["comment"]} for f in feedback.get(t["id"], [])],
             "priority": t["priority"]} for t, messages, answer in picked]


def waiting(project) -> dict:
    """How many served chat answers (status 200) wait for review, and how many of those people disliked,
    counted by the store without reading a trace."""
    sa = project.store._sa
    sql = (f"SELECT COUNT(*) AS waiting, SUM(CASE WHEN {_PRIORITY} = 0 THEN 1 ELSE 0 END) AS disliked FROM traces t "
           f"LEFT JOIN ({_FEEDBACK}) f ON f.trace_id = t.id WHERE COALESCE(f.reviewed, 0) = 0 "
           "AND t.endpoint = '/v1/chat/completions' AND t.status = 200")
    with project.store.engine.connect() as conn:
        row = conn.execute(sa.text(sql), {"reviewed": REVIEWED_COMMENT}).one()
    return {"waiting": int(row.waiting or 0), "disliked": int(row.disliked or 0)}


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
