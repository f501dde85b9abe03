"""The `tailor` command line: a thin layer where each command is one call into the library.

Errors the user can fix (`TailorError`) print one line and exit 2; `--debug` shows the traceback.
Heavy libraries load inside the commands, so `tailor --help` answers at once.
"""

import json
import os
import sys

import click
import typer
from typer.core import TyperGroup

from tailorlm.errors import TailorError

JOURNEY = """Tailor turns your own data into a custom LLM, one measured rung at a time.

The journey: init -> data prepare -> advise -> ladder -> train -> eval/compare -> serve -> loop -> export.
Available now: init, config, models, chat, generate, data, rag, train, runs, export, eval, compare, gate,
ladder, reports, advise, costs, serve, feedback, loop, promote, rollback, quickstart.

Example:  tailor quickstart        # an example project, answered by the embedded model, offline
"""

_state = {"debug": False}


class _Group(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TailorError as e:
            if _state["debug"]:
                raise
            click.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(cls=_Group, help=JOURNEY, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode="rich")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    _state["debug"] = debug


def emit(obj: dict, as_json: bool) -> bool:
    """Print one machine-readable object when --json was given; returns whether it did."""
    if as_json:
        typer.echo(json.dumps(obj, ensure_ascii=False, default=str))
    return as_json


def register() -> None:
    from tailorlm.cli import advise, data, eval, generate, loop, models, project, rag, serve, train  # noqa: F401  (each module adds its commands)


register()


def main() -> None:
    # transformers' per-tensor "Loading weights" bars would interleave with Tailor's own progress lines.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app(prog_name="tailor")


if __name__ == "__main__":
    sys.exit(main())
