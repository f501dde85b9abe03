"""Small helpers shared by the step tests."""

from tailorlm.data.record import Record


def run_step(step, records):
    """Run a step; returns (kept ids, {dropped id: reason}), checking that nothing was lost."""
    dropped = {}
    step.sink = lambda r, name, reason: dropped.__setitem__(r.id, reason)
    kept = [r.id for r in step(records)]
    assert step.kept + sum(step.dropped.values()) == len(records)
    assert len(kept) + len(dropped) == len(records)
    return kept, dropped


def chat(id, user, answer):
    return Record(id, "chat", {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})


def text(id, body):
    return Record(id, "text", {"text": body})
