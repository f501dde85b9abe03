"""The one interface every rung implements: messages in, an `Answer` out.

A rung is a generator plus a way of building its prompt. `prepare()` turns the user's messages
into the conversation the generator sees (system prompt, few-shot turns, retrieved sources) and
`finish()` turns the generated text into an `Answer` (citations for rungs that retrieve). Because
the two halves are separate, eval batches many prompts through one generator call, and the server
streams and batches any rung the same way; `answer`, `answer_batch` and `stream` are built on them.

A rung that fails on an example returns an Answer with `error` set and empty text, which every
metric scores as wrong: nothing is ever dropped.

A rung held to a label set (`hold_to`, for classification tasks) answers with exactly one label:
by default each label's likelihood is scored as the whole answer (`models/scoring.py`) and the
best one wins, with its probability among the labels as `meta["confidence"]`; with
`label_mode: constrain` decoding is constrained to the labels; with `free` the model's text is
kept and the label it names is extracted (or none). The raw output (the generated text, or every
label's log-probability) stays in `meta["raw"]`.
"""

import time
from dataclasses import dataclass, field
from typing import Iterator

from tailorlm.models.base import Chunk, Completion, GenParams, Messages, Usage


@dataclass
class Answer:
    text: str
    rung: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    finish_reason: str = "stop"
    citations: list[dict] = field(default_factory=list)  # [{"n": 1, "chunk": id, "path": ..., "heading": ...}]
    meta: dict = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"text": self.text, "rung": self.rung, "usage": self.usage.to_dict(), "latency_s": round(self.latency_s, 4),
                "finish_reason": self.finish_reason, "citations": self.citations, "meta": self.meta, "error": self.error}


@dataclass
class Prepared:
    """What a rung hands its generator: the full conversation, and what `finish` needs later."""

    messages: Messages
    meta: dict = field(default_factory=dict)
    used: list = field(default_factory=list)  # retrieved hits, numbered from 1 in the prompt


