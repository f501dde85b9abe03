"""Backends: how a `models.generator` or `models.embedder` section of tailor.yaml becomes a model object.

Each backend is registered by name under the `tailorlm.backends` entry points (`plugins.py`):
Tailor's `local` (transformers in-process, sentence-transformers) and `openai` (any
OpenAI-compatible endpoint) are declared in its pyproject.toml, and a package adds its own the same
way, pointing at a `Backend`. `get_generator` / `get_embedder` (`models/__init__.py`) look it up.
"""

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Backend:
    """A named way to load generators (and, if it has one, embedders) from a config section."""

    name: str
    generator: Callable  # (GeneratorConfig) -> an object with the Generator protocol (models/base.py)
    embedder: Callable | None = None  # (EmbedderConfig) -> an Embedder; None: this backend only generates


def _local_generator(cfg):
    from tailorlm.models.local import LocalGenerator

    return LocalGenerator.load(cfg.model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, quant=cfg.quant)


def _local_embedder(cfg):
    from tailorlm.models.embedders import LocalEmbedder

    return LocalEmbedder.load(cfg.model, batch_size=cfg.batch_size, runtime=cfg.runtime)


def _openai_generator(cfg):
    from tailorlm.models.openai_compat import OpenAIGenerator

    return OpenAIGenerator(cfg.base_url, cfg.model, cfg.api_key_env)


def _openai_embedder(cfg):
    from tailorlm.models.openai_compat import OpenAIEmbedder

    return OpenAIEmbedder(cfg.base_url, cfg.model, cfg.api_key_env, cfg.batch_size)


LOCAL = Backend("local", _local_generator, _local_embedder)
OPENAI = Backend("openai", _openai_generator, _openai_embedder)
