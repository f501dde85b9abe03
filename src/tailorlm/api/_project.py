"""`tailor init` and `tailor config show/schema` as library calls."""

from pathlib import Path

from tailorlm.api._common import project


def init(path: Path | str = ".", name: str | None = None, description: str | None = None, force: bool = False) -> dict:
    """Create a project (a commented tailor.yaml and the .tailor/ state folder); returns its name and paths.

    >>> init("support", description="Answer customer questions")["config"]  # doctest: +SKIP
    'support/tailor.yaml'
    """
    from tailorlm.project import CONFIG_FILE, init_project

    proj = init_project(path, name=name, description=description, force=force)
    return {"name": proj.config.name, "root": str(proj.root), "config": str(proj.root / CONFIG_FILE),
            "state_dir": str(proj.state_dir)}


def config(where=None) -> dict:
    """The project's resolved config, every default filled in, as JSON-ready data."""
    return project(where).config.model_dump(mode="json")


def config_schema() -> dict:
    """tailor.yaml's JSON Schema: a description on every key; rung kinds and backends list the registered names.

    >>> "enum" in config_schema()["$defs"]["RungConfig"]["properties"]["kind"]
    True
    """
    from tailorlm.config import ProjectConfig

    return ProjectConfig.model_json_schema()
