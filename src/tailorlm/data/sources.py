"""`tailor data add`: add a source to tailor.yaml without losing the file's comments.

The new entry is spliced into the YAML text where the `sources` list is, and the result is
validated before anything is written.
"""

import json

import yaml

from tailorlm.config import parse_config
from tailorlm.errors import TailorError
from tailorlm.paths import inside, safe_name
from tailorlm.project import CONFIG_FILE


def add_source(project, name: str, path: str, kind: str | None = None, fmt: str = "auto",
               fields: list[str] | None = None, license: str | None = None) -> dict:
    """Append a source to the project's tailor.yaml; returns the entry.

    >>> add_source(project, "tickets", "data/tickets.jsonl", kind="chat")  # doctest: +SKIP
    {'name': 'tickets', 'path': 'data/tickets.jsonl', 'kind': 'chat'}
    """
    safe_name(name, "source name")
    if any(s.name == name for s in project.config.sources):
        raise TailorError(f"source {name!r} already exists in {CONFIG_FILE}")
    inside(project.root, path)  # a source may not point outside the project
    entry: dict = {"name": name, "path": path}
    if kind:
        entry["kind"] = kind
    if fmt != "auto":
        entry["format"] = fmt
    if fields:
        pairs = [f.split("=", 1) for f in fields]
        if any(len(p) != 2 or not all(p) for p in pairs):
            raise TailorError("--field takes OURS=THEIRS, e.g. text=body")
        entry["fields"] = dict(pairs)
    if license:
        entry["license"] = license
    config_path = project.root / CONFIG_FILE
    text = config_path.read_text(encoding="utf-8")
    new_text = _splice(text, entry)
    project.config = parse_config(new_text, CONFIG_FILE)  # refuse to write a config that would not load
    config_path.write_text(new_text, encoding="utf-8")
    return entry


def _splice(text: str, entry: dict) -> str:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    node = next((v for k, v in root.value if k.value == "sources"), None) if root is not None else None

    def block(indent: int) -> list[str]:
        pad = " " * indent
        out = [f"{pad}- name: {json.dumps(entry['name'])}\n"]
        out += [f"{pad}  {k}: {json.dumps(v)}\n" for k, v in entry.items() if k != "name"]
        return out

    if node is None:
        return "".join(lines) + "sources:\n" + "".join(block(2))
    if not node.value:  # `sources: []` (or `sources:` with nothing): rewrite that line as a block list
        row = node.start_mark.line
        key_line = lines[row]
        lines[row] = key_line[: key_line.index("sources")] + "sources:\n"
        indent = key_line.index("sources") + 2
        return "".join(lines[: row + 1] + block(indent) + lines[row + 1 :])
    if node.flow_style:
        raise TailorError(f"{CONFIG_FILE}: sources is written as a [flow, list]; write it as a block list to use `data add`")
    indent = node.value[0].start_mark.column - 2
    end = node.value[-1].end_mark.line + (1 if node.value[-1].end_mark.column else 0)
    # The parser's end of the last entry runs on over blank lines and comments up to the next key,
    # so the next section's heading comment would end up above the new entry. Step back over them,
    # keeping comments indented inside the entry with it.
    while end > node.value[-1].start_mark.line + 1 and _trailing(lines[end - 1], indent):
        end -= 1
    return "".join(lines[:end] + block(indent) + lines[end:])


def _trailing(line: str, indent: int) -> bool:
    """A blank line, or a comment not indented into a list entry at `indent`."""
    stripped = line.lstrip()
    return not stripped or (stripped.startswith("#") and len(line) - len(stripped) <= indent)
