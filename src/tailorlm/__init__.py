"""Tailor: turn an organisation's own data into a custom LLM, one measured rung at a time.

The library is the product; the `tailor` CLI and the HTTP API are thin layers over it.
Heavy libraries (torch, transformers, sentence-transformers) are imported inside the functions
that need them, so `import tailorlm` and `tailor --help` stay fast.
"""

import warnings

__version__ = "0.1.0"

# peft reads this deprecated transformers property whenever it wraps a model: nothing a user can act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
