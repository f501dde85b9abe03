"""`tailor data ...`: add sources, prepare datasets, inspect, diff, export and report them."""

import json
from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT

data_app = typer.Typer(help="Sources -> validated, cleaned, deduplicated, PII-free, split, versioned datasets.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data", rich_help_panel="Data")


@data_app.command("add")
def add(
    name: str = typer.Argument(..., help="Source name; its dataset gets the same name."),
    path: str = typer.Argument(..., help="File, glob or folder, relative to the project."),
    kind: str = typer.Option(None, help="chat | preference | text | eval (default: detected)."),
    fmt: str = typer.Option("auto", "--format", help="auto | jsonl | csv | parquet | docs"),
    field: list[str] = typer.Option(None, help="Field mapping OURS=THEIRS, e.g. text=body; repeat for several."),
    license: str = typer.Option(None, help="Licence of the data, copied into manifests."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Add a source to tailor.yaml (comments are kept).

    Example: tailor data add tickets data/tickets.jsonl --kind chat
    """
    from tailorlm.api import data_add

    entry = data_add(project, name, path, kind, fmt, field or [], license)
    if not emit(entry, as_json):
        typer.echo(f"added source {name} -> {path}")


@data_app.command("prepare")
def prepare(
    sources: list[str] = typer.Argument(None, help="Sources to prepare (default: all)."),
    name: str = typer.Option(None, help="Combine the sources into one dataset with this name."),
    executor: str = typer.Option("inprocess", help="inprocess | local | slurm | ray (datatrove executors)."),
    workers: int = typer.Option(2, min=1, help="Tasks running at once on the executor."),
    tasks: int = typer.Option(None, min=1, help="Shards of the input (default: --workers)."),
    partition: str = typer.Option("cpu", help="Slurm partition."),
    time_limit: str = typer.Option("04:00:00", "--time", help="Slurm time limit per task."),
    dry_run: bool = typer.Option(False, help="With slurm or ray: write the launch config, do not submit."),
    address: str = typer.Option(None, envvar="RAY_ADDRESS",
                                help="With ray: the cluster to run on (default: a local Ray instance)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Run the data pipeline on sources and write immutable dataset versions.

    Example: tailor data prepare tickets

    Example: tailor data prepare --executor slurm --workers 64 --tasks 512 --partition cpu --dry-run

    Example: tailor data prepare --executor ray --workers 2 --address 10.0.0.1:6379
    """
    from tailorlm import api

    log = (lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True))
    if executor != "inprocess":
        result = api.prepare_on(project, sources, executor, workers, tasks, dry_run, partition, time_limit, address,
                                log=log)
        if not emit(result, as_json):
            typer.echo(json.dumps(result, indent=2))
        return
    manifests = api.prepare(project, sources, name=name, log=log)
    summary = api.prepare_summary(manifests)
    if not emit(summary, as_json):
        for m in manifests:
            _funnel(m)
    bad = {k: v for k, v in summary["invalid"].items() if v}
    if bad:
        # The valid records are in the version; the exit code still tells scripts that input was bad.
        for version, n in bad.items():
            typer.echo(f"{version}: {n} inputs rejected as malformed or invalid; see "
                       f"`tailor data quarantine {version.split('@')[0]}`", err=True)
        raise typer.Exit(1)


def _funnel(m: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    acc = m["accounting"]
    table = Table(title=f"{m['id']} ({m['kind']}){' - unchanged, reused' if m.get('reused') else ''}")
    for col in ("step", "kept", "dropped (by reason)", "notes"):
        table.add_column(col)
    table.add_row("read", str(acc["read"] - acc["rejected_by_readers"]), str(acc["rejected_by_readers"]), "")
    for s in m["steps"]:
        notes = ", ".join(f"{k}: {v}" for k, v in s["stats"].items())
        table.add_row(s["step"], str(s["kept"]), ", ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "0", notes)
    Console().print(table)
    typer.echo(f"splits: {m['splits']}  accounting: read {acc['read']} + added {acc['added']} = kept {acc['kept']} "
               f"+ quarantined {acc['rejected_by_readers'] + acc['dropped_by_steps']}  -> {m['path']}")


@data_app.command("list")
def list_(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """List dataset versions.

    Example: tailor data list --json
    """
    from rich.console import Console
    from rich.table import Table

    from tailorlm.api import data_list

    rows = data_list(project)
    if emit({"versions": rows}, as_json):
        return
    table = Table()
    for col in ("id", "kind", "records", "created", "latest"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["kind"], str(r["records"]), r["created_at"][:19], "*" if r["latest"] else "")
    Console().print(table)


@data_app.command("show")
def show(ref: str = typer.Argument(..., help="NAME, NAME@latest or NAME@HASH."), project: Path = PROJECT,
         as_json: bool = JSON) -> None:
    """Show a version's manifest: sources, steps with parameters and counts, splits, licence.

    Example: tailor data show tickets@latest
    """
    from tailorlm.api import data_show

    manifest = data_show(project, ref)
    if not emit(manifest, as_json):
        _funnel(manifest)
        typer.echo(f"licence: {manifest['license']}  created: {manifest['created_at']}  hash: {manifest['content_hash']}")


@data_app.command("diff")
def diff(a: str = typer.Argument(...), b: str = typer.Argument(...), project: Path = PROJECT,
         as_json: bool = JSON) -> None:
    """Records added, removed and changed between two versions, and the steps whose parameters differ.

    Example: tailor data diff tickets@3f9a1c tickets@latest
    """
    from tailorlm.api import data_diff

    d = data_diff(project, a, b)
    if not emit(d, as_json):
        typer.echo(f"{d['a']} -> {d['b']}: +{len(d['added'])} -{len(d['removed'])} ~{len(d['changed'])}; "
                   f"steps changed: {', '.join(d['steps_changed']) or 'none'}")
        for key in ("added", "removed", "changed"):
            if d[key]:
                typer.echo(f"  {key}: {', '.join(d[key][:20])}{' ...' if len(d[key]) > 20 else ''}")


@data_app.command("export")
def export(
    ref: str = typer.Argument(..., help="NAME, NAME@latest or NAME@HASH."),
    out: Path = typer.Argument(..., help="Output file (openai, alpaca) or folder (hf)."),
    fmt: str = typer.Option("openai", "--format", help="openai | alpaca | hf"),
    split: str = typer.Option(None, help="One split only (default: all)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Export a version as OpenAI fine-tune JSONL, Alpaca JSONL or a Hugging Face datasets folder.

    Example: tailor data export tickets tickets-train.jsonl --split train
    """
    from tailorlm.api import data_export

    result = data_export(project, ref, out, fmt, split)
    if not emit(result, as_json):
        typer.echo(f"wrote {result['records']} records to {result['path']}")


@data_app.command("quarantine")
def quarantine(ref: str = typer.Argument(..., help="NAME, NAME@latest or NAME@HASH."),
               limit: int = typer.Option(20, "--limit", "-n", help="Entries to show."), project: Path = PROJECT,
               as_json: bool = JSON) -> None:
    """Show what a version's run did not keep: each entry's step, reason, file and line.

    Example: tailor data quarantine tickets
    """
    from tailorlm.api import data_quarantine

    q_sum = data_quarantine(project, ref, limit)
    if emit(q_sum, as_json):
        return
    typer.echo(f"{q_sum['id']}: {q_sum['total']} quarantined ({q_sum['path']})")
    for reason, n in q_sum["by_reason"].items():
        typer.echo(f"  {n:5d}  {reason}")
    for q in q_sum["entries"]:
        where = f"{q.get('file')}:{q.get('line')}" if q.get("line") else (q.get("file") or q.get("id"))
        typer.echo(f"{where}: {q.get('field', q.get('id', ''))}: [{q['step']}] {q['reason']}")


@data_app.command("report")
def report(ref: str = typer.Argument(..., help="NAME, NAME@latest or NAME@HASH."), project: Path = PROJECT,
           as_json: bool = JSON) -> None:
    """Report a version: token lengths, funnel, languages, PII, near-duplicate clusters, samples (HTML too).

    Example: tailor data report tickets
    """
    from rich.console import Console
    from rich.table import Table

    from tailorlm.api import data_report

    rep = data_report(project, ref)
    if emit(rep, as_json):
        return
    console = Console()
    for title, rows, cols in [
        ("Funnel", [[f["stage"], f["in"], f["out"], json.dumps(f["dropped"])] for f in rep["funnel"]], ["stage", "in", "out", "dropped"]),
        ("Token lengths", [[f"{b['from']}-{b['to']}", b["count"]] for b in rep["tokens"]["histogram"]], ["tokens", "records"]),
        ("Languages", list(rep["languages"].items()), ["language", "records"]),
        ("PII replaced", list(rep["pii"].items()), ["type", "count"]),
        ("Largest near-duplicate clusters", [[c["kept"], ", ".join(c["dropped"])] for c in rep["near_duplicate_clusters"]], ["kept", "dropped"]),
    ]:
        table = Table(title=title)
        for c in cols:
            table.add_column(c)
        for row in rows:
            table.add_row(*[str(x) for x in row])
        console.print(table)
    typer.echo(f"HTML report with {len(rep['samples'])} samples for review: {rep['html']}")


@data_app.command("synthesize")
def synthesize(
    seeds: str = typer.Option(None, help="Chat dataset whose training examples seed self-instruct variations."),
    docs: list[str] = typer.Option(None, help="Document source to write questions from (RAFT-style); repeat; "
                                              "`all` for rag.sources or every document source."),
    n: int = typer.Option(20, "--n", "-n", min=1, help="Examples to generate per method."),
    name: str = typer.Option(None, help="Dataset to write (default: SEEDS-synth)."),
    mix_with: str = typer.Option(None, help="Real chat dataset to mix into (default: --seeds)."),
    no_mix: bool = typer.Option(False, "--no-mix", help="Write the synthetic records alone, unmixed."),
    max_share: float = typer.Option(None, help="Cap on the synthetic share of the mix (default: synthesize.max_share)."),
    min_judge_score: int = typer.Option(None, min=1, max=5, help="Keep only records the judge scores at least this (1-5)."),
    seed: int = typer.Option(0, help="Seed for picking seeds, chunks and distractors."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Teacher-written training data: self-instruct variations and RAFT document questions, verified and capped.

    Example: tailor data synthesize --seeds tickets --n 50

    Example: tailor data synthesize --seeds tickets --docs docs --min-judge-score 4
    """
    from tailorlm.api import data_synthesize

    log = (lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True))
    result = data_synthesize(project, seeds=seeds, docs=None if not docs else [d for d in docs if d != "all"],
                            n=n, name=name, mix_with=mix_with, mix=not no_mix, max_share=max_share,
                            min_judge_score=min_judge_score, seed=seed, log=log)
    if not emit(result, as_json):
        s = result["synthetic"]
        typer.echo(f"{result['id']}: {result['kept']} of {result['generated']} generated records kept; synthetic share "
                   f"{s['share']:.0%} (cap {s['max_share']:.0%}); splits {result['splits']}")
        for reason, count in result["dropped"].items():
            typer.echo(f"  quarantined {count:4d}  {reason}")
    for w in result["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    if not result["kept"]:
        raise typer.Exit(1)
