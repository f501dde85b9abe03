"""Running the app: in the foreground for `tailor serve`, or on a background thread on loopback
for `tailor serve --check` and the tests (a real uvicorn server, real HTTP). The serving benchmark
runs `tailor serve` itself, in its own process."""

import logging
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

from tailorlm.errors import TailorError


def _server(app, sock: socket.socket, log_level: str = "warning"):
    import uvicorn

    host, port = sock.getsockname()[:2]
    # No access log: it would print query strings; the app logs one line per request without them.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, log_config=None,
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise TailorError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sock


def serve_forever(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sock = _bind(host, port)
    try:
        _server(app, sock, "info").run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal stop here
        pass


@contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on a background thread (port 0: a free one) and yield its base URL, `http://HOST:PORT/v1`.

    >>> with running(create_app(project)) as base_url:  # doctest: +SKIP
    ...     OpenAI(base_url=base_url, api_key="none").models.list()
    """
    sock = _bind(host, port)
    server = _server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tailor-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise TailorError("the server stopped while starting; see the log above")
        thread.join(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
