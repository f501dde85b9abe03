"""Tailor: turn an organisation's own data into a custom LLM, one measured rung at a time.

The library is the product; the `tailor` CLI and the HTTP API are thin layers over it:

>>> import tailorlm
>>> tailorlm.prepare("support")                        # doctest: +SKIP
>>> tailorlm.evaluate("support", "few_shot")           # doctest: +SKIP
>>> tailorlm.ladder("support")["recommendation"]       # doctest: +SKIP
>>> tailorlm.train("support", dataset="tickets")       # doctest: +SKIP
>>> tailorlm.serve("support", port=8000)               # doctest: +SKIP

The functions live in `tailorlm.api` and the artifact types (`DatasetVersion`, `ModelVersion`, `Report`,
`Ladder`, `Alias`) in `tailorlm.registry`; both load on first use (module `__getattr__`), and heavy
libraries (torch, transformers, sentence-transformers) are imported inside the functions that need them,
so `import tailorlm` and `tailor --help` stay fast. `tailorlm.ladder`, `tailorlm.train` and `tailorlm.serve`
are also the packages of those stages, made callable (`tailorlm.callables`).
"""

import warnings

__version__ = "0.1.0"

# peft reads this deprecated transformers property whenever it wraps a model: nothing a user can act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

_API = ("prepare", "prepare_summary", "index", "evaluate", "compare", "gate", "report", "reports", "advise", "costs",
        "gpus", "runs", "run", "export", "check", "quickstart", "project")
_PACKAGES = ("ladder", "train", "serve")  # callable packages (tailorlm.callables)
_TYPES = ("DatasetVersion", "ModelVersion", "Report", "Ladder", "Alias")

__all__ = [*_API, *_PACKAGES, *_TYPES]


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module("tailorlm.api"), name)
    if name in _PACKAGES:
        return importlib.import_module(f"tailorlm.{name}")
    if name in _TYPES:
        return getattr(importlib.import_module("tailorlm.registry.artifacts"), name)
    raise AttributeError(f"module 'tailorlm' has no attribute {name!r}")
