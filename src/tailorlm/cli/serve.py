"""`tailor serve` (the OpenAI-compatible gateway, its vLLM backend and its parity check) and `tailor feedback`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT, lazy_command


def serve(
    backend: str = typer.Option("local", help="local: models in-process with dynamic batching; vllm: vLLM generates, "
                                "Tailor's gateway stays in front."),
    upstream: str = typer.Option(None, help="vllm: base URL of a running vLLM server (e.g. http://gpu1:8001/v1) "
                                 "instead of launching one."),
    upstream_key_env: str = typer.Option(None, help="vllm: environment variable holding the upstream's API key."),
    vllm_port: int = typer.Option(8001, help="vllm: port for the vLLM server Tailor launches."),
    dry_run: bool = typer.Option(False, "--dry-run", help="vllm: print the `vllm serve` command and exit."),
    max_batch: int = typer.Option(16, min=1, help="Most rows decoded together (local backend)."),
    max_queue: int = typer.Option(64, min=1, help="Rows allowed to wait; beyond it requests get 429."),
    # 60 ms is serve.batcher.WAIT_MS, written out: importing the batcher would load torch for --help.
    batch_wait_ms: float = typer.Option(60.0, min=0, help="How long the batcher waits for more requests after the "
                                        "latest arrived (at most 8x that in all)."),
    quant: str = typer.Option(None, "--quant", help="Local backend: none | int8 (weight-only int8 linear layers, "
                              "torchao); default models.generator.quant."),
    check: bool = typer.Option(False, "--check", help="Train/serve parity: replay the latest eval report's golden "
                               "prompts at temperature 0 and compare outputs exactly; exit 1 on any mismatch."),
    report: str = typer.Option(None, "--report", help="--check: report id or report.json path (default: the newest)."),
    url: str = typer.Option(None, "--url", help="--check: a running server's base URL instead of starting one here."),
    concurrency: int = typer.Option(1, min=1, help="--check: requests in flight at once (the server batches them)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
    **fields,
) -> None:
    """Serve every rung and model version through an OpenAI-compatible API, with traces and feedback.

    Model names: PROJECT:RUNG, version ids (PROJECT:sft@v2), aliases (PROJECT@production), the bare
    PROJECT (its production version) and the generator's own name. Responses' ids are trace ids.

    Example: tailor serve --port 8000    # then: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none")
    Example: tailor serve --check --json
    Example: tailor serve --backend vllm --dry-run
    """
    from tailorlm import api

    batching = dict(max_batch=max_batch, max_queue=max_queue, batch_wait_ms=batch_wait_ms)
    if check:
        result = api.check(project, report, url, concurrency, quant, backend, **batching)
        if not emit(result, as_json):
            typer.echo(f"{result['matched']}/{result['n']} outputs match report {result['report']} "
                       f"({result['subject']}) exactly")
            for m in result["mismatches"][:20]:
                typer.echo(f"  {m['id']}: expected {m['expected'][:80]!r}, served {m['served'][:80]!r}")
        if result["mismatched"]:
            raise typer.Exit(1)
        return

    def announce(name: str, url: str) -> None:
        typer.echo(f"Serving {name} at {url} (Ctrl-C stops)", err=True)

    result = api.serve(project, fields.get("host"), fields.get("port"), backend, quant, upstream, upstream_key_env, vllm_port, dry_run,
                       on_start=announce, **batching)
    if result is not None and not emit(result, as_json):  # vllm --dry-run: the command
        typer.echo(" ".join(result["command"]))


def _serve_flags():
    """--host and --port: ServeConfig's fields, their descriptions as help."""
    from tailorlm.cli.options import config_options
    from tailorlm.config import ServeConfig

    return config_options(ServeConfig, ["host", "port"], section="serve")


lazy_command(app, serve, _serve_flags, rich_help_panel="Serve")


@app.command(rich_help_panel="Serve")
def feedback(
    trace_id: str = typer.Argument(..., help="The `id` of a served response (its trace id)."),
    thumbs: str = typer.Option(None, help="up or down."),
    rating: int = typer.Option(None, min=1, max=5, help="1 (bad) to 5 (excellent)."),
    correction: str = typer.Option(None, help="What the answer should have been."),
    comment: str = typer.Option(None, help="Anything else."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Record feedback on a served answer; `tailor loop` learns from it.

    Example: tailor feedback chatcmpl-3f9a1c20b7d4 --thumbs down --correction "Team costs $12 a seat."
    """
    from tailorlm.api import feedback as add_feedback

    result = add_feedback(project, trace_id, thumbs, rating, correction, comment)
    if not emit(result, as_json):
        typer.echo(f"stored {len(result['ids'])} feedback row(s) for {trace_id}")
