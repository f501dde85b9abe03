"""What happens to one request between the HTTP layer (`app.py`) and the models.

A chat request finds its rung (`routing.Router`), lets the rung build the conversation its
generator sees (system prompt, few-shot turns, retrieved sources), and hands the generator's work
to a backend: local models to the `Batcher`, OpenAI-compatible upstreams to `Direct`. The answer
goes back whole or as server-sent events, and is stored as a trace whose id is the response id.
`/v1/completions` continues raw text with the model behind the name, without the rung's prompting.
"""

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial

from tailorlm.errors import TailorError
from tailorlm.models.base import Chunk, Completion, GenParams, Usage
from tailorlm.models.constrain import ConstraintError, writable
from tailorlm.serve.batcher import WAIT_MS, Batcher, ClientGone, Direct, Job, Overloaded
from tailorlm.serve.logprobs import Logprobs, attach, bad_token, prompts_of, wanted
from tailorlm.serve.metrics import Metrics
from tailorlm.serve.routing import ModelNotReady, UnknownModel
from tailorlm.serve.tools import CallParser, answer_spec, constraint, merge, render, tool_mode, upstream_fields
from tailorlm.serve.traces import Traces
from tailorlm.store import new_id

log = logging.getLogger("tailorlm.serve")
DEFAULT_MAX_TOKENS = 256
GREEDY_BELOW = 1e-5  # dividing logits by a smaller temperature overflows; it means greedy anyway


class APIError(Exception):
    """An error the client gets as OpenAI-style JSON: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers


@dataclass
class Call:
    """One request in flight: what answered it and what it has produced so far."""

    id: str
    endpoint: str
    model: str
    request: dict
    rung: object
    n: int  # answers per prompt
    rows: int  # prompts x n
    started: float = field(default_factory=time.perf_counter)
    prepared: object = None
    job: Job | None = None
    first_token_s: float | None = None
    texts: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    arm: str | None = None  # the A/B canary arm (serve.ab), None outside one
    calls: list = field(default_factory=list)  # per row: its whole tool calls so far
    parsers: list | None = None  # per row, when the answer may be tool calls decoded as text (local backend)
    logprobs: Logprobs | None = None  # when the request asked for log-probabilities

    def take(self, index: int, chunk: Chunk) -> tuple[str, list[dict]]:
        """Add a chunk to its row; returns the content and tool-call deltas it adds."""
        if self.logprobs is not None:
            self.logprobs.take(index, chunk)
        if self.first_token_s is None and chunk.text:
            self.first_token_s = time.perf_counter() - self.started
        text, deltas = chunk.text, list(getattr(chunk, "tool_calls", None) or [])  # an upstream's own deltas
        if self.parsers:
            text, found = self.parsers[index].feed(chunk.text)
            deltas += found
            text += self.parsers[index].finish() if chunk.finish_reason else ""
        self.texts[index] += text
        merge(self.calls[index], deltas)
        if chunk.finish_reason:
            called = self.calls[index] and chunk.finish_reason == "stop"
            self.reasons[index] = "tool_calls" if called else chunk.finish_reason
            u = chunk.usage or Usage()
            # Every answer to one prompt shares its prompt tokens: count them once, as OpenAI does.
            self.usage.prompt_tokens += u.prompt_tokens if index % self.n == 0 else 0
            self.usage.completion_tokens += u.completion_tokens
        return text, deltas

    def tags(self) -> dict:
        return {"rung": getattr(self.rung, "name", None), "model_version": getattr(self.rung, "meta", {}).get("model_version"),
                "arm": self.arm}


class _Shape:
    """How chat and text completions differ on the wire."""

    def __init__(self, chat: bool):
        self.chat = chat
        self.object = "chat.completion" if chat else "text_completion"
        self.chunk_object = "chat.completion.chunk" if chat else "text_completion"

    def choice(self, i: int, text: str, reason: str | None, calls: list | None = None) -> dict:
        if self.chat:
            message = {"role": "assistant", "content": text or None if calls else text}
            if calls:
                message["tool_calls"] = calls
            return {"index": i, "message": message, "finish_reason": reason}
        return {"index": i, "text": text, "finish_reason": reason, "logprobs": None}

    def delta(self, i: int, text: str | None, reason: str | None = None, role: bool = False,
              calls: list | None = None) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            if calls:
                delta["tool_calls"] = calls
            return {"index": i, "delta": delta, "finish_reason": reason}
        return {"index": i, "text": text or "", "finish_reason": reason, "logprobs": None}


CHAT, TEXT = _Shape(True), _Shape(False)


def _is_local(generator) -> bool:
    return hasattr(generator, "_decode") and hasattr(generator, "encode")


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class Gateway:
    """The generation endpoints' logic, shared by every route (see `app.create_app`)."""

    def __init__(self, router, traces: Traces, max_batch: int = 16, max_queue: int = 64, batch_wait_ms: float = WAIT_MS):
        self.router, self.traces = router, traces
        self.metrics = Metrics(gauges={
            "tailor_queue_depth": ("Rows waiting for the local decode loop.", lambda: self.batcher.depth),
            "tailor_rows_decoding": ("Rows in the running decode batch, plus upstream calls in flight.",
                                     lambda: self.batcher.running + self.direct.running),
        })
        self.batcher = Batcher(max_batch, max_queue, batch_wait_ms, on_batch=self.metrics.batch)
        self.direct = Direct(max_queue)
        self._encode_lock = threading.Lock()  # one tokenizer shared across request threads

    # -- the endpoints --------------------------------------------------------------------------

    async def chat(self, req, disconnected):
        call = await self._call("/v1/chat/completions", "chatcmpl-", req, req.n)
        params = self._params(req)
        messages = [m.plain() for m in req.messages]
        gen = call.rung.generator
        wire = upstream_fields(req)  # response_format, guided_*, tools: what the answer is held to
        if getattr(call.rung, "labels", None):
            if wire:
                raise APIError(400, f"{req.model!r} answers with one of its task's labels; it takes no "
                                    f"{', '.join(sorted(wire))}", code="unsupported")
            # A rung held to the task's labels decides the whole label (scored or constrained) as eval does.
            self._submit_direct(call, [partial(call.rung.stream, messages, params)] * req.n)
        elif _is_local(gen):
            params = replace(params, constraint=_checked(constraint, req))
            tools = [t.model_dump(exclude_none=True) for t in req.tools] if tool_mode(req) != "none" else None
            if tools:
                call.parsers = [CallParser() for _ in range(call.rows)]
            # One trip to a thread for both: under load, every hop delays admission into the next batch.
            call.prepared, prompt = await self._blocking(self._prepare_local, call.rung, messages, params, tools)
            self._submit_local(call, gen, [prompt] * req.n, params)
        else:
            if wire and not getattr(gen, "passes_wire", False):
                raise APIError(400, f"{req.model!r} cannot take {', '.join(sorted(wire))}", code="unsupported")
            call.prepared = await self._blocking(call.rung.prepare, messages, params)
            extra = {"wire": wire} if wire else {}
            self._submit_direct(call, [partial(gen.stream, call.prepared.messages, params, **extra)] * req.n)
        return await self._answer(call, CHAT, req, disconnected)

    async def complete(self, req, disconnected):
        prompts = prompts_of(req.prompt)
        call = await self._call("/v1/completions", "cmpl-", req, req.n, rows=len(prompts) * req.n)
        params = self._params(req)
        gen = call.rung.generator
        if _is_local(gen):
            params = replace(params, constraint=_checked(answer_spec, req))
            if params.constraint is not None:
                await self._blocking(_compile, gen, params.constraint)
            if bad := bad_token(prompts, len(gen.tokenizer)):
                raise APIError(400, bad, code="invalid_token_id")
            ids = await self._blocking(self._encode, lambda texts: [t if isinstance(t, list) else gen.tokenizer(t)["input_ids"]
                                                                    for t in texts], prompts)
            if not all(ids):
                raise APIError(400, "prompt: an empty text has nothing to continue", code="invalid_value")
            self._submit_local(call, gen, [p for p in ids for _ in range(req.n)], params)
        else:
            wire = upstream_fields(req)
            self._submit_direct(call, [partial(_upstream_text, gen, p, params, wire) for p in prompts for _ in range(req.n)])
        return await self._answer(call, TEXT, req, disconnected)

    async def embed(self, req) -> dict:
        if req.model != self.router.embedder_name:
            raise APIError(404, f"unknown embedding model {req.model!r}; this server embeds with "
                                f"{self.router.embedder_name!r}", code="model_not_found")
        self.metrics.served(req.model)
        texts = req.texts()
        started = time.perf_counter()
        embedder = await self._blocking(self.router.embedder)
        vectors = await self._blocking(embedder.embed, texts)
        tokens = _count_tokens(embedder, texts)
        trace_id = new_id("emb-")
        encode = _base64 if req.encoding_format == "base64" else (lambda v: list(map(float, v)))
        body = {"object": "list", "model": req.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]}
        # The trace keeps the texts, not the vectors: they can be recomputed and would dwarf the table.
        summary = {"object": "list", "model": req.model, "count": len(vectors), "dimensions": len(vectors[0])}
        await self._blocking(self.traces.record, trace_id, req.model, req.model_dump(exclude_none=True), summary, 200,
                             time.perf_counter() - started, tokens, 0, "/v1/embeddings")
        self.metrics.tokens(req.model, tokens, 0)
        return {"id": trace_id, **body}

    # -- the steps ------------------------------------------------------------------------------

    async def _call(self, endpoint: str, prefix: str, req, n: int, rows: int | None = None) -> Call:
        call_id = new_id(prefix)
        try:
            # A user keeps their A/B arm; a request naming no user is assigned by its own id.
            rung, arm = await self._blocking(self.router.route, req.model, getattr(req, "user", None) or call_id)
        except UnknownModel as e:
            raise APIError(404, str(e), code="model_not_found") from None
        except ModelNotReady as e:
            self.metrics.served(req.model)
            raise APIError(503, str(e), "server_error", "model_not_ready") from None
        self.metrics.served(req.model)
        rows = rows or n
        return Call(call_id, endpoint, req.model, req.model_dump(exclude_none=True), rung, n, rows,
                    texts=[""] * rows, reasons=[None] * rows, calls=[[] for _ in range(rows)], arm=arm)

    def _params(self, req) -> GenParams:
        temperature = req.temperature if req.temperature >= GREEDY_BELOW else 0.0
        max_tokens = req.max_tokens or req.max_completion_tokens or DEFAULT_MAX_TOKENS
        return GenParams(temperature=temperature, top_p=req.top_p, max_tokens=max_tokens, stop=req.stops(),
                         seed=None if req.seed is None else req.seed % 2**63,  # what torch's generator takes
                         logprobs=wanted(req), echo=bool(getattr(req, "echo", False)))

    def _prepare_local(self, rung, messages, params, tools=None):
        prepared = rung.prepare(messages, params)
        gen = rung.generator
        if params.constraint is not None:
            _compile(gen, params.constraint)
        # After the rung's prompting, so the functions join its system prompt rather than displace it.
        conversation, extra = render(prepared.messages, tools, gen.tokenizer)
        if not extra:
            return prepared, self._encode(gen.encode, conversation)
        text = self._encode(lambda m: gen.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True,
                                                                         **extra), conversation)
        return prepared, gen.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _encode(self, fn, arg):
        with self._encode_lock:
            try:
                return fn(arg)
            except Exception as e:  # a chat template that refuses the conversation (roles, content)
                if type(e).__module__.startswith("jinja2"):
                    raise APIError(400, f"messages: the model's chat template refused them: {e}", code="invalid_value") from None
                raise

    def _submit_local(self, call: Call, gen, prompts: list[list[int]], params: GenParams) -> None:
        longest = max(len(p) for p in prompts)
        if longest >= gen.max_context:
            raise APIError(400, f"the prompt is {longest} tokens; this model's context is {gen.max_context}",
                           code="context_length_exceeded")
        # Never ask for more than fits: the decode loop would stop there anyway, and equal budgets batch together.
        params = replace(params, max_tokens=min(params.max_tokens, gen.max_context - longest))
        if params.logprobs is not None:
            call.logprobs = Logprobs(call.rows, gen.tokenizer, chat=call.endpoint == "/v1/chat/completions")
        self._submit(call, self.batcher.submit, gen, prompts, params)

    def _submit_direct(self, call: Call, streams: list) -> None:
        self._submit(call, self.direct.submit, streams)

    def _submit(self, call: Call, submit, *work) -> None:
        call.job = Job(call.rows)
        try:
            submit(call.job, *work)
        except Overloaded as e:
            raise APIError(429, f"server busy: {e}; retry shortly", "rate_limit_error", "queue_full",
                           {"Retry-After": "1"}) from None

    async def _answer(self, call: Call, shape: _Shape, req, disconnected):
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return call.id, self._events(call, shape, include_usage)
        try:
            async for index, chunk in call.job.results(disconnected):
                call.take(index, chunk)
        except ClientGone:
            await self._blocking(self._record, call, shape, 499)
            raise APIError(499, "the client closed the request", code="client_closed") from None
        except Exception as e:
            status, error = self._failure(e)
            await self._blocking(self._record, call, shape, status)
            raise error from None
        body = await self._blocking(self._record, call, shape, 200)
        return call.id, body

    async def _events(self, call: Call, shape: _Shape, include_usage: bool):
        created = int(time.time())

        def event(choices: list, **extra) -> str:
            return _sse({"id": call.id, "object": shape.chunk_object, "created": created, "model": call.model,
                         "choices": choices, **extra})

        status = 499  # until the stream completes, a stop means the client went away
        try:
            if shape.chat:
                yield event([shape.delta(i, None, role=True) for i in range(call.rows)])
            async for index, chunk in call.job.results():
                text, deltas = call.take(index, chunk)
                if text or deltas:
                    yield event([attach(call.logprobs, shape.delta(index, text, calls=deltas), index)])
                if chunk.finish_reason:
                    yield event([attach(call.logprobs, shape.delta(index, None, call.reasons[index]), index)])
            if include_usage:
                yield event([], usage=call.usage.to_dict())
            status = 200
            await self._blocking(self._record, call, shape, 200)
            yield "data: [DONE]\n\n"
        except Exception as e:  # the stream has started, so the error travels as an event
            status, error = self._failure(e)
            await self._blocking(self._record, call, shape, status)
            yield _sse({"error": {"message": error.message, "type": error.type, "code": error.code}})
            yield "data: [DONE]\n\n"
        finally:
            if status == 499:  # cancelled: no awaiting any more, so the trace is written on a thread
                call.job.cancel()
                asyncio.get_running_loop().run_in_executor(None, self._record, call, shape, 499)

    def _failure(self, e: Exception) -> tuple[int, APIError]:
        if isinstance(e, APIError):
            return e.status, e
        if isinstance(e, ConstraintError):  # a constraint this model cannot complete, found while decoding
            return 400, APIError(400, str(e), code="invalid_constraint")
        if isinstance(e, TailorError):  # an upstream that failed or cannot be reached
            return 502, APIError(502, str(e), "upstream_error", "upstream_failed")
        log.error("generation failed: %s", type(e).__name__)
        return 500, APIError(500, f"generation failed ({type(e).__name__})", "server_error", "internal_error")

    def _record(self, call: Call, shape: _Shape, status: int) -> dict:
        """Store the trace and count the tokens; returns the response body."""
        body = {"id": call.id, "object": shape.object, "created": int(time.time()), "model": call.model,
                "choices": [attach(call.logprobs, shape.choice(i, t, r, c), i, whole=True)
                            for i, (t, r, c) in enumerate(zip(call.texts, call.reasons, call.calls))],
                "usage": call.usage.to_dict()}
        tags, latency = call.tags(), time.perf_counter() - call.started
        if shape.chat and call.prepared is not None and status == 200:  # the rung maps [n] to its sources
            first = Completion(call.texts[0], call.reasons[0] or "stop", call.usage, call.model)
            answer = call.rung.finish(call.prepared, first, latency)
            body["tailor"] = {**tags, "citations": answer.citations,  # sources: what was retrieved, cited or not
                              "sources": [{"n": n, "path": h.path, "heading": h.heading, "score": round(h.score, 4)}
                                          for n, h in enumerate(call.prepared.used, 1)]}
        self.traces.record(call.id, call.model, call.request, body, status, latency, call.usage.prompt_tokens,
                           call.usage.completion_tokens, call.endpoint, **tags)
        self.metrics.tokens(call.model, call.usage.prompt_tokens, call.usage.completion_tokens)
        if call.first_token_s is not None:
            self.metrics.first_token(call.model, call.first_token_s)
        log.info("trace %s: %s status %d, %.0f ms, %d+%d tokens", call.id, call.endpoint, status, latency * 1000,
                 call.usage.prompt_tokens, call.usage.completion_tokens)
        return body

    @staticmethod
    async def _blocking(fn, *args):
        return await asyncio.to_thread(fn, *args)


