"""The workbench's web app: server-rendered pages and their JSON API over one project.

`create_ui_app(project)` is what `tailor ui` serves and what `tailor serve` mounts under `/ui`. Pages
are Jinja2 templates with autoescaping on, so record text is always shown as text; the few scripts
(keyboard rating, the ladder page needs none) are files in `static/`, served from the package, and a
Content-Security-Policy allows scripts from this origin only, as a second guard.

Access, when `serve.api_keys_env` names keys (the same keys as `tailor serve`):
- API clients send `Authorization: Bearer KEY`, as to the server;
- a browser signs in once on /login with a key (sent in a POST body, never in a URL); the server
  keeps only a random session id in an HttpOnly, SameSite=Strict cookie. No key is ever written
  into a page.
State-changing forms carry a per-session CSRF token, checked on every POST from a cookie session
(the SameSite cookie is a second guard); Bearer requests need none, since browsers never attach
that header on their own.
"""

from __future__ import annotations

import hmac
import secrets
import time
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tailorlm.errors import TailorError

COOKIE = "tailor_ui"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
OPEN = ("/login", "/static/")


def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    folder = str(resources.files("tailorlm") / "ui" / "templates")
    env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]))
    env.filters["pct"] = lambda x, digits=1: "-" if x is None else f"{x * 100:.{digits}f}%"
    env.filters["num"] = lambda x, digits=3: "-" if x is None else f"{x:.{digits}f}"
    # Seconds as milliseconds, with a decimal below 10 ms (a scripted or cached answer takes well under one).
    env.filters["ms"] = lambda s: "-" if s is None else f"{s * 1000:.1f} ms" if s < 0.01 else f"{s * 1000:.0f} ms"
    return env


class Sessions:
    """Browser sessions in memory: a random id per browser, its CSRF token and whether it signed in."""

    def __init__(self):
        self.by_id: dict[str, dict] = {}

    def get_or_new(self, sid: str | None) -> tuple[str, dict, bool]:
        if sid and sid in self.by_id:
            return sid, self.by_id[sid], False
        sid = secrets.token_urlsafe(32)
        self.by_id[sid] = {"csrf": secrets.token_urlsafe(32), "authed": False}
        return sid, self.by_id[sid], True


def create_ui_app(project, key_hashes: list[bytes] | None = None, gateway=None) -> FastAPI:
    """The workbench for `project`; `key_hashes` as from `serve.auth.load_key_hashes` (None: open);
    `gateway`: the server's, when mounted by `tailor serve`, for the playground.

    >>> uvicorn.run(create_ui_app(Project.load(".")), port=8765)  # doctest: +SKIP
    """
    from fastapi.staticfiles import StaticFiles

    from tailorlm.serve.auth import key_matches
    from tailorlm.ui import api, pages

    app = FastAPI(title="Tailor workbench", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.project, app.state.env, app.state.sessions = project, _templates(), Sessions()
    app.state.keys, app.state.gateway = key_hashes, gateway
    app.mount("/static", StaticFiles(directory=str(resources.files("tailorlm") / "ui" / "static")), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        sid, session, fresh = app.state.sessions.get_or_new(request.cookies.get(COOKIE))
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        bearer = key_hashes is not None and scheme.lower() == "bearer" and key_matches(key.strip(), key_hashes)
        request.state.session, request.state.bearer = session, bearer
        path = request.url.path[len(request.scope.get("root_path", "")):] or "/"
        authed = key_hashes is None or bearer or session["authed"]
        if not authed and not path.startswith(OPEN):
            if path.startswith("/api/"):
                response = JSONResponse({"error": {"message": "invalid or missing API key: send `Authorization: Bearer KEY`",
                                                   "type": "invalid_request_error", "code": "invalid_api_key"}}, 401)
            else:
                response = RedirectResponse(f"{request.scope.get('root_path', '')}/login", 303)
        elif request.method == "POST" and not bearer and not await _csrf_ok(request, session):
            response = JSONResponse({"error": {"message": "missing or wrong CSRF token: reload the page and try again",
                                               "type": "invalid_request_error", "code": "csrf"}}, 403)
        else:
            response = await call_next(request)
        if fresh:
            response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        # How long the page took here, without the network: benchmarks/ui.py reads it.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.exception_handler(TailorError)
    async def _tailor_error(request: Request, e: TailorError):
        if request.url.path[len(request.scope.get("root_path", "")):].startswith("/api/"):
            return JSONResponse({"error": {"message": str(e), "type": type(e).__name__, "code": "invalid_value"}}, 400)
        return render(request, "error.html", {"message": str(e)}, 400)

    app.include_router(api.router, prefix="/api")
    app.include_router(pages.router)
    return app


async def _csrf_ok(request: Request, session: dict) -> bool:
    from urllib.parse import parse_qs

    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # The body, not request.form(): Starlette replays a body read here to the endpoint.
        sent = (parse_qs((await request.body()).decode("utf-8", "replace")).get("csrf") or [None])[0]
    return isinstance(sent, str) and hmac.compare_digest(sent, session["csrf"])


def render(request: Request, name: str, context: dict, status: int = 200) -> Response:
    """A page from its template, with the mount prefix, the CSRF token and the project in its context."""
    app = request.app
    root = request.scope.get("root_path", "")
    html = app.state.env.get_template(name).render(
        root=root, csrf=request.state.session["csrf"], project=app.state.project, page=name.removesuffix(".html"),
        signed_in=app.state.keys is None or request.state.session["authed"], keys=app.state.keys is not None, **context)
    return HTMLResponse(html, status)
