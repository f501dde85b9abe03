"""`tailor loop`, `tailor promote`, `tailor rollback`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.project import JSON, PROJECT


@app.command("loop", rich_help_panel="Improve")
def loop_cmd(
    method: str = typer.Option("auto", help="auto (sft on corrections, else dpo on pairs) | sft | dpo."),
    min_examples: int = typer.Option(20, min=1, help="Fewest curated examples worth a training run."),
    max_steps: int = typer.Option(-1, help="Stop the candidate's training after this many steps (-1: one epoch)."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Gate the candidate but leave production where it is."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Feedback -> curated data -> retrain a candidate -> gate against production -> promote only if it passes.

    Example: tailor loop --min-examples 50
    """
    from tailorlm.cli.eval import _progress
    from tailorlm.loop.run import run_loop
    from tailorlm.project import Project

    proj = Project.load(project)
    progress, update = _progress(as_json)
    log = (lambda _m: None) if as_json else progress.console.print
    with progress:
        result = run_loop(proj, method, min_examples, {"max_steps": max_steps} if max_steps > 0 else None, log=log,
                          on_progress=update, promote_on_pass=not no_promote)
    if emit(result, as_json):
        return
    for c in result["gate"]["checks"]:
        typer.echo(f"  {'ok  ' if c['passed'] else 'FAIL'} {c['suite']:<10} {c['metric']:<12} {c['baseline']:.4f} -> "
                   f"{c['candidate']:.4f} ({c['delta']:+.4f}, p={c['p_value']:.3g})")
    typer.echo(f"{'promoted' if result['promoted'] else 'not promoted'}: production is {result['production_after']} "
               f"(record: {result['path']})")


@app.command("promote", rich_help_panel="Improve")
def promote_cmd(
    version: str = typer.Argument(..., help="Model version id, e.g. support:sft@v3."),
    alias: str = typer.Option("production", help="Alias to move."),
    reason: str = typer.Option(None, help="Why, for the alias history."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Point an alias (production by default) at a model version; the move is kept in the alias history.

    Example: tailor promote support:sft@v3 --reason "won the ladder"
    """
    from tailorlm.loop.run import promote
    from tailorlm.project import Project

    result = promote(Project.load(project), version, alias, reason)
    if not emit(result, as_json):
        typer.echo(f"{result['name']}:{result['alias']} -> {result['target']} (was {result['previous'] or 'unset'})")


@app.command("rollback", rich_help_panel="Improve")
def rollback_cmd(
    alias: str = typer.Option("production", help="Alias to move back."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Move an alias back to its previous model version.

    Example: tailor rollback
    """
    from tailorlm.loop.run import rollback
    from tailorlm.project import Project

    result = rollback(Project.load(project), alias)
    if not emit(result, as_json):
        typer.echo(f"{result['name']}:{result['alias']} -> {result['target']} (was {result['previous']})")
