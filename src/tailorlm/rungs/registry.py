"""Rung kinds by the name tailor.yaml gives them (`rungs: - kind: few_shot`), found through entry points.

Each kind is a `RungType`: how a rung spec becomes a rung, and where the kind stands on the ladder.
Tailor's own kinds are declared in its pyproject.toml under `[project.entry-points."tailorlm.rungs"]`,
next to the modules that define them; a package adds a kind the same way (`plugins.py`):

    [project.entry-points."tailorlm.rungs"]
    keyword = "my_package.rungs:KEYWORD"   # KEYWORD = RungType("keyword", build_keyword, effort=0.5)

`build(project, spec, pool, embedder=None, version=None, specs=())` returns an object with the Rung
interface (`rungs/base.py`: answer, answer_batch, stream, describe); `rungs.build.build_rung` holds
a prompting rung to the task's labels afterwards, so a kind need not.
"""

from dataclasses import dataclass
from typing import Callable

from tailorlm.errors import TailorError
from tailorlm.plugins import registry

RUNGS = registry("tailorlm.rungs")  # name -> RungType


@dataclass(frozen=True)
class RungType:
    """One kind of rung: its name, how to build it, and its place on the ladder."""

    name: str
    build: Callable  # (project, spec, pool, embedder=None, version=None, specs=()) -> a rung
    effort: float  # the ladder runs cheaper kinds first: classic -1, prompting 0, ..., training 3, ensembles 5
    trains: bool = False  # answers with a model version, which the ladder trains when the rung names no `model`


def rung_type(kind: str) -> RungType:
    """The registered RungType for `kind`, or a one-line error naming the known kinds.

    >>> rung_type("few_shot").effort  # doctest: +SKIP
    1
    """
    if kind not in RUNGS:
        raise TailorError(f"unknown rung kind {kind!r}; known: {', '.join(RUNGS)}")
    found = RUNGS[kind]
    if not isinstance(found, RungType):
        raise TailorError(f"rung kind {kind!r} (from {RUNGS.provider(kind)}) is not a RungType: {found!r}")
    return found


def trains(kind: str) -> bool:
    """Whether rungs of `kind` answer with a trained model version (sft, dpo, cpt, grpo, hybrid)."""
    return rung_type(kind).trains
