"""`tailor eval`, `tailor compare`, `tailor gate`, `tailor ladder`, `tailor reports`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.project import JSON, PROJECT

reports_app = typer.Typer(help="Eval and ladder reports.", no_args_is_help=True)
app.add_typer(reports_app, name="reports", rich_help_panel="Evaluate")


def _progress(as_json: bool):
    """A rich progress display with one bar per task, fed by on_progress(task, done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        disable=as_json, transient=False)
    tasks = {}

    def update(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total or None)
        progress.update(tasks[name], completed=done, total=total or None)

    return progress, update


def _metric_line(name: str, m: dict) -> str:
    return f"{name:<18} {m['mean']:.4f}  95% CI [{m['low']:.4f}, {m['high']:.4f}]  n={m['n']} ({m['method']})"


@app.command("eval", rich_help_panel="Evaluate")
def eval_cmd(
    model: str = typer.Argument(..., help="A rung name from tailor.yaml, a model version id, or PROJECT:ALIAS."),
    suite: str = typer.Option(None, "--suite", help="Golden JSONL, a prepared dataset's name, or `general` (default: eval)."),
    metrics: str = typer.Option(None, help="Comma-separated metrics (default: eval.metrics)."),
    max_tokens: int = typer.Option(None, min=1, help="Answer budget (default: 12 for classification, else 128)."),
    batch_size: int = typer.Option(8, min=1, help="Prompts per generation batch."),
    fresh: bool = typer.Option(False, "--fresh", help="Answer every example again instead of reusing saved answers."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Score one rung or model version on a suite: every metric with its 95% CI, latency, cost.

    Example: tailor eval few_shot --suite golden.jsonl --metrics accuracy,macro_f1
    """
    from tailorlm.eval.runner import default_params, evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.ladder.rungs import rung_for_model
    from tailorlm.models.pool import ModelPool
    from tailorlm.project import Project

    proj = Project.load(project)
    name = model if ":" in model else f"{proj.config.name}:{model}"
    rung = rung_for_model(proj, name, ModelPool(proj))
    s = load_suite(proj, suite)
    params = default_params(proj)
    if max_tokens:
        params.max_tokens = max_tokens
    progress, update = _progress(as_json)
    with progress:
        report = evaluate(proj, rung, s, metrics.split(",") if metrics else None, params, subject=name,
                          batch_size=batch_size, fresh=fresh, on_progress=lambda d, t: update(name, d, t))
    summary = {k: report[k] for k in ("id", "subject", "suite", "metrics", "latency", "cost_per_1k", "errors", "path")}
    if emit(summary, as_json):
        return
    typer.echo(f"{report['subject']} on {s.name}@{s.version} (n={len(s.examples)}): report {report['id']}")
    for m, v in report["metrics"].items():
        typer.echo("  " + _metric_line(m, v))
    typer.echo(f"  latency p50 {report['latency']['p50'] * 1000:.0f} ms, p95 {report['latency']['p95'] * 1000:.0f} ms; "
               f"errors {report['errors']}; saved to {report['path']}")


@app.command("compare", rich_help_panel="Evaluate")
def compare_cmd(
    baseline: str = typer.Argument(..., help="Report id (or prefix) or path of the baseline (A)."),
    candidate: str = typer.Argument(..., help="Report id (or prefix) or path of the candidate (B)."),
    show: int = typer.Option(10, min=0, help="Differing examples to list."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Two reports on the same suite: each metric's delta with a paired 95% CI and a significance test.

    Example: tailor compare rep-1a2b rep-3c4d
    """
    from tailorlm.eval.compare import compare
    from tailorlm.eval.runner import load_report
    from tailorlm.project import Project

    proj = Project.load(project)
    result = compare(load_report(proj, baseline), load_report(proj, candidate), max_listed=show)
    if emit(result, as_json):
        return
    typer.echo(f"A = {result['a']['subject']}  B = {result['b']['subject']}  on {result['suite']['name']}"
               f"@{result['suite']['version']} (n={result['n']})")
    for m, d in result["metrics"].items():
        verdict = "no significant difference" if not d["significant"] else f"{d['better'].upper()} is better"
        typer.echo(f"  {m:<16} A {d['a']:.4f}  B {d['b']:.4f}  delta {d['delta']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
                   f"  p={d['p_value']:.3g} ({d['test']}): {verdict}")
    typer.echo(f"{result['n_differ']} examples differ on {result['primary']}" + (":" if result["differ"] else ""))
    for x in result["differ"]:
        typer.echo(f"  {x['id']}: A={str(x['a'])[:60]!r}  B={str(x['b'])[:60]!r}")


@app.command("gate", rich_help_panel="Evaluate")
def gate_cmd(
    pairs: list[str] = typer.Argument(..., help="BASELINE:CANDIDATE report ids, one pair per guarded suite."),
    margin: float = typer.Option(None, min=0, help="Allowed drop before failing (default: eval.margin)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """The regression gate: fail when any metric drops by more than the margin, significantly. Exit 1 on failure.

    Example: tailor gate rep-prod-golden:rep-cand-golden rep-prod-general:rep-cand-general
    """
    from tailorlm.errors import TailorError
    from tailorlm.eval.compare import gate
    from tailorlm.eval.runner import load_report
    from tailorlm.project import Project

    proj = Project.load(project)
    loaded = []
    for p in pairs:
        if p.count(":") != 1:
            raise TailorError(f"{p!r}: give BASELINE:CANDIDATE report ids")
        a, b = p.split(":")
        loaded.append((load_report(proj, a), load_report(proj, b)))
    result = gate(loaded, proj.config.eval.margin if margin is None else margin)
    if not emit(result, as_json):
        for c in result["checks"]:
            mark = "ok  " if c["passed"] else "FAIL"
            typer.echo(f"{mark} {c['suite']:<12} {c['metric']:<14} {c['baseline']:.4f} -> {c['candidate']:.4f} "
                       f"({c['delta']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}], p={c['p_value']:.3g})")
        typer.echo("gate passed" if result["passed"] else f"gate failed: {len(result['failures'])} metric(s) regressed "
                   f"by more than {result['margin']} with p < 0.05")
    if not result["passed"]:
        raise typer.Exit(1)


@app.command("ladder", rich_help_panel="Evaluate")
def ladder_cmd(
    rungs: str = typer.Option(None, help="Only these rungs (comma-separated names)."),
    batch_size: int = typer.Option(8, min=1, help="Prompts per generation batch."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Every configured rung on the same golden suite: quality with CIs, latency, cost, and a recommendation.

    Example: tailor ladder
    """
    from tailorlm.ladder.run import run_ladder
    from tailorlm.project import Project

    proj = Project.load(project)
    progress, update = _progress(as_json)
    log = (lambda m: None) if as_json else progress.console.print
    with progress:
        ladder = run_ladder(proj, rungs.split(",") if rungs else None, log=log, on_progress=update, batch_size=batch_size)
    if emit(ladder, as_json):
        return
    print_ladder(ladder)


def print_ladder(ladder: dict, echo=typer.echo) -> None:
    from rich.console import Console
    from rich.table import Table

    s, primary = ladder["suite"], ladder["primary"]
    table = Table(title=f"Ladder on {s['name']}@{s['version']} (n={s['n']})")
    for col in ("rung", primary, "95% CI", "p50 ms", "p95 ms", "cost/1k", "errors"):
        table.add_column(col, justify="left" if col == "rung" else "right")
    for r in ladder["rungs"]:
        q, c = r["quality"], r["cost_per_1k"]
        name = r["name"] + (" *" if r["name"] == ladder["recommendation"]["rung"] else "")
        table.add_row(name, f"{q['mean']:.3f}", f"[{q['low']:.3f}, {q['high']:.3f}]", f"{r['latency']['p50'] * 1000:.0f}",
                      f"{r['latency']['p95'] * 1000:.0f}", "n/a" if c["usd_per_1k"] is None else f"{c['usd_per_1k']:.4f}",
                      str(r["errors"]))
    Console().print(table)
    for c in ladder["comparisons"]:
        d = c["metrics"][primary]
        echo(f"  {c['a']} -> {c['b']}: {primary} {d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], "
             f"p={d['p_value']:.3g} ({d['test']})")
    echo(f"\nRecommended: {ladder['recommendation']['rung']}. {ladder['recommendation']['reason']}")
    echo(f"Report: {ladder['path']}  chart: {ladder['chart_png']}, {ladder['chart_html']}")


@reports_app.command("list")
def reports_list(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """Every eval and ladder report, newest last.

    Example: tailor reports list --json
    """
    import json

    from tailorlm.project import Project

    proj = Project.load(project)
    rows = [{**r, "metrics": json.loads(r["metrics"])} for r in proj.store.select("reports", order_by="created_at")]
    if emit({"reports": rows}, as_json):
        return
    for r in rows:
        typer.echo(f"{r['id']:<28} {r['subject']:<32} {r['suite']:<22} n={r['n']:<5} {r['path']}")


@reports_app.command("show")
def reports_show(report: str = typer.Argument(..., help="Report id or prefix."), project: Path = PROJECT,
                 as_json: bool = JSON) -> None:
    """One report: its metrics with CIs (or, for a ladder, its table and recommendation).

    Example: tailor reports show ladder-2026
    """
    import json

    from tailorlm.errors import TailorError
    from tailorlm.eval.runner import load_report
    from tailorlm.project import Project

    proj = Project.load(project)
    ladders = list(proj.artifacts("reports").glob(f"{report}*/ladder.json"))
    if len(ladders) == 1:
        ladder = json.loads(ladders[0].read_text())
        if not emit(ladder, as_json):
            print_ladder(ladder)
        return
    if len(ladders) > 1:
        raise TailorError(f"{len(ladders)} ladder reports match {report!r}; give more of the id")
    r = load_report(proj, report)
    if emit(r, as_json):
        return
    typer.echo(f"{r['id']}: {r['subject']} on {r['suite']['name']}@{r['suite']['version']} (n={r['suite']['n']})")
    for m, v in r["metrics"].items():
        typer.echo("  " + _metric_line(m, v))
