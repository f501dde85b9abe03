"""Where Tailor keeps things outside a project, and guards for user-supplied names.

Everything a project holds lives in its `.tailor/` folder. The only user-level state is the model
cache, `TAILOR_CACHE_DIR` (default `~/.cache/tailor`): fetched and converted models, shared by
projects. Tests that damage a cache point it at a temporary folder.
"""

import hashlib
import os
import re
from pathlib import Path

from tailorlm.errors import TailorError


def cache_dir() -> Path:
    return Path(os.environ.get("TAILOR_CACHE_DIR") or Path.home() / ".cache" / "tailor").expanduser()


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(name: str, what: str = "name") -> str:
    """Check a user-supplied name before it becomes part of a path.

    >>> safe_name("support-v2")
    'support-v2'

    Names like `../etc` or `a/b` are refused, so nothing a user types can escape the project folder.
    """
    if not _SAFE_NAME.match(name) or ".." in name:
        raise TailorError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' (no slashes, no '..')"
        )
    return name


def inside(root: Path, *parts: str) -> Path:
    """Join `parts` under `root` and refuse any result that lands outside it."""
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise TailorError(f"path {path} is outside {root}")
    return path


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks so large files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
