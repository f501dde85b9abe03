"""The project's prompt library: `prompts/NAME.md`, versioned by content.

A rung names its prompt (`prompt: default`). The prompt is a file in the project's `prompts/`
folder, with `{description}` and `{labels}` filled in from the task; without a file, `default` is
built from the task description. A prompt's version is the first 8 hex digits of the sha256 of its
text, and every text a report used is kept in `.tailor/prompts/NAME@VERSION.md`, so an old
report's prompt can always be read back after the file was edited.
"""

import hashlib

from tailorlm.errors import TailorError
from tailorlm.paths import inside, safe_name


class _Blank(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def _version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def load_prompt(project, name: str = "default") -> dict:
    """{name, version, text, path}; the text has the task's fields filled in.

    >>> load_prompt(project)["version"]  # doctest: +SKIP
    '3f9a1c20'
    """
    from tailorlm.chat import system_prompt

    safe_name(name, "prompt name")
    path = inside(project.root, f"prompts/{name}.md")
    task = project.config.task
    if path.exists():
        raw = path.read_text(encoding="utf-8").strip()
        if not raw:
            raise TailorError(f"prompts/{name}.md is empty")
        text = raw.format_map(_Blank(description=task.description.strip(), labels=", ".join(task.labels)))
        source = str(path.relative_to(project.root))
    elif name == "default":
        text, source = system_prompt(task), "built from task.description"
    else:
        raise TailorError(f"no prompt {name!r}: write prompts/{name}.md in the project")
    version = _version(text)
    kept = project.artifacts("prompts") / f"{name}@{version}.md"
    kept.parent.mkdir(parents=True, exist_ok=True)
    if not kept.exists():
        kept.write_text(text, encoding="utf-8")
    return {"name": name, "version": version, "id": f"{name}@{version}", "text": text, "source": source}
