"""API keys and request size limits for `tailor serve`, as ASGI middleware in front of every route.

Keys come from the environment variable that `serve.api_keys_env` names (comma-separated), never
from tailor.yaml. Only their sha256 digests are kept in memory, and a presented key is hashed and
compared in constant time. `/health` and the OpenAPI spec stay open, so load balancers and client
generators need no key. Bodies larger than `serve.max_request_bytes` are refused with 413 before
they are parsed, whether or not the client sent a Content-Length.
"""

import hashlib
import hmac
import json
import os

from starlette.exceptions import HTTPException

from tailorlm.errors import ConfigError

OPEN_PATHS = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# The workbench mounted under /ui checks the same keys itself: a Bearer key, or a browser session signed in with one.
OPEN_PREFIXES = ("/ui/",)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def load_key_hashes(env_name: str | None) -> list[bytes] | None:
    """The digests of the keys in `env_name`; None when no keys are configured (open server)."""
    if not env_name:
        return None
    raw = os.environ.get(env_name, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        # Failing closed: a server meant to need keys must not start open because a variable is unset.
        raise ConfigError(f"serve.api_keys_env names {env_name}, but that environment variable holds no keys")
    return [_digest(k) for k in keys]


def key_matches(presented: str, hashes: list[bytes]) -> bool:
    digest = _digest(presented)
    return any([hmac.compare_digest(digest, h) for h in hashes])  # a list: compare with every key, no early exit


async def send_error(send, status: int, message: str, type_: str, code: str | None, headers: dict | None = None) -> None:
    """An OpenAI-style error response sent straight through ASGI."""
    body = json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class TooLarge(HTTPException):
    """Raised while the body is read; an HTTPException, so FastAPI's body parsing passes it on as 413."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"request body is larger than {max_bytes} bytes (serve.max_request_bytes)")


class Guard:
    """ASGI middleware: 413 for oversized bodies, then 401 without a valid key (when keys are set)."""

    def __init__(self, app, max_bytes: int, key_hashes: list[bytes] | None = None):
        self.app, self.max_bytes, self.key_hashes = app, max_bytes, key_hashes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self._too_large(send)
        if self.key_hashes is not None and scope["path"] not in OPEN_PATHS \
                and not (scope["path"] + "/").startswith(OPEN_PREFIXES):
            scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not key_matches(key.strip(), self.key_hashes):
                return await send_error(send, 401, "invalid or missing API key: send `Authorization: Bearer KEY`",
                                        "invalid_request_error", "invalid_api_key", {"www-authenticate": "Bearer"})
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise TooLarge(self.max_bytes)
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except TooLarge:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send):
        await send_error(send, 413, TooLarge(self.max_bytes).detail, "invalid_request_error", "request_too_large")
