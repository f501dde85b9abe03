"""`tailor serve`: an OpenAI-compatible gateway over every rung and model version, with traces and feedback.

The journey's serving stage. Modules, each small:
- `app.py`: the FastAPI app (routes, OpenAI error shape, middleware, OpenAPI spec);
- `gateway.py`: one request from model name to answer, streamed or whole, and its trace;
- `tools.py`: response_format, guided_* and tools as constraints; tool calls in templates and on the wire;
- `routing.py`: which rung answers a model name (rungs, versions, aliases, the generator);
- `batcher.py`: dynamic batching of local decodes from a bounded queue; upstream calls in threads;
- `traces.py`: traces and feedback in the state database, PII-redacted;
- `auth.py`: API keys (sha256 digests only) and the request size limit;
- `metrics.py`: Prometheus text for /metrics;
- `vllm.py`: the vLLM backend (command line, launch, upstream pool);
- `check.py`: train/serve parity against an eval report;
- `server.py`: uvicorn in the foreground or on a background thread.

The two entry points below are what `tailor serve` calls.
"""

import os


def serve(project, host: str | None = None, port: int | None = None, upstream: str | None = None,
          upstream_key_env: str | None = None, launch_vllm: bool = False, vllm_port: int = 8001, **batching) -> None:
    """Serve the project until Ctrl-C: local models in-process, or vLLM behind the gateway.

    `launch_vllm` starts `vllm serve` for the base and every adapter version on `vllm_port`;
    `upstream` points at one already running. `batching`: max_batch, max_queue, batch_wait_ms.
    >>> serve(Project.load("support"), port=8000)  # doctest: +SKIP
    """
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import serve_forever

    cfg = project.config.serve
    proc = None
    if launch_vllm and not upstream:
        from tailorlm.serve.vllm import launch, vllm_command

        upstream = f"http://127.0.0.1:{vllm_port}/v1"
        proc = launch(vllm_command(project, "127.0.0.1", vllm_port), upstream)
    try:
        app = create_app(project, upstream=upstream, upstream_key_env=upstream_key_env, **batching)
        serve_forever(app, host or cfg.host, port or cfg.port)
    finally:
        if proc is not None:
            proc.terminate()


def check_server(project, report: str | None = None, url: str | None = None, api_key: str | None = None,
          concurrency: int = 1, pool=None, **batching) -> dict:
    """Train/serve parity: replay an eval report through a server (`url`, or one started here).

    >>> check_server(Project.load("support"))["mismatched"]  # doctest: +SKIP
    0
    """
    from tailorlm.serve.check import check_parity, find_report

    find_report(project, report)  # fail before loading any model
    if url:
        return check_parity(project, report, url, api_key, concurrency)
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import running

    env = project.config.serve.api_keys_env
    if env and not api_key:
        api_key = (os.environ.get(env) or "").split(",")[0].strip() or None
    with running(create_app(project, pool=pool, **batching)) as base_url:
        return check_parity(project, report, base_url, api_key, concurrency)


from tailorlm.callables import callable_package  # noqa: E402  (`tailorlm.serve(...)` calls tailorlm.api.serve)

callable_package(__name__)
