"""User-facing errors.

A `TailorError` is a problem the user can fix (bad config, a missing model, an unwritable folder).
The CLI prints its message on one line and exits with code 2; anything else is a bug and keeps
its traceback.
"""


class TailorError(Exception):
    """An error whose message tells the user what went wrong and what to do about it."""

    exit_code = 2


class ConfigError(TailorError):
    """tailor.yaml could not be read or does not match the schema."""


class ModelNotAvailable(TailorError):
    """A model is not in the local cache and could not be fetched."""


class StateError(TailorError):
    """The project's state folder or database cannot be used."""
