"""The Record: one unit of data, of one kind.

- `chat`: `{"messages": [...], "tools": [...]?}`, OpenAI format;
- `preference`: `{"prompt": str | messages, "chosen": str, "rejected": str}`;
- `text`: `{"text": str}`, a document for RAG or pre-training;
- `eval`: `{"input": messages, "reference": str | None, "labels": [str]}`.

`meta` carries where it came from (source, path, line), its label, tags and licence.
"""

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Callable

KINDS = ("chat", "preference", "text", "eval")


@dataclass(slots=True)
class Record:
    id: str
    kind: str
    content: dict
    meta: dict = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every free-text field, in a fixed order."""
        return [t for t, _ in _text_slots(self.content)]

    def joined(self) -> str:
        """One string standing for the record's content: what dedup, quality and PII look at."""
        return "\n".join(self.texts())

    def map_texts(self, fn: Callable[[str], str]) -> "Record":
        """A copy with `fn` applied to every free-text field."""
        content = json.loads(json.dumps(self.content))
        for text, setter in _text_slots(content):
            setter(fn(text))
        return replace(self, content=content)

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "content": self.content, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        return cls(d["id"], d["kind"], d["content"], d.get("meta") or {})


def _text_slots(content: dict):
    """(text, setter) for each free-text field of a record's content."""

    def put(container, key):
        return lambda value: container.__setitem__(key, value)

    for key in ("messages", "input"):
        for m in content.get(key) or []:
            if isinstance(m.get("content"), str):
                yield m["content"], put(m, "content")
    for key in ("prompt", "chosen", "rejected", "text", "reference"):
        value = content.get(key)
        if isinstance(value, str):
            yield value, put(content, key)
        elif isinstance(value, list):  # a prompt given as messages
            for m in value:
                if isinstance(m, dict) and isinstance(m.get("content"), str):
                    yield m["content"], put(m, "content")
