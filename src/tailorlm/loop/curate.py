"""Feedback into training data: corrections become SFT examples, contrasts become DPO pairs.

- A correction on a trace: an SFT example (the trace's messages, answered by the correction) and a
  preference pair (the correction chosen over the answer that was served).
- Thumbs up and thumbs down on answers to the same prompt: a preference pair (up over down).
- Every thumb on its own: a KTO example (`thumb_records`: the answer, marked up or down in
  `meta.label`), which the loop trains on when there are thumbs but no pairs.

The records go through the data pipeline's own steps (exact dedup, PII, decontaminate against the
eval suites), so feedback can neither leak an eval example into training nor bring PII back in,
and are written as dataset versions `feedback-sft`, `feedback-dpo` and `feedback-kto` with the trace ids in `meta`.
"""

import json

from tailorlm.data.record import Record

CURATION_STEPS = ("exact_dedup", "pii", "decontaminate")


def served_answer(response: dict) -> str | None:
    """The answer text of a stored OpenAI-shaped response (chat or legacy completion); None without choices."""
    choices = response.get("choices") or []
    if not choices:
        return None
    c = choices[0]
    return (c.get("message") or {}).get("content") if "message" in c else c.get("text")


def _traces_with_feedback(project) -> dict[str, dict]:
    """The traces someone gave feedback on, by id: only those are read, however many were served."""
    sa = project.store._sa
    with project.store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(
            sa.text("SELECT * FROM traces WHERE id IN (SELECT trace_id FROM feedback)"))}


def collect(project) -> tuple[list[Record], list[Record], dict]:
    """(sft records, preference records, counts) from every feedback row with a chat trace."""
    traces = _traces_with_feedback(project)
    by_trace: dict[str, list[dict]] = {}
    for f in project.store.select("feedback", order_by="created_at"):
        by_trace.setdefault(f["trace_id"], []).append(f)
    sft, prefs, thumbs = [], [], {}
    for trace_id, rows in by_trace.items():
        t = traces.get(trace_id)
        if t is None:
            continue
        request, response = json.loads(t["request"]), json.loads(t["response"])
        messages, answer = request.get("messages"), served_answer(response)
        if not messages or answer is None:
            continue  # embeddings and completions carry no conversation to learn from
        meta = {"source": "feedback", "trace": trace_id, "model": t["model"], "model_version": t.get("model_version")}
        for f in rows:
            if f["kind"] == "correction" and f["value"].strip() and f["value"].strip() != answer.strip():
                sft.append(Record(f"fb-{trace_id}", "chat", {"messages": messages + [{"role": "assistant", "content": f["value"]}]},
                                  dict(meta)))
                prefs.append(Record(f"fbp-{trace_id}", "preference",
                                    {"prompt": messages, "chosen": f["value"], "rejected": answer}, dict(meta)))
            elif f["kind"] == "thumbs":
                key = json.dumps(messages, sort_keys=True)
                thumbs.setdefault(key, {"up": [], "down": [], "messages": messages})[f["value"]].append((trace_id, answer))
    for key, group in thumbs.items():
        for (up_id, up), (down_id, down) in zip(group["up"], group["down"]):
            if up.strip() != down.strip():
                prefs.append(Record(f"fbp-{up_id}-{down_id}", "preference",
                                    {"prompt": group["messages"], "chosen": up, "rejected": down},
                                    {"source": "feedback", "trace": up_id, "rejected_trace": down_id}))
    from tailorlm.review.pairs import human_preferences  # the blind side-by-side reviews' pairs (issue 17)

    human = human_preferences(project)
    prefs += human
    counts = {"feedback": sum(len(v) for v in by_trace.values()), "sft": len(sft), "preference": len(prefs)}
    counts["human_eval"] = len(human)
    return sft, prefs, counts


def thumb_records(project) -> list[Record]:
    """One chat record per thumb on a chat trace: its messages answered as served, `meta.label` up or down."""
    traces = _traces_with_feedback(project)
    out = []
    for f in project.store.select("feedback", order_by="created_at"):
        t = traces.get(f["trace_id"])
        if f["kind"] != "thumbs" or t is None or f["value"] not in ("up", "down"):
            continue
        messages, answer = json.loads(t["request"]).get("messages"), served_answer(json.loads(t["response"]))
        if messages and answer is not None:
            out.append(Record(f"fbk-{f['trace_id']}-{f['id']}", "chat",
                              {"messages": messages + [{"role": "assistant", "content": answer}]},
                              {"source": "feedback", "trace": f["trace_id"], "label": f["value"], "model": t["model"]}))
    return out


def curate(project, records: list[Record], name: str, kind: str) -> dict | None:
    """Run the curation steps over `records` and write the dataset version `name`; None when empty."""
    from tailorlm.data.pipeline import eval_references, finish, run_steps
    from tailorlm.data.steps import step_class

    if not records:
        return None
    steps = []
    for step in CURATION_STEPS:
        extra = ({"references": eval_references(project, name, [])} if step == "decontaminate"
                 else project.config.data.pii.model_dump() if step == "pii" else {})
        steps.append(step_class(step)(**extra))
    quarantine: list[dict] = []
    kept = run_steps(steps, records, quarantine)
    return finish(project, name, [], kind, {}, len(records), 0, kept, [s.summary() for s in steps], quarantine,
                  extra={"parents": [], "origin": "feedback"})
