"""Any OpenAI-compatible endpoint as a generator or embedder: vLLM, Ollama, llama.cpp's server,
`tailor serve` itself, or a hosted API. The API key is read from the environment variable the
config names; it never appears in tailor.yaml or in logs.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

from tailorlm.errors import TailorError
from tailorlm.models.base import Chunk, Completion, GenParams, Messages, Usage


def _client(base_url: str | None, api_key_env: str | None):
    from openai import OpenAI

    if not base_url:
        raise TailorError("the openai backend needs base_url, e.g. http://localhost:8000/v1")
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise TailorError(f"environment variable {api_key_env} is not set (it should hold the API key for {base_url})")
    # Local servers often need no key, but the client insists on one.
    return OpenAI(base_url=base_url, api_key=key or "no-key", max_retries=2, timeout=300)


def call_endpoint(fn, base_url: str):
    """Run `fn` (one openai client call); a refused connection or an HTTP error becomes a one-line TailorError.

    The server's upstream path (`serve/gateway.py`) calls endpoints through it too, so both say the same.
    """
    import openai

    try:
        return fn()
    except openai.APIConnectionError as e:
        raise TailorError(f"cannot reach {base_url}: {e.__cause__ or e}") from e
    except openai.APIStatusError as e:
        raise TailorError(f"{base_url} answered HTTP {e.status_code}: {e.message}") from e


@dataclass
class CallChunk(Chunk):
    """A chunk that also carries the upstream's tool-call deltas, in OpenAI's shape."""

    tool_calls: list[dict] = field(default_factory=list)


class OpenAIGenerator:
    """Generate through /v1/chat/completions.

    `stream(..., wire=...)` adds request fields as they are (`tools`, `tool_choice`,
    `response_format`, `extra_body` for vLLM's `guided_*`), so `tailor serve` passes a client's
    structured-output and tool fields through; the upstream's tool calls come back as `CallChunk`s.

    >>> gen = OpenAIGenerator("http://localhost:8000/v1", "support:rag")  # doctest: +SKIP
    """

    passes_wire = True

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, concurrency: int = 8):
        self.base_url, self.name, self.concurrency = base_url, model, concurrency
        self.client = _client(base_url, api_key_env)

    def _args(self, messages: Messages, params: GenParams, wire: dict | None = None) -> dict:
        args = dict(model=self.name, messages=messages, temperature=params.temperature, top_p=params.top_p,
                    max_tokens=params.max_tokens)
        if params.stop:
            args["stop"] = params.stop
        if params.seed is not None:
            args["seed"] = params.seed
        if params.constraint is not None:
            from tailorlm.models.constrain import openai_args

            args.update(openai_args(params.constraint))  # enforced by upstreams that support it (vLLM, OpenAI)
        args.update(wire or {})
        return args

    def generate(self, messages: Messages, params: GenParams | None = None) -> Completion:
        started = time.perf_counter()
        args = self._args(messages, params or GenParams())
        resp = call_endpoint(lambda: self.client.chat.completions.create(**args), self.base_url)
        choice = resp.choices[0]
        usage = Usage(resp.usage.prompt_tokens, resp.usage.completion_tokens) if resp.usage else Usage()
        return Completion(choice.message.content or "", choice.finish_reason or "stop", usage, self.name,
                          time.perf_counter() - started)

    def stream(self, messages: Messages, params: GenParams | None = None, wire: dict | None = None) -> Iterator[Chunk]:
        args = self._args(messages, params or GenParams(), wire)
        events = call_endpoint(lambda: self.client.chat.completions.create(**args, stream=True,
                                                                          stream_options={"include_usage": True}),
                               self.base_url)
        reason, usage = None, None
        for event in events:
            if event.usage:
                usage = Usage(event.usage.prompt_tokens, event.usage.completion_tokens)
            for choice in event.choices:
                reason = choice.finish_reason or reason
                if choice.delta and choice.delta.content:
                    yield Chunk(choice.delta.content)
                if choice.delta and choice.delta.tool_calls:
                    yield CallChunk("", tool_calls=[c.model_dump(exclude_none=True) for c in choice.delta.tool_calls])
        yield Chunk("", reason or "stop", usage or Usage())

    def generate_batch(self, batch: list[Messages], params: GenParams | None = None,
                       batch_size: int | None = None) -> list[Completion]:
        """Requests in flight at once: `batch_size`, else the generator's concurrency."""
        with ThreadPoolExecutor(batch_size or self.concurrency) as pool:
            return list(pool.map(lambda m: self.generate(m, params), batch))


class OpenAIEmbedder:
    """Embed through /v1/embeddings."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, batch_size: int = 64):
        self.base_url, self.name, self.batch_size = base_url, model, batch_size
        self.client = _client(base_url, api_key_env)

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            resp = call_endpoint(lambda: self.client.embeddings.create(model=self.name, input=batch), self.base_url)
            out.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        return out
