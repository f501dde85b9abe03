"""`tailor serve`'s HTTP layer: a FastAPI app speaking OpenAI's wire format over every rung and model version.

Routes: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /v1/feedback, /health,
/metrics and /openapi.json. Every 4xx and 5xx body is OpenAI's error shape; validation errors are
400, not FastAPI's 422, because OpenAI clients expect 400. Request handling lives in
`gateway.py`; this module wires it to HTTP, middleware (size limit, API keys, metrics and one log
line per request, never with bodies or keys) and the batcher's lifetime.

>>> app = create_app(Project.load("support"))  # doctest: +SKIP
>>> uvicorn.run(app, port=8000)  # doctest: +SKIP
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from tailorlm.errors import TailorError
from tailorlm.serve import schema
from tailorlm.serve.ab import user_of
from tailorlm.serve.auth import Guard, load_key_hashes
from tailorlm.serve.batcher import WAIT_MS
from tailorlm.serve.gateway import APIError, Gateway
from tailorlm.serve.routing import Router
from tailorlm.serve.traces import Traces, UnknownTrace, add_feedback

log = logging.getLogger("tailorlm.serve")

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/feedback", "/health", "/metrics")
_STATUS = {400: "the request is invalid", 401: "missing or invalid API key", 404: "unknown model or trace",
           413: "the body is larger than serve.max_request_bytes", 429: "the queue is full; retry after Retry-After seconds",
           502: "the upstream model server failed", 503: "the model cannot answer yet"}
# One server-sent event (OpenAPI 3.1 reads an event stream's schema per event).
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {
    "type": "string", "description": "A JSON chunk (chat.completion.chunk or text_completion), a JSON error, or [DONE]."}}}


def _responses(ok, codes=(400, 401, 413), stream: bool = False) -> dict:
    out = {code: {"model": schema.Error, "description": _STATUS[code]} for code in codes}
    out[200] = {"model": ok, "description": "OK"}
    if stream:
        out[200]["content"] = {"text/event-stream": {"schema": SSE_EVENT}}
        out[200]["description"] = "The answer; with `stream: true`, server-sent events ending with `data: [DONE]`."
    return out


def error_json(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
               headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": code}}, status, headers=headers)


class EventStream(StreamingResponse):
    """Server-sent events that notice a disconnected client at once, cancelling the generator
    (which cancels its job), instead of only at the next write."""

    media_type = "text/event-stream"

    async def __call__(self, scope, receive, send):
        async with anyio.create_task_group() as tg:
            async def stream():
                try:
                    await self.stream_response(send)
                except OSError:
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(stream)
            await self.listen_for_disconnect(receive)
            tg.cancel_scope.cancel()


class _Observe:
    """ASGI middleware: count every request in /metrics and log one line, with no body, query or key."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500
        endpoint = scope["path"] if scope["path"] in ROUTES else "other"

        async def observed(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            model = scope.get("state", {}).get("model", "")
            self.metrics.request(endpoint, model, status, time.perf_counter() - started)
            log.info("%s %s %d %.0f ms", scope["method"], endpoint, status, (time.perf_counter() - started) * 1000)


def create_app(project, pool=None, embedder=None, *, upstream: str | None = None, upstream_key_env: str | None = None,
               max_batch: int = 16, max_queue: int = 64, batch_wait_ms: float = WAIT_MS, redact: bool | None = None) -> FastAPI:
    """The server for `project`. Tests inject a `pool` (a ModelPool over a loaded
    generator) and an `embedder`; `upstream` puts an OpenAI-compatible server (vLLM) behind the gateway."""
    pool = pool if pool is not None else _default_pool(project, upstream, upstream_key_env)
    router = Router(project, pool, embedder)
    gateway = Gateway(router, Traces(project, redact), max_batch, max_queue, batch_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        # Requests do their blocking steps (prompting, tokenizing, traces) on threads; asyncio's default
        # pool of cpu+4 threads would queue them behind each other and slow admission into batches.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max(32, max_queue), "tailor-request"))
        gateway.batcher.start()
        yield
        gateway.batcher.stop()

    app = FastAPI(title="Tailor", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="OpenAI-compatible API over every rung and model version of a Tailor project.")
    app.state.gateway = gateway
    _error_handlers(app)
    _generation_routes(app, gateway, project.config.serve.ab.user_header)
    _project_routes(app, project, router, gateway, "upstream" if upstream else "local", redact)
    _document(app)
    from tailorlm.ui.app import create_ui_app  # the workbench under /ui, with the same keys

    app.mount("/ui", create_ui_app(project, load_key_hashes(project.config.serve.api_keys_env), gateway))
    # The last added runs first: every request is observed, then size- and key-checked.
    app.add_middleware(Guard, max_bytes=project.config.serve.max_request_bytes,
                       key_hashes=load_key_hashes(project.config.serve.api_keys_env))
    app.add_middleware(_Observe, metrics=gateway.metrics)
    return app


def _default_pool(project, upstream: str | None, upstream_key_env: str | None):
    """The models behind the gateway: an upstream OpenAI-compatible server's, or loaded in this process."""
    if upstream:
        from tailorlm.serve.vllm import UpstreamPool

        return UpstreamPool(project, upstream, upstream_key_env)
    from tailorlm.models.pool import ModelPool

    return ModelPool(project)


def _error_handlers(app: FastAPI) -> None:
    """Every error in OpenAI's shape; validation errors as 400 with the client's JSON path."""

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return error_json(e.status, e.message, e.type, e.code, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        return error_json(400, await invalid_message(request, e.errors()), code="invalid_value")

    @app.exception_handler(HTTPException)
    async def _http(request, e: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        return error_json(e.status_code, str(e.detail), code=codes.get(e.status_code), headers=e.headers)


async def guarded(request: Request, model: str | None, work):
    """Run an endpoint; anything unexpected becomes a 500 in OpenAI's shape, logged without its message."""
    if model is not None:
        request.state.model = model
    try:
        return await work
    except (APIError, HTTPException):
        raise
    except Exception as e:
        log.error("%s failed: %s", request.url.path, type(e).__name__)
        raise APIError(500, f"internal error ({type(e).__name__})", "server_error", "internal_error") from None


def reply(result):
    """A gateway answer as HTTP: JSON for a whole answer, server-sent events for a stream."""
    trace_id, body = result
    headers = {"X-Trace-Id": trace_id}
    if isinstance(body, dict):
        return JSONResponse(body, headers=headers)
    return EventStream(body, headers={**headers, "Cache-Control": "no-cache"})


def _generation_routes(app: FastAPI, gateway: Gateway, ab_header: str) -> None:
    """The routes that run a model: chat, raw completions and embeddings."""

    @app.post("/v1/chat/completions", response_model=None,
              responses=_responses(schema.ChatCompletion, (400, 401, 404, 413, 429, 502, 503), stream=True))
    async def chat_completions(body: schema.ChatRequest, request: Request):
        """Answer a conversation with the rung or model version named by `model`."""
        user_of(body, request.headers, ab_header)
        return reply(await guarded(request, body.model, gateway.chat(body, request.is_disconnected)))

    @app.post("/v1/completions", response_model=None,
              responses=_responses(schema.TextCompletion, (400, 401, 404, 413, 429, 502, 503), stream=True))
    async def completions(body: schema.CompletionRequest, request: Request):
        """Continue raw text with the model behind `model` (no chat template, no rung prompting)."""
        user_of(body, request.headers, ab_header)
        return reply(await guarded(request, body.model, gateway.complete(body, request.is_disconnected)))

    @app.post("/v1/embeddings", response_model=None, responses=_responses(schema.Embeddings, (400, 401, 404, 413)))
    async def embeddings(body: schema.EmbeddingRequest, request: Request):
        """Embed texts with the project's embedder."""
        result = await guarded(request, body.model, gateway.embed(body))
        return JSONResponse(result, headers={"X-Trace-Id": result["id"]})


def _project_routes(app: FastAPI, project, router: Router, gateway: Gateway, backend: str, redact: bool | None) -> None:
    """The routes about the project and the server: served names, feedback, health and metrics."""

    @app.get("/v1/models", response_model=None, responses=_responses(schema.ModelList, (401,)))
    async def models(request: Request):
        """Every served model name: rungs, model versions, aliases, the generator and the embedder."""
        names = await guarded(request, None, asyncio.to_thread(router.names))
        owner = project.config.name
        data = [{"id": n, "object": "model", "created": 0, "owned_by": owner} for n in [*names, router.embedder_name]]
        return {"object": "list", "data": data}

    @app.post("/v1/feedback", response_model=None, responses=_responses(schema.FeedbackStored, (400, 401, 404, 413)))
    async def feedback(body: schema.FeedbackRequest, request: Request):
        """Rate a served answer: thumbs, a 1-5 rating, a correction and/or a comment, for its trace id."""

        def store():
            try:
                return add_feedback(project, body.trace_id, body.thumbs, body.rating, body.correction, body.comment, redact)
            except UnknownTrace as e:
                raise APIError(404, str(e), code="trace_not_found") from None
            except TailorError as e:
                raise APIError(400, str(e), code="invalid_value") from None

        return await guarded(request, None, asyncio.to_thread(store))

    @app.get("/health", response_model=None, responses={200: {"model": schema.Health, "description": "OK"}})
    async def health():
        """Liveness: no key needed."""
        return {"status": "ok", "backend": backend, "queue_depth": gateway.batcher.depth}

    @app.get("/metrics", response_class=PlainTextResponse, responses=_responses(str, (401,)))
    async def metrics():
        """Prometheus text format: requests, tokens, latency and time-to-first-token histograms, queue depth."""
        return PlainTextResponse(gateway.metrics.render(), media_type="text/plain; version=0.0.4")


async def invalid_message(request: Request, errors: list[dict]) -> str:
    """A validation failure in the client's terms: the JSON path (`messages[0].content`), or the line
    and column of a JSON syntax error; never pydantic's internal names for union branches."""
    first = errors[0]
    if first["type"] == "json_invalid":
        at = first["loc"][-1] if isinstance(first["loc"][-1], int) else 0
        text = (await request.body())[:at].decode("utf-8", "replace")
        line, column = text.count("\n") + 1, at - (text.rfind("\n") + 1) + 1
        reason = str((first.get("ctx") or {}).get("error") or first["msg"])
        return f"body: invalid JSON at line {line} column {column}: {reason[:1].lower()}{reason[1:]}"
    # A union reports one error per branch, each under a tag such as `list[ContentPart]`.
    branch = next((i for i, part in enumerate(first["loc"]) if _is_tag(part)), None)
    group = [first]
    if branch is not None:
        group = [err for err in errors if err["loc"][:branch] == first["loc"][:branch]]
        deepest = max(len(err["loc"]) for err in group)
        if deepest > branch + 1:  # a branch that got further in is the one the client meant
            group = [next(err for err in group if len(err["loc"]) == deepest)]
    where = _json_path(group[0]["loc"]) or "body"
    said = []
    for err in group:
        msg = err["msg"].removeprefix("Value error, ")
        msg = "required field is missing" if err["type"] == "missing" else msg[:1].lower() + msg[1:]
        said.append(msg)
    if len(said) > 1:
        said = [said[0] + "".join(" or " + m.removeprefix("input should be ") for m in said[1:])]
    rest = len([err for err in errors if err not in group])
    return f"{where}: {said[0]}" + (f" (and {rest} more)" if rest else "")


def _is_tag(part) -> bool:
    # Field names are snake_case; pydantic's branch tags are types: `str`, `list[ContentPart]`,
    # `function-after[_clean(), str]`, `ContentPart`.
    return isinstance(part, str) and (any(c in part for c in "[](),- ") or part[:1].isupper()
                                      or part in ("str", "int", "float", "bool", "none", "list", "dict"))


def _json_path(loc) -> str:
    out = ""
    for part in loc:
        if part == "body" and not out or _is_tag(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _document(app: FastAPI) -> None:
    """Publish the 400 the server really sends for invalid requests, not FastAPI's 422."""
    build = app.openapi

    def openapi():
        if app.openapi_schema is None:
            spec = build()
            for path in spec["paths"].values():
                for op in path.values():
                    op.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                spec.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi

