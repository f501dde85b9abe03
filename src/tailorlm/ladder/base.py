"""The one interface every rung implements: messages in, an `Answer` out.

An Answer carries the text, the citations (for rungs that retrieve), token usage and latency,
so evaluation, the ladder and the server treat every rung alike.
"""

import time
from dataclasses import dataclass, field
from typing import Protocol

from tailorlm.models.base import GenParams, Messages, Usage


@dataclass
class Answer:
    text: str
    rung: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    finish_reason: str = "stop"
    citations: list[dict] = field(default_factory=list)  # [{"n": 1, "chunk": id, "path": ..., "heading": ...}]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "rung": self.rung, "usage": self.usage.to_dict(), "latency_s": round(self.latency_s, 4),
                "finish_reason": self.finish_reason, "citations": self.citations, "meta": self.meta}


class Rung(Protocol):
    name: str

    def answer(self, messages: Messages, params: GenParams | None = None) -> Answer: ...


def with_system(messages: Messages, system: str | None) -> Messages:
    """Prepend a system prompt unless the conversation brings its own."""
    if not system or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


class ZeroShot:
    """The cheapest rung: the base model with the task's system prompt."""

    def __init__(self, generator, system: str | None = None, name: str = "zero_shot"):
        self.generator, self.system, self.name = generator, system, name

    def answer(self, messages: Messages, params: GenParams | None = None) -> Answer:
        started = time.perf_counter()
        c = self.generator.generate(with_system(messages, self.system), params or GenParams())
        return Answer(c.text, self.name, c.usage, time.perf_counter() - started, c.finish_reason)
