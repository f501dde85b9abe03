"""What rungs that decide a whole answer at once share: the classic classifier and the ensemble.

They have no generator of their own to stream tokens from, so `prepare` passes the messages through,
`stream` sends the finished answer as one chunk, and `AsGenerator` puts the rung behind the generator
interface for the server's path for rungs not held to labels.
"""

from typing import Iterator

from tailorlm.rungs.base import Answer, Prepared
from tailorlm.models.base import Chunk, Completion, GenParams, Messages, Usage


class AsGenerator:
    """A whole-answer rung behind the generator interface (`generate`, `stream`)."""

    def __init__(self, rung):
        self.rung, self.name = rung, f"{rung.kind}:{rung.name}"

    def generate(self, messages: Messages, params: GenParams | None = None) -> Completion:
        a = self.rung.answer(messages, params)
        if a.error:
            raise RuntimeError(a.error)
        return Completion(a.text, a.finish_reason, a.usage, self.name, a.latency_s)

    def stream(self, messages: Messages, params: GenParams | None = None) -> Iterator[Chunk]:
        yield from self.rung.stream(messages, params)


class WholeAnswerRung:
    """The Rung interface for a rung that implements `answer_batch` and decides each answer at once."""

    kind = "whole"
    name = "whole"

    def prepare(self, messages: Messages, params: GenParams | None = None) -> Prepared:
        return Prepared(list(messages))

    def failed(self, error: Exception, latency_s: float = 0.0) -> Answer:
        return Answer("", self.name, Usage(), latency_s, "error", error=f"{type(error).__name__}: {error}")

    def answer(self, messages: Messages, params: GenParams | None = None) -> Answer:
        a = self.answer_batch([messages], params)[0]
        a.meta.pop("compute_s", None)
        return a

    def answer_batch(self, batch: list[Messages], params: GenParams | None = None, batch_size: int = 8) -> list[Answer]:
        raise NotImplementedError

    def stream(self, messages: Messages, params: GenParams | None = None) -> Iterator[Chunk]:
        """One chunk: the whole answer (it is decided at once)."""
        a = self.answer(messages, params)
        if a.error:
            raise RuntimeError(a.error)
        yield Chunk(a.text, a.finish_reason, a.usage)
