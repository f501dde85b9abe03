"""The one generation and embedding interface that every rung, eval, ladder and the server use.

A generator takes OpenAI-style `messages` and `GenParams` and returns a `Completion` (text,
finish reason, token usage, latency). `stream()` yields `Chunk`s whose texts concatenate to
exactly what `generate()` returns; the last chunk carries the finish reason and usage.
Implementations: `local.LocalGenerator` (transformers, in-process) and
`openai_compat.OpenAIGenerator` (any OpenAI-compatible endpoint).
"""

from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol

Messages = list[dict]


@dataclass
class GenParams:
    """Sampling parameters, named as in the OpenAI API. A field's `help` is also its command-line flag's help
    (`tailor chat`, `generate`, `rag query`: cli/options.py `sampling_option`)."""

    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature; 0 is greedy, so answers are reproducible."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling: draw from the smallest set of tokens whose "
                                                        "probabilities add up to this (1: all of them)."})
    max_tokens: int = field(default=256, metadata={"help": "Most tokens in the answer."})
    stop: list[str] = field(default_factory=list, metadata={"help": "Stop string, not included in the answer; repeat for several."})
    seed: int | None = field(default=None, metadata={"help": "Seed for sampling when temperature > 0: the same seed gives the same answer."})
    # A plain dict so it crosses the wire and the config unchanged: {"type": "choice", "choices": [...]},
    # {"type": "json_schema", "schema": {...}}, ... (models/constrain.py). None: the answer is free text.
    constraint: dict | None = None
    # Log-probabilities: None returns none; k >= 0 returns each token's own and the k most likely (OpenAI's
    # top_logprobs). `echo` also returns the prompt's tokens (vLLM's echo with logprobs, what lm-eval scores).
    logprobs: int | None = None
    echo: bool = False


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict:
        return {**asdict(self), "total_tokens": self.total_tokens}


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (max_tokens)
    usage: Usage
    model: str
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return {"text": self.text, "finish_reason": self.finish_reason, "usage": self.usage.to_dict(),
                "model": self.model, "latency_s": round(self.latency_s, 4)}


@dataclass
class TokenLogprob:
    """One token's log-probability under the model, and the `top` most likely tokens at its position."""

    token: int
    logprob: float | None  # None for the prompt's first token: nothing precedes it
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Chunk:
    text: str
    finish_reason: str | None = None  # set on the last chunk only
    usage: Usage | None = None  # set on the last chunk only
    logprobs: list[TokenLogprob] | None = None  # the tokens decoded since the last chunk (GenParams.logprobs)
    prompt_logprobs: list[TokenLogprob] | None = None  # once per row, before its answer (GenParams.echo)


class Generator(Protocol):
    name: str

    def generate(self, messages: Messages, params: GenParams | None = None) -> Completion: ...

    def stream(self, messages: Messages, params: GenParams | None = None) -> Iterator[Chunk]: ...

    def generate_batch(self, batch: list[Messages], params: GenParams | None = None,
                       batch_size: int = 8) -> list[Completion]: ...


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def collect(chunks: Iterator[Chunk], model: str, started: float) -> Completion:
    """Join a stream into the Completion it stands for."""
    import time

    parts, last = [], Chunk("")
    for chunk in chunks:
        parts.append(chunk.text)
        last = chunk
    return Completion("".join(parts), last.finish_reason or "stop", last.usage or Usage(), model, time.perf_counter() - started)
