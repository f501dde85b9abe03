"""`tailor rag ...`: build the index, query it, evaluate retrieval."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT, lazy_command, sampling_option

rag_app = typer.Typer(help="Retrieval: a hybrid LanceDB index of your documents, and the rag rung.", no_args_is_help=True)
app.add_typer(rag_app, name="rag", rich_help_panel="Rungs")


def _split(values: str, cast=str) -> list:
    return [cast(v.strip()) for v in values.split(",") if v.strip()]


@rag_app.command("index")
def index(
    sources: list[str] = typer.Argument(None, help="Document sources to index (default: rag.sources, or every document source)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Build or update the index: only changed documents are re-embedded, deleted ones removed.

    Example: tailor rag index docs
    """
    from tailorlm.api import index
    from tailorlm.progress import display

    with display(not as_json) as (on_progress, _console):
        result = index(project, sources or None, on_progress=on_progress)
    skipped = result["skipped"]
    if emit(result, as_json):
        return
    typer.echo(f"{result['documents']} documents: {result['embedded_documents']} (re)embedded, "
               f"{result['removed_documents']} removed, {result['chunks_added']} chunks added, "
               f"{result['chunks_total']} in the index ({result['uri']})"
               + (f"; {result['chunks_per_s']:.1f} chunks/s" if result["chunks_per_s"] else ""))
    for s in skipped:
        typer.echo(f"  skipped {s['file']}: {s['reason']}", err=True)
    for path in result["flagged_injection"]:
        typer.echo(f"  flagged {path}: instruction-like text (kept, quoted as data at answer time)", err=True)


def query(
    question: str = typer.Argument(..., help="The question."),
    source: str = typer.Option(None, help="Only chunks from this source."),
    tag: str = typer.Option(None, help="Only chunks with this tag."),
    retrieve_only: bool = typer.Option(False, "--retrieve-only", help="Show the retrieved chunks; skip generation."),
    max_tokens: int = sampling_option("max_tokens", min=1),
    project: Path = PROJECT,
    as_json: bool = JSON,
    **fields,
) -> None:
    """Answer with retrieved sources: the answer, its citations, and the chunks with their scores.

    Example: tailor rag query "How long are deleted files kept on the Team plan?"
    """
    from tailorlm.api import query as run_query

    result = run_query(project, question, fields.get("k"), fields.get("search"), source, tag, retrieve_only, max_tokens)
    if emit(result, as_json):
        return
    if retrieve_only:
        _show_hits(result["hits"])
        return
    typer.echo(result["text"].strip())
    typer.echo("")
    cited = {c["n"] for c in result["citations"]}
    for n, h in enumerate(result["meta"]["retrieved"], start=1):
        mark = "*" if n in cited else " "
        typer.echo(f"{mark}[{n}] {h['score']:.4f}  {h['path']}{' > ' + h['heading'] if h['heading'] else ''}")
    typer.echo("(* = cited in the answer)")


def _query_flags():
    """--k and --mode: rag.k and rag.search, their descriptions as help."""
    from tailorlm.cli.options import config_options
    from tailorlm.config import RagConfig

    return config_options(RagConfig, ["k", "search"], flags={"k": ["--k", "-k"], "search": ["--mode"]}, section="rag")


lazy_command(rag_app, query, _query_flags, name="query")


def _show_hits(hits) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("#", "score", "source", "text"):
        table.add_column(col)
    for n, h in enumerate(hits, start=1):
        where = h["path"] + (f" > {h['heading']}" if h["heading"] else "")
        table.add_row(str(n), f"{h['score']:.4f}", where, h["text"][:200].replace("\n", " "))
    Console().print(table)


