"""The `tailor` command line: a thin layer where each command is one call into the library.

Errors never end in a traceback unless `--debug` (or TAILOR_DEBUG=1) asks for it:
- a `TailorError` (bad config, unknown name, missing model) prints `error: MESSAGE` and exits with its
  code (2);
- an `OSError` (a permission, a full disk, a path that is a file) prints the same way and exits 2;
- anything else is a bug: one line naming the exception and `--debug`, exit 1.
With `--json` the error also goes to stdout as `{"error": {...}}`, so scripts always get one object.
Heavy libraries load inside the commands, so `tailor --help` answers at once.
"""

import json
import os
import sys

import typer
from typer.core import TyperGroup

from tailorlm.errors import TailorError

JOURNEY = """Tailor turns your own data into a custom LLM, one measured rung at a time.

The journey: init -> data prepare -> advise -> ladder -> train -> eval/compare -> serve -> loop -> export.
Available now: init, config, models, chat, generate, data, rag, train, runs, export, eval, compare, gate,
ladder, reports, advise, costs, serve, feedback, loop, promote, rollback, review, ui, quickstart.

Example:  tailor quickstart        # an example project, answered by the embedded model, offline
"""

_state = {"debug": False, "json": False}


class _Group(TyperGroup):
    def parse_args(self, ctx, args):
        # Whether the (sub)command was given --json, known before it runs, so its error can be JSON too.
        argv = list(args)
        _state["json"] = "--json" in (argv[: argv.index("--")] if "--" in argv else argv)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise  # RuntimeErrors, but the command's own way to end: let typer do it
        except typer.TyperException as e:  # usage errors: typer prints them; --json gets the object too
            _json_error(e.format_message(), "usage_error", e.exit_code)
            raise
        except Exception as e:
            if _state["debug"]:
                raise
            if isinstance(e, TailorError):
                message, kind, code = str(e), type(e).__name__, e.exit_code
            elif isinstance(e, OSError):
                message, kind, code = _os_message(e), type(e).__name__, 2
            else:
                message = (f"internal error ({type(e).__name__}: {e}); this is a bug in Tailor. "
                           "`tailor --debug ...` shows the traceback")
                kind, code = "internal_error", 1
            typer.echo(f"error: {message}", err=True)
            _json_error(message, kind, code)
            raise typer.Exit(code) from None


def _os_message(e: OSError) -> str:
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    if not e.strerror:
        return str(e)
    return f"{where}: {e.strerror}" if where else e.strerror


def _json_error(message: str, kind: str, code: int) -> None:
    if _state.get("json"):
        try:
            typer.echo(json.dumps({"error": {"message": message, "type": kind, "exit_code": code}}, ensure_ascii=False))
        except OSError:
            pass  # stdout itself is what failed (a full disk, a closed pipe); stderr has the message


app = typer.Typer(cls=_Group, help=JOURNEY, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode="rich")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", envvar="TAILOR_DEBUG",
                                      help="Show full tracebacks for errors.")) -> None:
    _state["debug"] = debug


def emit(obj: dict, as_json: bool) -> bool:
    """Print one machine-readable object when --json was given; returns whether it did."""
    if as_json:
        typer.echo(json.dumps(obj, ensure_ascii=False, default=str))
    return as_json


def register() -> None:
    from tailorlm.cli import advise, data, eval, generate, loop, models, project, rag, review, serve, train, ui  # noqa: F401  (each module adds its commands)


register()


def main() -> None:
    # transformers' per-tensor "Loading weights" bars would interleave with Tailor's own progress lines.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app(prog_name="tailor")


if __name__ == "__main__":
    sys.exit(main())
