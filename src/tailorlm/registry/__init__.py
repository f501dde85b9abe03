"""The typed artifact layer: every dataset version, model version, report, ladder and alias, named one way.

It sits over `store/` (the database) and the artifacts tree (`.tailor/`); producers write through it
and readers (the CLI, serve, advise, check, the workbench) read through it:
- `artifacts.py`: the types (pydantic), matching what is stored today;
- `names.py`: the one name grammar, `NAME[:QUALIFIER][@TAG]`, and the retired `NAME:ALIAS` spelling;
- `resolve.py`: name -> dataset version, model version, aliases (and every version, alias target, row counts);
- `moves.py`: alias moves, the one write path for aliases, and their history;
- `reports.py`: eval reports and ladders, written and found through the store.

>>> from tailorlm import registry
>>> registry.model(project, "support@production").adapter_path  # doctest: +SKIP
'.tailor/runs/sft-.../adapter'
"""

_EXPORTS = {
    "DatasetVersion": "artifacts", "ModelVersion": "artifacts", "Report": "artifacts", "Ladder": "artifacts",
    "Alias": "artifacts", "AliasMove": "artifacts", "ReportEntry": "artifacts", "StepSummary": "artifacts", "Accounting": "artifacts",
    "Name": "names", "parse": "names", "alias_ref": "names",
    "dataset": "resolve", "datasets": "resolve", "model": "resolve", "models": "resolve", "aliases": "resolve",
    "alias_target": "resolve", "summary": "resolve",
    "move_alias": "moves", "alias_history": "moves",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Loaded on first use: pydantic and the store stay out of `tailor --help`.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"tailorlm.registry.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tailorlm.registry' has no attribute {name!r}")
