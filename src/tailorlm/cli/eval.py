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


SHORT = typer.Option(False, "--short", help="Only the headline numbers.")
DELTA = typer.Option(0.05, "--delta", min=0.001, max=1.0,
                     help="Difference the power analysis asks about, in metric units (0.05 = 5 points).")


def _metric_line(name: str, m: dict) -> str:
    return f"{name:<14} {m['mean']:.4f}  95% CI [{m['low']:.4f}, {m['high']:.4f}]  n={m['n']} ({m['method']})"


def _calibration_line(c: dict) -> str:
    return (f"{'ECE':<14} {c['ece']:.4f}  95% CI [{c['low']:.4f}, {c['high']:.4f}]  n={c['n']} "
            f"(expected calibration error, {c['method']}; mean confidence {c['mean_confidence']:.3f}, "
            f"accuracy {c['accuracy']:.3f})")


def _power_lines(p: dict) -> list[str]:
    head = (f"power: examples needed to detect {p['delta'] * 100:g} points of {p['metric']} at {p['power']:.0%} power "
            f"(two-sided McNemar, alpha {p['alpha']}; Connor 1987), at the disagreement observed; this suite has {p['n']}")
    if p.get("note"):
        return [head, "  " + p["note"]]
    return [head] + [f"  vs {x['against']}: disagree on {x['discordance']:.1%} -> n = {x['n_needed']}"
                     + ("" if x["n_needed_observed"] is None or x["significant"] else
                        f"; {x['delta'] * 100:+.1f} points (observed, not significant) needs {x['n_needed_observed']}")
                     for x in p["pairs"]]


def print_report(r: dict, short: bool = False, power: dict | None = None, echo=typer.echo) -> None:
    """An eval report's metrics with their intervals (what `tailor eval` and `tailor reports show` print)."""
    s = r["suite"]
    echo(f"{r['subject']} on {s['name']}@{s['version']} (n={s['n']}): report {r['id']}")
    for m, v in r["metrics"].items():
        echo("  " + (f"{m:<14} {v['mean']:.4f} [{v['low']:.4f}, {v['high']:.4f}]" if short else _metric_line(m, v)))
        for cat, c in v.get("per_category", {}).items():  # the red-team suite's pass rate by category
            echo(f"    {cat:<20} {c['mean']:.4f} [{c['low']:.4f}, {c['high']:.4f}] (n={c['n']})")
    if r.get("calibration"):
        c = r["calibration"]
        echo("  " + (f"{'ECE':<14} {c['ece']:.4f} [{c['low']:.4f}, {c['high']:.4f}]" if short else _calibration_line(c)))
    if power:
        for line in _power_lines(power):
            echo("  " + line)
    if not short:
        echo(f"  latency p50 {r['latency']['p50'] * 1000:.0f} ms, p95 {r['latency']['p95'] * 1000:.0f} ms; "
             f"errors {r['errors']}; saved to {r['path']}")


