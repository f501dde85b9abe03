"""A project: a folder with `tailor.yaml` and the `.tailor/` state folder.

`.tailor/` holds the SQLite database `tailor.db` and the artifacts tree (datasets, indexes,
runs, models, reports). Commands find the project by walking up from the current folder, like
git, or take it from `--project` / `TAILOR_PROJECT`.
"""

import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from tailorlm.config import ProjectConfig, load_config, parse_config
from tailorlm.errors import ConfigError, StateError, TailorError
from tailorlm.paths import safe_name

CONFIG_FILE = "tailor.yaml"
STATE_DIR = ".tailor"
ARTIFACTS = ("datasets", "indexes", "runs", "models", "reports")


@dataclass
class Project:
    root: Path
    config: ProjectConfig = field(repr=False)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def artifacts(self, kind: str) -> Path:
        return self.state_dir / kind

    @cached_property
    def store(self):
        from tailorlm.store import Store

        self.ensure_state()
        url = self.config.store.url or f"sqlite:///{self.state_dir / 'tailor.db'}"
        return Store(url)

    def ensure_state(self) -> None:
        """Create the state folder and check that it is writable, before any work is done."""
        try:
            for kind in ARTIFACTS:
                (self.state_dir / kind).mkdir(parents=True, exist_ok=True)
            # A probe of its own: several processes (the data executors' workers) may check at once.
            with tempfile.NamedTemporaryFile("w", dir=self.state_dir, prefix=".write-test-") as probe:
                probe.write("ok")
        except OSError as e:
            raise StateError(f"cannot write to the state folder {self.state_dir}: {e.strerror or e}") from e

    @classmethod
    def load(cls, path: Path | str | None = None) -> "Project":
        """Load the project at `path`, or the one containing the current folder.

        >>> Project.load("my-project").config.name  # doctest: +SKIP
        'my-project'
        """
        root = find_root(Path(path) if path else None)
        return cls(root, load_config(root / CONFIG_FILE))


def find_root(start: Path | None = None) -> Path:
    if start is None and os.environ.get("TAILOR_PROJECT"):
        start = Path(os.environ["TAILOR_PROJECT"])
    if start is not None:
        if (start / CONFIG_FILE).exists():
            return start.resolve()
        raise ConfigError(f"no {CONFIG_FILE} in {start}; create one with `tailor init {start}`")
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).exists():
            return folder
    raise ConfigError(f"no {CONFIG_FILE} here or in any parent folder; create a project with `tailor init`")


def template(name: str, description: str) -> str:
    text = resources.files("tailorlm").joinpath("templates/tailor.yaml").read_text()
    return text.replace("{name}", name).replace("{description}", description.replace('"', "'"))


def init_project(path: Path | str = ".", name: str | None = None, description: str | None = None,
                 force: bool = False) -> Project:
    """Create tailor.yaml and .tailor/ in `path`.

    >>> init_project("support", description="Answer customer questions about Acme")  # doctest: +SKIP
    Project(root=PosixPath('/home/me/support'))
    """
    root = Path(path).expanduser().resolve()
    name = safe_name(name or root.name, "project name")
    config_path = root / CONFIG_FILE
    if config_path.exists() and not force:
        raise TailorError(f"{config_path} already exists; pass --force to overwrite it")
    text = template(name, description or f"Answer questions for {name}.")
    parse_config(text)  # the template must always be valid; fail before writing anything
    try:
        root.mkdir(parents=True, exist_ok=True)
        config_path.write_text(text)
    except OSError as e:
        raise StateError(f"cannot write {config_path}: {e.strerror or e}") from e
    project = Project(root, load_config(config_path))
    project.ensure_state()
    project.store  # creates and migrates tailor.db
    return project
