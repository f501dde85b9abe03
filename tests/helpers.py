"""Small helpers shared by the tests: step runs, records, a scripted generator, tailor.yaml edits, the shop project."""

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


def write_shop(root, tiny_model_dir, tickets: list[dict], golden: list[dict], rungs: str, docs: dict | None = None,
               metrics: str = "accuracy", extra: str = ""):
    """The `shop` project the API, ladder and progress tests share, written into `root` (made here): a
    ticket-routing classification task on the tiny model, `tickets` (chat rows) as tickets.jsonl split
    0.8/0.2, `golden` as the eval suite, `docs` ({file name: Markdown}) as a text source under docs/,
    `rungs` as tailor.yaml's rungs list (YAML lines) and `extra` (top-level YAML lines) before it."""
    import json

    root.mkdir()
    (root / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tickets))
    (root / "golden.jsonl").write_text("".join(json.dumps(g) + "\n" for g in golden))
    sources = "  - {name: tickets, path: tickets.jsonl, kind: chat}\n"
    if docs:
        (root / "docs").mkdir()
        for name, body in docs.items():
            (root / "docs" / name).write_text(body)
        sources += "  - {name: docs, path: docs/, kind: text}\n"
    (root / "tailor.yaml").write_text(f"""name: shop
task: {{description: Route the ticket., type: classification, labels: [billing, login, bug]}}
models:
  generator: {{model: '{tiny_model_dir}'}}
sources:
{sources}data:
  steps:
    - validate: {{}}
    - split: {{train: 0.8, validation: 0.2, test: 0.0}}
eval: {{path: golden.jsonl, metrics: [{metrics}]}}
{extra}rungs:
{rungs}""")
    return root
