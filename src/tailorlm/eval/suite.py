"""Suites: the eval examples every rung is scored on.

A suite comes from a golden JSONL file in the project (`eval.path`, or any path given), from the
test split that `tailor data prepare` registers for a dataset (`tickets`, `tickets@3f9a1c`), or
from the suites that ship with Tailor (`general`; `redteam`, see `redteam.py`). Each example has input
messages and optionally a reference and labels. A suite's version is the hash of its examples,
so a report always says exactly what it was measured on.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.paths import inside


@dataclass
class Example:
    id: str
    input: list[dict]
    reference: str | None = None
    labels: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def target(self) -> str | None:
        """What label metrics compare against: the first label, else the reference."""
        return self.labels[0] if self.labels else self.reference

    def to_dict(self) -> dict:
        return {"id": self.id, "input": self.input, "reference": self.reference, "labels": self.labels}


@dataclass
class Suite:
    name: str
    source: str
    examples: list[Example]

    @property
    def version(self) -> str:
        blob = json.dumps([e.to_dict() for e in self.examples], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "n": len(self.examples), "source": self.source}


def load_suite(project, ref: str | None = None) -> Suite:
    """The suite named by `ref` (a file, a dataset's golden split, or `general`); default: the project's.

    >>> load_suite(project).describe()  # doctest: +SKIP
    {'name': 'golden', 'version': '1c0e9b2a', 'n': 64, 'source': 'golden.jsonl'}
    """
    cfg = project.config.eval
    if ref is None:
        ref = cfg.path or cfg.suite
        name = cfg.suite
    else:
        name = Path(ref).stem if ref.endswith((".jsonl", ".json")) else ref
    if ref == "general":
        from tailorlm.eval.general import general_suite_path

        return _from_file(general_suite_path(), "general", "tailorlm: general-capability suite")
    from tailorlm.eval import redteam

    if ref == "redteam":
        return redteam.load(redteam.suite_path(), "redteam", "tailorlm: red-team suite")
    if ref.endswith((".jsonl", ".json")) or (project.root / ref).is_file():
        path = inside(project.root, ref)
        return redteam.load(path, name, ref) if redteam.is_redteam_file(path) else _from_file(path, name, ref)
    return _from_dataset(project, ref)


def suite_lines(path: Path, source: str):
    """(line number, parsed value) for each non-blank line of a hand-written JSONL suite.

    Such a suite is scored whole or not at all, so its first bad line stops with file:line:column
    (retrieval suites and red-team suites; golden suites go through the record reader instead).
    """
    from tailorlm.data.readers.records import json_reason

    if not path.exists():
        raise TailorError(f"suite file not found: {source}")
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise TailorError(f"{source}:{n}: {json_reason(e)}") from e


def _from_file(path: Path, name: str, source: str) -> Suite:
    from tailorlm.data.readers.records import read_file
    from tailorlm.data.record import Record

    if not path.exists():
        raise TailorError(f"suite file not found: {source}")
    items = list(read_file(path, source, name, kind="eval"))
    bad = [i for i in items if not isinstance(i, Record)]
    if bad:
        shown = "; ".join(b.where() for b in bad[:3])
        raise TailorError(f"suite {source} has {len(bad)} invalid line(s): {shown}. Fix them; a suite is never scored partially")
    return suite_from_records(name, source, [r for r in items if isinstance(r, Record)])


def _from_dataset(project, ref: str) -> Suite:
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.registry.resolve import alias_target

    name, _, tag = ref.partition("@")
    target = alias_target(project, "suite", name, "golden")
    if target is None:
        raise TailorError(f"no suite {ref!r}: give a golden JSONL file, `general`, or a dataset prepared with a test split")
    version, _, split = target.partition(":")
    manifest = resolve(project, ref if tag else version)
    return suite_from_records(name, f"{manifest['id']}:{split or 'all'}", load_records(project, manifest, split or None))


def suite_from_records(name: str, source: str, records) -> Suite:
    """A suite built from records: eval records as they are, chat records scored on their last assistant turn."""
    examples = []
    for r in records:
        c = r.content
        if r.kind == "eval":
            examples.append(Example(r.id, c["input"], c.get("reference"), list(c.get("labels") or []), r.meta))
        elif r.kind == "chat":
            msgs = c["messages"]
            if msgs[-1]["role"] != "assistant":
                continue
            label = r.meta.get("label")
            examples.append(Example(r.id, msgs[:-1], msgs[-1]["content"], [label] if label else [], r.meta))
    if not examples:
        raise TailorError(f"suite {name} ({source}) has no examples")
    return Suite(name, source, examples)
