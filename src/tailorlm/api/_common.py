"""What every public API function starts from: the project it is given, and the silent log."""


def project(where=None):
    """A `Project` from a Project (returned as it is), a folder, or None (found from the current folder)."""
    from tailorlm.project import Project

    return where if isinstance(where, Project) else Project.load(where)


def _quiet(_message: str) -> None:
    pass
