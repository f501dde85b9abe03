"""One name grammar for every artifact: `NAME[:QUALIFIER][@TAG]`.

- a dataset version: `tickets`, `tickets@latest` (an alias), `tickets@3f9a1c` (a hash prefix);
- a model version: its id `support:sft@v3`, or an alias `support@production`;
- a configured rung: `support:zero_shot` (PROJECT:RUNG, no tag);
- a report: its id (`rep-1a2b...`, `ladder-2026-...`) or a unique prefix of it.

`@` always introduces a tag (an alias or a version), `:` a qualifier (a rung or a training method).
The older alias spelling `NAME:ALIAS` (`support:production`) is still accepted: the resolver reads
it as `NAME@ALIAS` and says so once per process on stderr, so scripts keep working while they move.

>>> parse("support:sft@v3")
Name(name='support', qualifier='sft', tag='v3')
>>> str(parse("tickets"))
'tickets'
"""

import sys
from dataclasses import dataclass

from tailorlm.errors import TailorError


@dataclass(frozen=True)
class Name:
    name: str
    qualifier: str | None = None
    tag: str | None = None

    def __str__(self) -> str:
        return self.name + (f":{self.qualifier}" if self.qualifier else "") + (f"@{self.tag}" if self.tag else "")


def parse(ref: str) -> Name:
    """Split a reference into name, qualifier and tag; refuses an empty part (`support@`, `:sft`)."""
    if not isinstance(ref, str) or not ref.strip():
        raise TailorError("an empty name: give NAME, NAME@ALIAS or an id")
    head, at, tag = ref.partition("@")
    name, colon, qualifier = head.partition(":")
    if not name or (colon and not qualifier) or (at and not tag) or "@" in tag:
        raise TailorError(f"{ref!r} is not a name: use NAME, NAME@ALIAS, NAME:RUNG or an id like NAME:sft@v3")
    return Name(name, qualifier or None, tag or None)


def alias_ref(name: str, alias: str) -> str:
    """The one spelling of an alias reference.

    >>> alias_ref("support", "production")
    'support@production'
    """
    return f"{name}@{alias}"


_warned: set[str] = set()


def deprecated_alias(old: str, new: str) -> None:
    """Say once per process (on stderr, not as a Python warning) that `old` is the retired spelling of `new`."""
    if old in _warned:
        return
    _warned.add(old)
    print(f"tailor: {old!r} is the old alias spelling (NAME:ALIAS); write {new!r} (NAME@ALIAS). "
          "The old one still works for now.", file=sys.stderr)


def model_alias(project, ref: str) -> tuple[str, str] | None:
    """(NAME, ALIAS) when `ref` names a model alias, in either spelling; None otherwise.

    `support@production` is an alias when it is no version id; `support:production` is read the same way
    (with the deprecation message) when `support` has an alias `production` and no rung of that name.
    """
    try:
        n = parse(ref)
    except TailorError:
        return None  # not a name at all, so no alias either
    if n.tag and not n.qualifier:
        return n.name, n.tag
    if n.qualifier and not n.tag and project.store.get_alias("model", n.name, n.qualifier) is not None:
        if not (n.name == project.config.name and n.qualifier in {s.label for s in project.config.rungs}):
            deprecated_alias(ref, alias_ref(n.name, n.qualifier))
            return n.name, n.qualifier
    return None