@app.command("eval", rich_help_panel="Evaluate")
def eval_cmd(
    model: str = typer.Argument(..., help="A rung name from tailor.yaml, a model version id, or PROJECT:ALIAS."),
    suite: str = typer.Option(None, "--suite", help="Golden JSONL, a prepared dataset's name, or `general` (default: eval)."),
    metrics: str = typer.Option(None, help="Comma-separated metrics (default: eval.metrics)."),
    max_tokens: int = typer.Option(None, min=1, help="Answer budget (default: 12 for classification, else 128)."),
    batch_size: int = typer.Option(8, min=1, help="Prompts per generation batch."),
    fresh: bool = typer.Option(False, "--fresh", help="Answer every example again instead of reusing saved answers."),
    power: bool = typer.Option(False, "--power", help="Also say how many examples are needed to detect --delta "
                               "against each other report on this suite, at 80% power."),
    delta: float = DELTA,
    short: bool = SHORT,
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Score one rung or model version on a suite: every metric with its 95% CI, latency, cost.

    Corpus metrics (macro_f1, micro_f1, bleu, chrf) are their corpus value with a bootstrap interval.
    Example: tailor eval few_shot --suite golden.jsonl --metrics accuracy,macro_f1 --power
    """
    from tailorlm.eval.runner import default_params, evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.build import rung_for_model
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
    summary = {k: report[k] for k in ("id", "subject", "suite", "metrics", "calibration", "latency", "cost_per_1k",
                                      "errors", "path")}
    if power:
        from tailorlm.eval.compare import power_against

        summary["power"] = power_against(proj, report, delta)
    if emit(summary, as_json):
        return
    print_report(report, short, summary.get("power"))


@app.command("compare", rich_help_panel="Evaluate")
def compare_cmd(
    baseline: str = typer.Argument(..., help="Report id (or prefix) or path of the baseline (A)."),
    candidate: str = typer.Argument(..., help="Report id (or prefix) or path of the candidate (B)."),
    show: int = typer.Option(10, "--show", "-n", min=0, help="Differing examples to list."),
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
    delta: float = DELTA,
    short: bool = SHORT,
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Every configured rung on the same golden suite: quality with CIs, latency, cost, and a recommendation.

    It also says how many golden examples would be needed to tell adjacent rungs apart (--delta).
    Example: tailor ladder --short
    """
    from tailorlm.ladder.run import run_ladder
    from tailorlm.project import Project

    proj = Project.load(project)
    progress, update = _progress(as_json)
    log = (lambda m: None) if as_json else progress.console.print
    with progress:
        ladder = run_ladder(proj, rungs.split(",") if rungs else None, log=log, on_progress=update, batch_size=batch_size)
    ladder = {**ladder, "power": _ladder_power(ladder, delta)}
    if emit(ladder, as_json):
        return
    print_ladder(ladder, short=short, delta=delta)


def _ladder_power(ladder: dict, delta: float) -> dict:
    from tailorlm.eval.compare import ladder_power

    return ladder["power"] if ladder.get("power", {}).get("delta") == delta else ladder_power(ladder, delta)


def ladder_table(ladder: dict):
    """The ladder as a rich Table that fits 80 columns: names and intervals never wrap."""
    from rich import box
    from rich.table import Table

    s, primary = ladder["suite"], ladder["primary"]
    calibrated = any(r.get("calibration") for r in ladder["rungs"])
    table = Table(title=f"Ladder on {s['name']}@{s['version']} (n={s['n']})", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("rung", no_wrap=True)
    table.add_column(f"{primary} [95% CI]", justify="right", no_wrap=True)
    table.add_column("ms p50/p95", justify="right", no_wrap=True)
    table.add_column("cost/1k", justify="right", no_wrap=True)
    if calibrated:
        table.add_column("ECE", justify="right", no_wrap=True)
    red = any(r.get("redteam") for r in ladder["rungs"])
    if red:
        table.add_column("red-team", justify="right", no_wrap=True)
    table.add_column("err", justify="right", no_wrap=True)
    for r in ladder["rungs"]:
        q, c, lat = r["quality"], r["cost_per_1k"], r["latency"]
        name = r["name"] + (" *" if r["name"] == ladder["recommendation"]["rung"] else "")
        cells = [name, f"{q['mean']:.3f} [{q['low']:.3f}, {q['high']:.3f}]",
                 f"{lat['p50'] * 1000:.0f}/{lat['p95'] * 1000:.0f}",
                 "n/a" if c["usd_per_1k"] is None else f"{c['usd_per_1k']:.4f}"]
        if calibrated:
            cells.append(f"{r['calibration']['ece']:.3f}" if r.get("calibration") else "-")
        if red:  # pass rate; a critical case failed is flagged
            rt = r.get("redteam")
            cells.append(f"{rt['mean']:.0%}{'!' if rt['critical_failed'] else ''}" if rt else "-")
        table.add_row(*cells, str(r["errors"]))
    return table


def print_ladder(ladder: dict, echo=None, console=None, short: bool = False, delta: float = 0.05) -> None:
    """The ladder table, its paired comparisons, power warnings and recommendation, wrapped to the terminal.

    `--short` keeps the table, the recommendation and the power summary.
    """
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    echo = echo or (lambda text: console.print(escape(text), soft_wrap=False))
    primary = ladder["primary"]
    console.print(ladder_table(ladder))
    if not short:
        others = [m for m in ladder.get("metrics", [primary]) if m != primary]
        for r in ladder["rungs"] if others else []:
            echo(f"  {r['name']}: " + ", ".join(f"{m} {v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"
                                               for m, v in r["metrics"].items() if m in others))
        for c in ladder["comparisons"]:
            d = c["metrics"][primary]
            echo(f"  {c['a'].partition(':')[2] or c['a']} -> {c['b'].partition(':')[2] or c['b']}: {d['delta']:+.3f} "
                 f"[{d['low']:+.3f}, {d['high']:+.3f}] p={d['p_value']:.2g} {d['test']}")
    power = _ladder_power(ladder, delta)
    for warning in power["warnings"][:1] if short else power["warnings"]:
        echo(f"warning: {warning}")
    echo(f"\nRecommended: {ladder['recommendation']['rung']}. {ladder['recommendation']['reason']}")
    if not short:
        echo(f"Report: {ladder['path']}  chart: {ladder['chart_png']}, {ladder['chart_html']}")


@reports_app.command("list")
def reports_list(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """Every eval and ladder report, newest last.

    Example: tailor reports list --json
    """
    from tailorlm.project import Project
    from tailorlm.registry.reports import entries

    rows = [e.to_dict() for e in entries(Project.load(project))]
    if emit({"reports": rows}, as_json):
        return
    for r in rows:
        typer.echo(f"{r['id']:<28} {r['subject']:<32} {r['suite']:<22} n={r['n']:<5} {r['path']}")


@reports_app.command("show")
def reports_show(report: str = typer.Argument(..., help="Report id or prefix."), delta: float = DELTA,
                 short: bool = SHORT, project: Path = PROJECT, as_json: bool = JSON) -> None:
    """One report: its metrics with CIs (or, for a ladder, its table and recommendation).

    Example: tailor reports show ladder-2026
    """
    from tailorlm.project import Project
    from tailorlm.registry.reports import find

    r = find(Project.load(project), report).to_dict()
    if r.get("kind") == "ladder":
        r["power"] = _ladder_power(r, delta)
        if not emit(r, as_json):
            print_ladder(r, short=short, delta=delta)
        return
    if emit(r, as_json):
        return
    print_report(r, short)