def _base64(vector) -> str:
    import base64

    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _count_tokens(embedder, texts: list[str]) -> int:
    tokenizer = getattr(getattr(embedder, "model", None), "tokenizer", None)
    if tokenizer is not None:
        return sum(len(ids) for ids in tokenizer(texts)["input_ids"])
    return sum(len(t.split()) for t in texts)


def _checked(make, req):
    """The constraint `make(req)` builds from the request, or a 400 saying what is wrong with it."""
    try:
        return make(req)
    except (ValueError, ConstraintError) as e:
        raise APIError(400, str(e), code="invalid_constraint") from None


def _compile(gen, spec: dict) -> None:
    """Compile a constraint before the request is queued, so a schema llguidance refuses is a 400
    (the decode loop reuses the compiled grammar)."""
    try:
        writable(spec, gen.tokenizer)
        gen._row_masks([spec])
    except ConstraintError as e:
        raise APIError(400, f"response_format/guided/tools: {e}", code="invalid_constraint") from None


def _upstream_text(gen, prompt: str, params: GenParams, wire: dict | None = None):
    """Raw text completion through an OpenAI-compatible upstream's /v1/completions, as Chunks."""
    from tailorlm.models.openai_compat import call_endpoint

    client = getattr(gen, "client", None)
    if client is None:
        raise APIError(400, "this model cannot continue raw text; use /v1/chat/completions", code="unsupported")
    args = dict(model=gen.name, prompt=prompt, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_tokens, stream=True, stream_options={"include_usage": True})
    if params.stop:
        args["stop"] = params.stop
    if params.seed is not None:
        args["seed"] = params.seed
    if wire:  # the completions API has no typed response_format: everything travels in the body's extras
        args["extra_body"] = {**{k: v for k, v in wire.items() if k != "extra_body"}, **wire.get("extra_body", {})}
    reason, usage = None, None
    for event in call_endpoint(lambda: client.completions.create(**args), gen.base_url):
        if event.usage:
            usage = Usage(event.usage.prompt_tokens, event.usage.completion_tokens)
        for choice in event.choices:
            reason = choice.finish_reason or reason
            if choice.text:
                yield Chunk(choice.text)
    yield Chunk("", reason or "stop", usage or Usage())
