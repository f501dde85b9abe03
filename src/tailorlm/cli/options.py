"""Options shared by many commands, declared once, and flags derived from a pydantic config's fields.

`config_options(TrainConfig, [...])` turns fields into typer options with the field's description as
their help (litgpt's habit: the CLI says what the config says), so a knob documented in the config is
documented on the command line, and a new field needs no hand-written option.

Deriving flags imports pydantic and the config, which `tailor --help` must not pay for: `lazy_command`
registers a command whose flags are built the first time it is used, and `lazy_group` a group whose
commands are (`tailor train`).
"""

import inspect
import types
import typing
from typing import Literal

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

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


def sampling_option(name: str, **limits):
    """The typer option for one of GenParams' fields (temperature, top_p, max_tokens, stop, seed), with the
    field's default and help: sampling is documented once, where it is defined. `limits`: min, max."""
    import dataclasses

    from tailorlm.models.base import GenParams

    field = {f.name: f for f in dataclasses.fields(GenParams)}[name]
    default = None if field.default is dataclasses.MISSING else field.default
    return typer.Option(default, "--" + name.replace("_", "-"), help=field.metadata["help"], **limits)


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


def _choices(annotation) -> list[str]:
    """The values of a Literal field (Optional[Literal] too); [] for anything else."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _choices(args[0])
    return []


def config_options(model, names, help_overrides: dict | None = None, flags: dict | None = None,
                   section: str | None = None) -> list[inspect.Parameter]:
    """Keyword parameters (typer options, default None: "not given") for the named fields of `model`.

    A bool becomes `--name/--no-name`; help is the field's description unless overridden. `flags` keeps
    the names users already type ({"search": ["--mode"], "k": ["--k", "-k"]}); with `section` (the
    tailor.yaml section the values default to) the help ends with where the default comes from.
    """
    out = []
    for name in names:
        field = model.model_fields[name]
        kind = _flag_type(field.annotation)
        if kind is None:
            raise TypeError(f"{model.__name__}.{name} has no flag type ({field.annotation})")
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{name.replace('_', '-')}"] if kind is bool else [flag]
        decls = list((flags or {}).get(name, decls))
        help_text = (help_overrides or {}).get(name) or field.description
        choices = _choices(field.annotation)
        if choices and not all(c in help_text for c in choices):
            help_text = f"{help_text} One of: {' | '.join(choices)}."
        if section:
            help_text = f"{help_text} Default: {section}.{name}."
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                     default=typer.Option(None, *decls, help=help_text)))
    return out


def with_parameters(func, parameters: list[inspect.Parameter]):
    """`func` (taking **options) with a signature typer reads: its own parameters first, then these."""
    names = {p.name for p in parameters}  # a second call (another app built in one process) replaces the first's
    own = [p for p in inspect.signature(func).parameters.values()
           if p.kind != inspect.Parameter.VAR_KEYWORD and p.name not in names]
    sig = inspect.Signature([*own, *parameters])
    func.__signature__ = sig
    func.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()
                            if p.annotation is not inspect.Parameter.empty}
    return func


def flag_fields(model) -> list[str]:
    """The fields of `model` that fit a single flag, in declaration order."""
    return [name for name, field in model.model_fields.items() if _flag_type(field.annotation) is not None]


class _Lazy:
    """What a lazy command and a lazy group share: the real click object, built from `build()` (a typer app)
    on first use and kept."""

    build = None

    def _real(self):
        if "_built" not in self.__dict__:
            self.__dict__["_built"] = typer.main.get_command(self.build())
        return self.__dict__["_built"]


class LazyCommand(_Lazy, TyperCommand):
    """A command whose parameters are built on first use (`build` returns a typer app holding the command).

    `tailor --help` lists it by its name and help alone; its flags, help page and run are the built
    command's (click hands `make_context`'s context, and so the invocation, to it)."""

    @property
    def params(self):
        return self._real().params

    @params.setter
    def params(self, _value):
        pass  # typer hands the placeholder's (none) at construction

    def make_context(self, info_name, args, parent=None, **extra):
        return self._real().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        return self._real().invoke(ctx)


class LazyGroup(_Lazy, TyperGroup):
    """A command group whose commands are built on first use (`build` returns the group's typer app):
    `tailor train`, whose flags come from TrainConfig."""

    @property
    def commands(self):
        return self._real().commands

    @commands.setter
    def commands(self, _value):
        pass  # typer hands an empty dict at construction; the real commands are built lazily

    def list_commands(self, ctx):
        return self._real().list_commands(ctx)

    def get_command(self, ctx, name):
        return self._real().get_command(ctx, name)


def lazy_group(app: typer.Typer, build, name: str, rich_help_panel: str | None = None, **typer_kwargs) -> None:
    """Add the group `build()` (a typer app) returns to `app` as `name`, built when first used."""
    cls = type(f"Lazy{name.title()}Group", (LazyGroup,), {"build": staticmethod(build)})
    app.add_typer(typer.Typer(cls=cls, **typer_kwargs), name=name, rich_help_panel=rich_help_panel)


def lazy_command(app: typer.Typer, func, derive, name: str | None = None, **command_kwargs):
    """Register `func` (its own options, then `**fields`) on `app` with the options `derive()` returns,
    derived when the command is first used. Returns `func`."""

    def build():
        one = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False, add_completion=False)
        one.command(name or func.__name__)(with_parameters(func, derive()))
        return one

    def placeholder() -> None:
        pass

    placeholder.__doc__ = func.__doc__
    cls = type(f"Lazy{func.__name__.title()}", (LazyCommand,), {"build": staticmethod(build)})
    app.command(name or func.__name__, cls=cls, **command_kwargs)(placeholder)
    return func