def rung_settings(spec, known: set[str], kind: str) -> dict:
    """A rung's `train:` block as a dict, refused with the known names when it holds an unknown one."""
    from tailorlm.errors import TailorError

    given = dict(spec.train or {})
    unknown = sorted(set(given) - known)
    if unknown:
        raise TailorError(f"rung {spec.label!r}: unknown {kind} setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    return given


def with_system(messages: Messages, system: str | None) -> Messages:
    """Prepend a system prompt unless the conversation brings its own."""
    if not system or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


def last_user(messages: Messages) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


LABEL_MODES = ("score", "constrain", "free")


class PromptRung:
    """A rung that answers with one generator call; subclasses override `prepare` and `finish`.

    The base class is the zero-shot rung: the task's system prompt, then the user's messages.

    >>> ZeroShot(generator, system="Answer with one word.").answer([{"role": "user", "content": "Capital of France?"}])  # doctest: +SKIP
    """

    kind = "zero_shot"
    labels: list[str] = []  # set by hold_to: the only answers this rung may give
    label_mode = "free"

    def hold_to(self, labels: list[str], mode: str = "score") -> "PromptRung":
        """Answer with exactly one of `labels`, chosen as `mode` says (see the module docstring)."""
        if mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {mode!r}")
        if mode == "score" and not hasattr(self.generator, "score_choices"):
            mode = "constrain"  # an endpoint cannot score arbitrary continuations; it may enforce a choice
        self.labels, self.label_mode = list(labels), mode
        self.meta = {**self.meta, "label_mode": mode}
        return self

    def _scored(self, prepared: list[Prepared], latency_s: float) -> list[Answer]:
        from tailorlm.models.scoring import choose

        table = self.generator.score_choices([p.messages for p in prepared], self.labels)
        out = []
        for p, scores in zip(prepared, table):
            label, confidence, raw = choose(scores, self.labels)
            prompt_tokens = len(self.generator.encode(p.messages)) if hasattr(self.generator, "encode") else 0
            out.append(self.finish(p, Completion(label, "stop", Usage(prompt_tokens, 1), self.generator.name), latency_s))
            out[-1].meta.update(confidence=round(confidence, 6), raw={"label_logprobs": raw})
        return out

    def _params_for(self, params: GenParams) -> GenParams:
        if self.labels and self.label_mode == "constrain" and hasattr(params, "constraint"):
            from dataclasses import replace

            return replace(params, constraint={"type": "choice", "choices": self.labels})
        return params

    def _held(self, answer: Answer) -> Answer:
        """A free or constrained answer keeps its text as the raw output; its text becomes the label it names."""
        if self.labels and self.label_mode != "score" and not answer.error:
            from tailorlm.eval.metrics import extract_label

            answer.meta["raw"] = answer.text
            answer.text = extract_label(answer.text, self.labels, "first") or ""
        return answer

    def __init__(self, generator, system: str | None = None, name: str | None = None, meta: dict | None = None):
        self.generator, self.system = generator, system
        self.name = name or self.kind
        self.meta = meta or {}  # what the rung is made of (prompt version, model version, k ...), for reports

    def prepare(self, messages: Messages, params: GenParams) -> Prepared:
        return Prepared(with_system(messages, self.system))

    def finish(self, prepared: Prepared, c: Completion, latency_s: float) -> Answer:
        return Answer(c.text, self.name, c.usage or Usage(), latency_s, c.finish_reason, meta=dict(prepared.meta))

    def failed(self, error: Exception, latency_s: float = 0.0) -> Answer:
        return Answer("", self.name, Usage(), latency_s, "error", error=f"{type(error).__name__}: {error}")

    def answer(self, messages: Messages, params: GenParams | None = None) -> Answer:
        params = params or GenParams()
        started = time.perf_counter()
        try:
            prepared = self.prepare(messages, params)
            if self.labels and self.label_mode == "score":
                return self._scored([prepared], time.perf_counter() - started)[0]
            c = self.generator.generate(prepared.messages, self._params_for(params))
        except Exception as e:  # scored as wrong, never dropped
            return self.failed(e, time.perf_counter() - started)
        return self._held(self.finish(prepared, c, time.perf_counter() - started))

    def answer_batch(self, batch: list[Messages], params: GenParams | None = None, batch_size: int = 8) -> list[Answer]:
        """Answers in input order, `batch_size` prompts per generator call.

        Each answer's `latency_s` is the wall time of the call it was part of (what a request in a
        batch of that size waits); `meta["compute_s"]` is its share of that time (what it costs).
        A batch that fails is retried one example at a time, so one bad example fails alone.
        """
        params = params or GenParams()
        out: list[Answer] = []
        for start in range(0, len(batch), batch_size):
            chunk = batch[start:start + batch_size]
            began = time.perf_counter()
            prepared, answers = [], [None] * len(chunk)
            for i, messages in enumerate(chunk):
                try:
                    prepared.append((i, self.prepare(messages, params)))
                except Exception as e:
                    answers[i] = self.failed(e)
            try:
                done = self._answer_prepared([p for _, p in prepared], params)
            except Exception:
                done = None
            elapsed = time.perf_counter() - began
            for j, (i, p) in enumerate(prepared):
                if done is not None:
                    answers[i] = done[j]
                    answers[i].latency_s = elapsed
                    answers[i].meta["compute_s"] = elapsed / len(chunk)
                else:
                    answers[i] = self.answer(chunk[i], params)
                    answers[i].meta["compute_s"] = answers[i].latency_s
            out.extend(answers)
        return out

    def _answer_prepared(self, prepared: list[Prepared], params: GenParams) -> list[Answer]:
        """Answers for prepared prompts in one generator call (latency is set by the caller)."""
        if self.labels and self.label_mode == "score":
            return self._scored(prepared, 0.0)
        completions = self._generate_many([p.messages for p in prepared], self._params_for(params))
        return [self._held(self.finish(p, c, 0.0)) for p, c in zip(prepared, completions)]

    def _generate_many(self, conversations: list[Messages], params: GenParams) -> list[Completion]:
        if not conversations:
            return []
        many = getattr(self.generator, "generate_batch", None)
        if many is not None:
            return many(conversations, params, batch_size=len(conversations))
        return [self.generator.generate(m, params) for m in conversations]

    def stream(self, messages: Messages, params: GenParams | None = None) -> Iterator[Chunk]:
        """Chunks whose texts concatenate to what `answer` returns (at temperature 0).

        A rung held to labels decides the whole label before anything is sent, so it streams one chunk.
        """
        if self.labels:
            a = self.answer(messages, params)
            if a.error:
                raise RuntimeError(a.error)
            yield Chunk(a.text, "stop", a.usage)
            return
        prepared = self.prepare(messages, params or GenParams())
        yield from self.generator.stream(prepared.messages, params or GenParams())

    def describe(self) -> dict:
        backend = "openai" if hasattr(self.generator, "client") else "local"
        return {"name": self.name, "kind": self.kind, "model": getattr(self.generator, "name", None), "backend": backend,
                **self.meta}


class ZeroShot(PromptRung):
    """The cheapest rung: the base model with the task's system prompt."""

    kind = "zero_shot"

