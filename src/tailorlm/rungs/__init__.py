"""Rungs: the ways of answering that the ladder compares and the server serves.

Each rung kind (zero_shot, few_shot, rag, classic, ensemble, prompt_opt, the trained kinds) turns
messages into an `Answer` through one interface (`rungs/base.py`), and is registered by name as a
`tailorlm.rungs` entry point (`rungs/registry.py`), as a plugin's kind would be. The package sits below the
ladder: rag, train, eval and serve import rungs, and only the ladder (`ladder/run.py`) orchestrates
them.
"""
