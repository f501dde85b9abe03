"""Extension points: data steps, rungs, metrics and backends, found through entry points.

A package adds one by declaring it in its own pyproject.toml, and Tailor's built-in ones are
declared the same way in Tailor's (simonw/llm's habit: the built-ins are plugins too), so there is
one lookup and no list to keep in step with it:

    [project.entry-points."tailorlm.steps"]
    min_words = "my_package.steps:MinWords"

    [project.entry-points."tailorlm.metrics"]
    answer_length = "my_package.metrics:answer_length"

The groups, and what each name must point at:
- `tailorlm.steps`: a `data.steps.base.Step` subclass (its `Params` check tailor.yaml's settings);
- `tailorlm.metrics`: `fn(preds, refs, **kw) -> {"per_example": [...], "score": float}`;
- `tailorlm.rungs`: a `rungs.registry.RungKind` (how a rung spec becomes a rung, and its place on the ladder);
- `tailorlm.backends`: a `models.backends.Backend` (how a `models.generator` / `models.embedder` section loads).

This module sits on the lowest floor: it imports nothing of Tailor's, and it loads an entry point
only when its name is used, so reading tailor.yaml does not import every step.
"""

from collections.abc import Iterator, Mapping
from functools import lru_cache
from importlib.metadata import EntryPoint, EntryPoints, entry_points

GROUPS = ("tailorlm.steps", "tailorlm.rungs", "tailorlm.metrics", "tailorlm.backends")


@lru_cache(maxsize=1)
def _scan() -> EntryPoints:
    """Every installed entry point, read once: one pass over the installed distributions serves all groups."""
    return entry_points()


class Registry(Mapping):
    """Name -> object for one entry-point group; names are read once, objects loaded on first use.

    Where two installed packages declare the same name, Tailor's own entry wins, so a plugin cannot
    silently change what a built-in name means; otherwise the first distribution found wins.

    >>> "exact_dedup" in Registry("tailorlm.steps")  # doctest: +SKIP
    True
    """

    def __init__(self, group: str):
        self.group = group
        self._points: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, object] = {}

    def points(self) -> dict[str, EntryPoint]:
        if self._points is None:
            found: dict[str, EntryPoint] = {}
            for ep in _scan().select(group=self.group):
                own = ep.dist is not None and ep.dist.name == "tailorlm"
                if ep.name not in found or own:
                    found[ep.name] = ep
            self._points = found
        return self._points

    def __getitem__(self, name: str):
        if name not in self._loaded:
            self._loaded[name] = self.points()[name].load()  # KeyError for an unknown name
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.points())

    def __len__(self) -> int:
        return len(self.points())

    def __contains__(self, name) -> bool:
        return name in self.points()

    def provider(self, name: str) -> str:
        """The distribution that declares `name` (for messages and `tailor plugins`-style listings)."""
        ep = self.points()[name]
        return ep.dist.name if ep.dist is not None else "?"

    def refresh(self) -> None:
        """Read the entry points again (after a package was installed into a running process)."""
        _scan.cache_clear()
        self._points, self._loaded = None, {}

    def choices(self) -> str:
        """The names as a message lists them: 'a', 'b' or 'c' (pydantic's spelling for a Literal)."""
        quoted = [repr(n) for n in self]
        return " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else "".join(quoted)


_REGISTRIES: dict[str, Registry] = {}


def registry(group: str) -> Registry:
    """The one Registry of `group` in this process (config checks names in it, the packages load from it)."""
    if group not in GROUPS:
        raise ValueError(f"unknown entry-point group {group!r}; groups: {', '.join(GROUPS)}")
    if group not in _REGISTRIES:
        _REGISTRIES[group] = Registry(group)
    return _REGISTRIES[group]
