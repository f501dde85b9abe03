"""Models: the embedded offline defaults, and the backends every rung generates and embeds through.

`get_generator(cfg)` and `get_embedder(cfg)` turn a tailor.yaml model section into a ready object,
through the backend registered under the section's `backend` name (`models/backends.py`).
"""

from tailorlm.errors import ConfigError
from tailorlm.plugins import registry

BACKENDS = registry("tailorlm.backends")  # name -> models.backends.Backend


def backend(name: str):
    """The registered Backend called `name`; a one-line error naming the known ones otherwise."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown model backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def get_generator(cfg):
    """A generator for a `models.generator`-style config section."""
    return backend(cfg.backend).generator(cfg)


def get_embedder(cfg):
    """An embedder for a `models.embedder` config section."""
    found = backend(cfg.backend)
    if found.embedder is None:
        raise ConfigError(f"model backend {cfg.backend!r} has no embedders; use another for models.embedder")
    return found.embedder(cfg)
