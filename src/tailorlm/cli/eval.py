"""`tailor eval`, `tailor compare`, `tailor gate`, `tailor ladder`, `tailor reports`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import DELTA, JSON, PROJECT, SHORT

reports_app = typer.Typer(help="Eval and ladder reports.", no_args_is_help=True)
app.add_typer(reports_app, name="reports", rich_help_panel="Evaluate")


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
    model: str = typer.Argument(..., help="A rung name from tailor.yaml, a model version id, or NAME@ALIAS."),
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
    from tailorlm.api import evaluate
    from tailorlm.progress import display

    with display(not as_json) as (on_progress, _console):
        report = evaluate(project, model, suite, metrics.split(",") if metrics else None, max_tokens, batch_size,
                          fresh, power, delta, on_progress=on_progress)
    summary = {k: report[k] for k in ("id", "subject", "suite", "metrics", "calibration", "latency", "cost_per_1k",
                                      "errors", "path")}
    if power:
        summary["power"] = report["power"]
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
    from tailorlm.api import compare

    result = compare(project, baseline, candidate, show)
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
    from tailorlm.api import gate

    result = gate(project, pairs, margin)
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
    from tailorlm.api import ladder as run_ladder
    from tailorlm.progress import display

    with display(not as_json) as (on_progress, console):
        ladder = run_ladder(project, rungs.split(",") if rungs else None, batch_size, delta,
                            log=(lambda _m: None) if as_json else console.print, on_progress=on_progress)
    if emit(ladder, as_json):
        return
    print_ladder(ladder, short=short, delta=delta)


def _ladder_power(ladder: dict, delta: float) -> dict:
    from tailorlm.api import with_power

    return with_power(ladder, delta)["power"]


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
    from tailorlm.api import reports

    rows = reports(project)
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
    from tailorlm.api import report as find_report

    r = find_report(project, report, delta)
    if r.get("kind") == "ladder":
        if not emit(r, as_json):
            print_ladder(r, short=short, delta=delta)
        return
    if emit(r, as_json):
        return
    print_report(r, short)
