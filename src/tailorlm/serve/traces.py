"""Traces and feedback: what `tailor serve` remembers about each answer, for `tailor loop` to learn from.

Every served request and its response go into the `traces` table with the model name, the rung
and model version that answered, the A/B arm (`serve/ab.py`), the latency and the token counts.
The response id the client gets *is* the trace id, so feedback (`POST /v1/feedback`,
`tailor feedback`) points straight at it. With `serve.redact_traces` (the default) every string is passed through the pii step's
`Redactor`, configured by `data.pii` as for training data, before it is stored: an e-mail
address in a prompt is stored as `[EMAIL]`, "I am Johanna Mertens" as "I am [PERSON]" (or
"Person 1" with `data.pii.pseudonyms`, the same pseudonym in the request and the response), and
the allowlisted support address and product names stay as they are.
"""

from tailorlm.errors import TailorError
from tailorlm.store import new_id, now

# Fields that name things rather than carry user text; redacting them could only corrupt them.
_NOT_TEXT = {"model", "role", "object", "id", "finish_reason", "type", "rung", "model_version", "trace_id", "arm"}


class UnknownTrace(TailorError):
    """Feedback named a trace that does not exist."""


def redact_json(value, redactor=None):
    """`value` with PII replaced in every string, however deeply nested: one document, so
    pseudonyms agree across it. `redactor` defaults to the structured kinds only.

    >>> redact_json({"messages": [{"role": "user", "content": "mail bo@example.com"}]})
    {'messages': [{'role': 'user', 'content': 'mail [EMAIL]'}]}
    """
    from tailorlm.data.steps.pii import Redactor

    texts: list[str] = []
    _walk(value, None, texts.append)
    if not texts:
        return value
    redacted = iter((redactor or Redactor()).redact(texts)[0])
    return _walk(value, None, lambda _s: next(redacted))


def _walk(value, key, fn):
    """`value` rebuilt with `fn` applied to every user-text string, in a fixed order."""
    if isinstance(value, str):
        return value if key in _NOT_TEXT else fn(value)
    if isinstance(value, dict):
        return {k: _walk(v, k, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key, fn) for v in value]
    return value


def redactor_for(project):
    """The project's trace redactor: `data.pii`, as for training data. The NER model loads on first use."""
    from tailorlm.data.steps.pii import Redactor

    return Redactor.from_config(project.config.data.pii)


class Traces:
    """Writes traces for one project; `redact` defaults to `serve.redact_traces`."""

    def __init__(self, project, redact: bool | None = None):
        self.project = project
        self.redact = project.config.serve.redact_traces if redact is None else redact
        self.redactor = redactor_for(project) if self.redact else None

    def record(self, trace_id: str, model: str, request: dict, response: dict, status: int, latency_s: float,
               prompt_tokens: int = 0, completion_tokens: int = 0, endpoint: str | None = None,
               rung: str | None = None, model_version: str | None = None, arm: str | None = None) -> None:
        if self.redact:
            # One document, so "Person 1" in the answer is the "Person 1" of the question.
            request, response = redact_json([request, response], self.redactor)
        self.project.store.insert(
            "traces", id=trace_id, model=model, request=request, response=response, status=status,
            latency_ms=round(latency_s * 1000, 3), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            created_at=now(), endpoint=endpoint, rung=rung, model_version=model_version, arm=arm)


def add_feedback(project, trace_id: str, thumbs: str | None = None, rating: int | None = None,
                 correction: str | None = None, comment: str | None = None, redact: bool | None = None) -> dict:
    """Store feedback on a served answer: one `feedback` row per signal given, each carrying the comment.

    >>> add_feedback(project, "chatcmpl-3f9a1c20b7d4", thumbs="down", correction="Team costs $12 a seat.")  # doctest: +SKIP
    {'object': 'feedback', 'trace_id': 'chatcmpl-3f9a1c20b7d4', 'ids': ['fb-...', 'fb-...']}
    """
    if thumbs not in (None, "up", "down"):
        raise TailorError(f"thumbs must be up or down, not {thumbs!r}")
    if rating is not None and not 1 <= rating <= 5:
        raise TailorError(f"rating must be 1 to 5, not {rating}")
    if thumbs is None and rating is None and correction is None and comment is None:
        raise TailorError("give at least one of thumbs, rating, correction or comment")
    if not project.store.select("traces", id=trace_id):
        raise UnknownTrace(f"no trace {trace_id!r}: use the `id` of a response from `tailor serve`")
    if redact if redact is not None else project.config.serve.redact_traces:
        correction, comment = redact_json([correction, comment], redactor_for(project))
    signals = [(k, v) for k, v in (("thumbs", thumbs), ("rating", rating), ("correction", correction)) if v is not None]
    ids = []
    for kind, value in signals or [("comment", comment)]:
        fid = new_id("fb-")
        project.store.insert("feedback", id=fid, trace_id=trace_id, kind=kind, value=str(value), comment=comment,
                             created_at=now())
        ids.append(fid)
    return {"object": "feedback", "trace_id": trace_id, "ids": ids}
