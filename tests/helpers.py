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


class ScriptedGenerator:
    """A generator that answers from a queue and records what it was asked: a fake at the
    backend interface, for tests about what surrounds generation (prompts, citations)."""

    name = "scripted"

    def __init__(self, answers=None, default: str = "I don't know."):
        self.answers, self.default, self.calls = list(answers or []), default, []

    def generate(self, messages, params=None):
        from tailorlm.models.base import Completion, Usage

        self.calls.append(messages)
        text = self.answers.pop(0) if self.answers else self.default
        return Completion(text, "stop", Usage(sum(len(m["content"].split()) for m in messages), len(text.split())), self.name)

    def stream(self, messages, params=None):
        from tailorlm.models.base import Chunk

        c = self.generate(messages, params)
        yield Chunk(c.text)
        yield Chunk("", c.finish_reason, c.usage)

    def generate_batch(self, batch, params=None, batch_size=8):
        return [self.generate(m, params) for m in batch]


def extend_config(root, extra: dict) -> None:
    """Merge `extra` into a project's tailor.yaml (mappings merge key by key; other values replace),
    so a test can add to a section the example already has without writing a duplicate key."""
    import yaml

    path = root / "tailor.yaml"
    config = yaml.safe_load(path.read_text())

    def merge(into: dict, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(config, extra)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