@rag_app.command("eval")
def evaluate(
    suite: str = typer.Argument(..., help="JSONL of questions with their `sources` (doc paths) or `chunks` (ids)."),
    k: int = typer.Option(5, "--k", "-k", min=1, help="Cut-off for recall@k and nDCG@k."),
    modes: str = typer.Option("hybrid", help="Comma-separated search modes to compare, e.g. hybrid,vector,fts."),
    chunk_tokens: str = typer.Option(None, help="Comma-separated chunk sizes to compare (default: rag.chunk_tokens)."),
    rerank: str = typer.Option("none", help="Comma-separated rerankers to compare, e.g. none,llm."),
    tune: bool = typer.Option(False, "--tune", help="Search mode, fusion, BM25 weight, rrf_k and --chunk-tokens on this "
                              "retrieval suite (never the golden suite) and write the winner into tailor.yaml's rag: section."),
    metric: str = typer.Option("mrr", help="With --tune: the metric that picks the winner (recall@k, mrr, ndcg@k)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --tune: report the winner, leave tailor.yaml alone."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Retrieval quality (recall@k, MRR, nDCG@k, with 95% CIs); several settings side by side, paired.

    Example: tailor rag eval questions.jsonl --modes hybrid,vector,fts
    Example: tailor rag eval retrieval.jsonl --tune --chunk-tokens 120,200,320
    """
    from rich.console import Console
    from rich.table import Table

    from tailorlm import api
    from tailorlm.rag.evaluate import METRICS

    sizes = _split(chunk_tokens, int) if chunk_tokens else None
    say = (lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True))
    if tune:
        report = api.rag_tune(project, suite, sizes, k=k, metric=metric, write=not dry_run, log=say)
        if not emit(report, as_json):
            _show_tuned(report)
        return
    report = api.rag_eval(project, suite, k, _split(modes), sizes, _split(rerank), log=say)
    if emit(report, as_json):
        return
    table = Table(title=f"Retrieval on {suite} (n={report['n']}, k={k}, relevance by {report['unit']}); "
                        "95% CIs; delta vs the first row with paired bootstrap CI and p")
    table.add_column("setting")
    for m in METRICS:
        table.add_column(m.replace("@k", f"@{k}"))
    for r in report["results"]:
        s = r["setting"]
        cells = []
        for m in METRICS:
            cell = f"{r[m]['mean']:.3f} [{r[m]['low']:.3f}, {r[m]['high']:.3f}]"
            if "vs_first" in r:
                d = r["vs_first"][m]
                cell += f"\n{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p_value']:.3f}"
            cells.append(cell)
        table.add_row(f"{s['mode']}, {s['chunk_tokens']} tok, rerank {s['rerank']}", *cells)
    Console().print(table)


def _show_tuned(report: dict) -> None:
    k, m = report["k"], report["metric"]

    def setting(s):
        fusion = f", {s['fusion']} fusion, BM25 weight {s['fts_weight']}" if s["search"] == "hybrid" else ""
        rrf = f", rrf_k {s['rrf_k']}" if s["search"] == "hybrid" and s["fusion"] == "rrf" else ""
        return f"{s['search']}{fusion}{rrf}, {s['chunk_tokens']} tok"

    def ci(x):
        return f"{x['mean']:.3f} [{x['low']:.3f}, {x['high']:.3f}]"

    def delta(d):
        return f"{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p_value']:.3f}"

    typer.echo(f"Tuned on {report['suite']} (n={report['n']}, k={k}, relevance by {report['unit']}); "
               f"{report['tried']} settings tried, picked by {m.replace('@k', f'@{k}')}")
    typer.echo(f"  winner:  {setting(report['winner'])}: " + ", ".join(
        f"{x.replace('@k', f'@{k}')} {ci(report['winner_scores'][x])}" for x in report["winner_scores"]))
    typer.echo(f"  before:  {setting(report['current'])}: " + ", ".join(
        f"{x.replace('@k', f'@{k}')} {ci(report['current_scores'][x])}" for x in report["current_scores"]))
    for name in ("vs_current", "vs_vector"):
        label = "winner - before" if name == "vs_current" else "winner - vector"
        typer.echo(f"  {label}: " + ", ".join(f"{x.replace('@k', f'@{k}')} {delta(d)}" for x, d in report[name].items()))
    if report["written"]:
        typer.echo("  written to tailor.yaml (rag:)" + ("; run `tailor rag index` to rebuild at the new chunk size"
                                                      if report.get("reindex") else ""))
