"""Options shared by many commands, declared once, and flags derived from a pydantic config's fields.

`config_options(TrainConfig, [...])` turns fields into typer options with the field's description as
their help (litgpt's habit: the CLI says what the config says), so a knob documented in the config is
documented on the command line, and a new field needs no hand-written option.
"""

import inspect
import types
import typing
from typing import Literal

import typer

JSON = typer.Option(False, "--json", help="Print one machine-readable JSON object.")
PROJECT = typer.Option(None, "--project", "-p", help="Project folder (default: found from the current folder).")
SHORT = typer.Option(False, "--short", help="Only the headline numbers.")
DELTA = typer.Option(0.05, "--delta", min=0.001, max=1.0,
                     help="Difference the power analysis asks about, in metric units (0.05 = 5 points).")
SEED = typer.Option(0, help="Seed of the sample: the same seed draws the same items.")
RESUME_REVIEW = typer.Option(None, "--resume", help="Continue an open review by its id.")
RESUME_RUN = typer.Option(False, help="Continue the latest unfinished run (or --run) from its last checkpoint.")
RUN = typer.Option(None, help="With --resume: the run id.")
CONFIG_FILE = typer.Option(None, help="A run's config.yaml to start from; flags override it.")


def _flag_type(annotation):
    """The click-friendly type of a field: Optional[X] -> X, a Literal -> str (pydantic checks the value),
    a union with a Literal (`float | "auto"`) -> str (pydantic parses it); None when no flag fits."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return str
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _flag_type(args[0])
        if all(_flag_type(a) in (str, int, float) for a in args):
            return str
        return None
    return annotation if annotation in (str, int, float, bool) else None


def config_options(model, names, help_overrides: dict | None = None) -> list[inspect.Parameter]:
    """Keyword parameters (typer options, default None: "not given") for the named fields of `model`.

    A bool becomes `--name/--no-name`; help is the field's description unless overridden.
    """
    out = []
    for name in names:
        field = model.model_fields[name]
        kind = _flag_type(field.annotation)
        if kind is None:
            raise TypeError(f"{model.__name__}.{name} has no flag type ({field.annotation})")
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{name.replace('_', '-')}"] if kind is bool else [flag]
        help_text = (help_overrides or {}).get(name) or field.description
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                     default=typer.Option(None, *decls, help=help_text)))
    return out


def with_parameters(func, parameters: list[inspect.Parameter]):
    """`func` (taking **options) with a signature typer reads: its own parameters first, then these."""
    own = [p for p in inspect.signature(func).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    sig = inspect.Signature([*own, *parameters])
    func.__signature__ = sig
    func.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()
                            if p.annotation is not inspect.Parameter.empty}
    return func


def flag_fields(model) -> list[str]:
    """The fields of `model` that fit a single flag, in declaration order."""
    return [name for name, field in model.model_fields.items() if _flag_type(field.annotation) is not None]
