"""`tailor loop`, `tailor promote`, `tailor rollback` and `tailor ab report`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT

ab_app = typer.Typer(help="A/B canaries: the candidate alias on a share of live users (serve.ab).", no_args_is_help=True)
app.add_typer(ab_app, name="ab", rich_help_panel="Improve")


@app.command("loop", rich_help_panel="Improve")
def loop_cmd(
    method: str = typer.Option("auto", help="auto (sft on corrections, else dpo on pairs, else kto on thumbs) | sft | dpo | kto."),
    min_examples: int = typer.Option(20, min=1, help="Fewest curated examples worth a training run."),
    max_steps: int = typer.Option(-1, help="Stop the candidate's training after this many steps (-1: one epoch)."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Gate the candidate but leave production where it is."),
    ab: bool = typer.Option(False, "--ab", help="Canary instead of promoting: a candidate non-inferior offline gets "
                            "serve.ab.share of live users; while one runs, decide it on live feedback (promote when "
                            "non-inferior, roll back when significantly worse, else wait)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Feedback -> curated data -> retrain a candidate -> gate against production -> promote only if it passes.

    Example: tailor loop --min-examples 50
    Example: tailor loop --ab    # run again later: it promotes, rolls back or waits on live feedback
    """
    from tailorlm.api import loop
    from tailorlm.progress import display

    with display(not as_json) as (on_progress, console):
        result = loop(project, method, min_examples, max_steps, promote=not no_promote, ab=ab,
                      log=(lambda _m: None) if as_json else console.print, on_progress=on_progress)
    if emit(result, as_json):
        return
    if result.get("kind") == "canary":
        _echo_ab(result["ab"])
        moved = "promoted" if result["promoted"] else "rolled back" if result["rolled_back"] else "waiting"
        typer.echo(f"{moved}: production is {result['production_after']} (record: {result['path']})")
        return
    for c in result["gate"]["checks"]:
        typer.echo(f"  {'ok  ' if c['passed'] else 'FAIL'} {c['suite']:<10} {c['metric']:<12} {c['baseline']:.4f} -> "
                   f"{c['candidate']:.4f} ({c['delta']:+.4f}, p={c['p_value']:.3g})")
    if ab:
        typer.echo(f"{'canary started' if result['canary'] else 'no canary'}: {result['candidate']} "
                   f"(record: {result['path']})")
        return
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
    from tailorlm.api import promote

    result = promote(project, version, alias, reason)
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
    from tailorlm.api import rollback

    result = rollback(project, alias)
    if not emit(result, as_json):
        typer.echo(f"{result['name']}:{result['alias']} -> {result['target']} (was {result['previous']})")


@ab_app.command("report")
def ab_report_cmd(
    production: str = typer.Option(None, help="Production version (default: the production alias)."),
    candidate: str = typer.Option(None, help="Candidate version (default: the candidate alias)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Compare the canary's arms on live feedback: thumbs-up rate, mean rating, corrections per 100 answers,
    each with intervals, a two-sided test and a non-inferiority test at serve.ab's margins.

    Example: tailor ab report --json
    """
    from tailorlm.api import ab_report

    result = ab_report(project, production, candidate)
    if not emit(result, as_json):
        _echo_ab(result)


def _echo_ab(rep: dict) -> None:
    def num(v):
        return "-" if v is None else f"{v:.3f}"

    a = rep["arms"]
    typer.echo(f"production {rep['production']}: {a['production']['answers']} answers | candidate {rep['candidate']}: "
               f"{a['candidate']['answers']} answers (share {rep['share']:g}, alpha {rep['alpha']:g})")
    for m, r in rep["metrics"].items():
        p, c = r["production"], r["candidate"]
        typer.echo(f"  {m:<20} {num(p['value'])} [{num(p['low'])}, {num(p['high'])}] n={p['n']:<5} -> "
                   f"{num(c['value'])} [{num(c['low'])}, {num(c['high'])}] n={c['n']:<5} "
                   f"diff {num(r['difference'])} [{num(r['low'])}, {num(r['high'])}] p={num(r['p_value'])} ({r['test']}); "
                   f"non-inferior at {r['margin']:g}: p={num(r['p_noninferior'])}")
    typer.echo(f"decision: {rep['verdict']['decision']} ({rep['verdict']['reason']})")
