"""`tailor ui`: the workbench in a browser, on loopback, with the same API keys as `tailor serve`."""

from pathlib import Path

import typer

from tailorlm.cli import app
from tailorlm.cli.options import PROJECT


@app.command("ui", rich_help_panel="Serve")
def ui(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8765, help="Port."),
    project: Path = PROJECT,
) -> None:
    """Serve the workbench: overview, data, data review, runs, reports, human eval, feedback queue, judge agreement.

    With `serve.api_keys_env` set, the pages ask for one of those keys once (API clients send it as a
    Bearer token). `tailor serve` also mounts the workbench under /ui.

    Example: tailor ui --port 8765     # then open http://127.0.0.1:8765/
    """
    from tailorlm.api import ui as run_ui

    def announce(name: str, url: str, keys: bool) -> None:
        typer.echo(f"Tailor workbench for {name} at {url}" + (" (API keys required)" if keys else ""))

    run_ui(project, host, port, on_start=announce)
