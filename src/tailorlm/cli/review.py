"""`tailor review data|pairs|report`: the workbench's reviews in the terminal, for a team without a browser.

Each flow calls the same library functions as the web pages (`tailorlm.review`). Interactive flows read
one keystroke line per item; `--json` prints one object (a summary) and never prompts.
"""

import json
from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT, RESUME_REVIEW, SEED

review_app = typer.Typer(help="Human review: data review, blind side-by-side human eval, the review report.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review", rich_help_panel="Evaluate")


def _name(what: str):
    """The --reviewer / --rater option: who made each stored decision or rating."""
    return typer.Option(None, help=f"Your name, stored with every {what} (default: $USER).")


def _who(name: str | None, fallback: str) -> str:
    import os

    return name or os.environ.get("USER") or fallback


def _show_messages(messages) -> None:
    for m in messages or []:
        typer.echo(f"  {m.get('role', '?'):>9}: {m.get('content')}")


@review_app.command("data")
def review_data(
    name: str = typer.Argument(..., help="Dataset: NAME, NAME@HASH or NAME@ALIAS."),
    sample: int = typer.Option(200, "--sample", min=1, help="Records to draw (100-500 is the usual expert sample)."),
    seed: int = SEED,
    split: str = typer.Option(None, help="Review one split only (default: every split)."),
    target: float = typer.Option(0.95, help="Pass rate the review must show, judged on its 95% interval."),
    reviewer: str = _name("decision"),
    resume: str = RESUME_REVIEW,
    finish: bool = typer.Option(False, "--finish", help="At the end, write fails and edits as a new version."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Review a seeded sample of a dataset version: p(ass), f(ail) with a reason, e(dit), s(kip), q(uit).

    Example: tailor review data tickets --sample 200 --reviewer alice
    Example: tailor review data tickets --sample 200 --json      # draw the sample, print it, no prompts
    """
    from tailorlm.project import Project
    from tailorlm.review import data as dr

    proj = Project.load(project)
    reviewer = _who(reviewer, "reviewer")
    review_id = resume or dr.start_data_review(proj, name, sample, seed, split, target, reviewer)["id"]
    if not as_json:
        typer.echo(f"review {review_id}: keys p pass, f fail (then a reason), e edit (JSON content), s skip, q quit")
        for item in dr.items(proj, review_id):
            if item["decision"]:
                continue
            r = item["record"]
            typer.echo(f"\n[{item['ord'] + 1}] {r['id']}")
            c = r["content"]
            _show_messages(c.get("messages") or c.get("input")) if c.get("messages") or c.get("input") else \
                typer.echo(json.dumps(c, ensure_ascii=False, indent=1))
            key = typer.prompt("p/f/e/s/q", default="p").strip().lower()
            if key == "q":
                break
            if key == "s":
                continue
            if key == "f":
                dr.decide(proj, review_id, r["id"], "fail", reviewer, reason=typer.prompt("reason"))
            elif key == "e":
                dr.decide(proj, review_id, r["id"], "edit", reviewer, edited=json.loads(typer.prompt("content (JSON)")))
            else:
                dr.decide(proj, review_id, r["id"], "pass", reviewer)
    summary = dr.data_review_summary(proj, review_id)
    if finish:
        summary["result_version"] = dr.finish_data_review(proj, review_id)["id"]
    if not emit({**summary, "items": [i["record"]["id"] for i in dr.items(proj, review_id)]} if as_json else summary, as_json):
        _print_data_summary(summary)


def _print_data_summary(s: dict) -> None:
    typer.echo(f"{s['id']} on {s['dataset_version']}: {s['decided']}/{s['sample_size']} decided "
               f"({s['pass']} pass, {s['fail']} fail, {s['edit']} edit)")
    if s["pass_rate"]:
        p = s["pass_rate"]
        typer.echo(f"pass rate {p['mean']:.1%} (95% CI {p['low']:.1%}-{p['high']:.1%}, Wilson): {s['verdict']}")
    if s.get("result_version"):
        typer.echo(f"new version: {s['result_version']}")


@review_app.command("pairs")
def review_pairs(
    a: str = typer.Argument(..., help="Subject A (rung, model version or report id): the baseline."),
    b: str = typer.Argument(..., help="Subject B: the candidate."),
    suite: str = typer.Option(None, "--suite", help="Suite both were evaluated on (e.g. golden)."),
    sample: int = typer.Option(50, "--sample", min=1, help="Items to draw."),
    seed: int = SEED,
    rater: str = _name("rating"),
    resume: str = RESUME_REVIEW,
    export: bool = typer.Option(False, "--export", help="At the end, export the preferences as DPO pairs."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Blind side-by-side rating. Per item type six digits (left correctness, style, usefulness, then right),
    or one of a (left better), s (tie), d (right better); q quits. --seed also draws which answer is on the left.

    Example: tailor review pairs zero_shot sft --suite golden --rater alice
    Example: tailor review pairs zero_shot sft --suite golden --json     # open it, print the summary
    """
    from tailorlm.errors import TailorError
    from tailorlm.project import Project
    from tailorlm.review import pairs as pr

    proj = Project.load(project)
    rater = _who(rater, "rater")
    review_id = resume or pr.start_pair_review(proj, a, b, suite, sample, seed, rater)["id"]
    if not as_json:
        typer.echo(f"review {review_id}: six digits 1-5 (left c/s/u, right c/s/u), or a/s/d for left/tie/right, q to quit")
        while (item := pr.next_item(proj, review_id, rater)) is not None:
            typer.echo(f"\n[{item['ord'] + 1}]")
            _show_messages(item["input"])
            typer.echo(f"  LEFT : {item['left']}\n  RIGHT: {item['right']}")
            key = typer.prompt("ratings or a/s/d").strip().lower()
            if key == "q":
                break
            try:
                if key in ("a", "s", "d"):
                    pr.rate(proj, review_id, item["example_id"], rater, preference={"a": "left", "s": "tie", "d": "right"}[key])
                else:
                    digits = [c for c in key if c.isdigit()]
                    if len(digits) != 6:
                        raise TailorError("type six digits 1-5, or a, s or d")
                    left, right = (dict(zip(pr.CRITERIA, digits[i:i + 3])) for i in (0, 3))
                    pr.rate(proj, review_id, item["example_id"], rater, left=left, right=right)
            except TailorError as e:
                typer.echo(f"  {e}; again")
    summary = pr.pair_summary(proj, review_id)
    if export:
        summary["export"] = pr.export_dpo(proj, review_id)
    if not emit(summary, as_json):
        _print_pair_summary(summary)


def _print_pair_summary(s: dict) -> None:
    typer.echo(f"{s['id']}: A={s['a']} B={s['b']} on {s['suite']}, {s['items_rated']}/{s['sample_size']} items rated")
    for c, m in s.get("means", {}).items():
        d = m["delta"]
        typer.echo(f"  {c:<12} A {m['a']['mean']:.2f}  B {m['b']['mean']:.2f}  B-A {d['delta']:+.2f} "
                   f"[{d['low']:+.2f}, {d['high']:+.2f}]")
    if s.get("win_rate_b"):
        w = s["win_rate_b"]
        typer.echo(f"  B wins {w['mean']:.1%} [{w['low']:.1%}, {w['high']:.1%}] of decisive preferences {s['preferences']}")
    if s.get("rule"):
        typer.echo(f"  20% rule: {s['rule']['says']}")
    if s.get("agreement"):
        g = s["agreement"]
        typer.echo(f"  agreement: alpha {g['alpha_ratings']} on ratings ({g['alpha_ratings_reading']})")
    if s.get("export"):
        typer.echo(f"  exported {s['export']['kept']} of {s['export']['pairs']} pairs: {s['export']['dataset_version']}")


@review_app.command("report")
def review_report_cmd(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """Every data review, side-by-side review, judge check and the feedback queue, summarised.

    Example: tailor review report --json
    """
    from tailorlm.api import review_report

    out = review_report(project)
    if emit(out, as_json):
        return
    typer.echo(f"data reviews: {len(out['data_reviews'])}")
    for s in out["data_reviews"]:
        _print_data_summary(s)
    typer.echo(f"pair reviews: {len(out['pair_reviews'])}")
    for s in out["pair_reviews"]:
        _print_pair_summary(s)
    for j in out["judge"]:
        typer.echo(f"judge on {j['id']}: {j['says']}")
    typer.echo(f"feedback queue: {out['queue']['waiting']} waiting, {out['queue']['disliked']} disliked")
