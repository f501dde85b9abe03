"""`tailor rag ...`: build the index, query it, evaluate retrieval."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.project import JSON, PROJECT

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
    from rich.progress import Progress

    from tailorlm.project import Project
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    proj = Project.load(project)
    docs, skipped = index_documents(proj, sources or None)
    idx = RagIndex.for_project(proj)
    with Progress(disable=as_json) as progress:
        task = progress.add_task("embedding chunks", total=None)
        result = idx.build(docs, on_progress=lambda done, total: progress.update(task, total=total, advance=done))
    result["skipped"] = skipped
    if emit(result, as_json):
        return
    typer.echo(f"{result['documents']} documents: {result['embedded_documents']} (re)embedded, "
               f"{result['removed_documents']} removed, {result['chunks_added']} chunks added, "
               f"{result['chunks_total']} in the index ({result['uri']})")
    for s in skipped:
        typer.echo(f"  skipped {s['file']}: {s['reason']}", err=True)
    for path in result["flagged_injection"]:
        typer.echo(f"  flagged {path}: instruction-like text (kept, quoted as data at answer time)", err=True)


@rag_app.command("query")
def query(
    question: str = typer.Argument(..., help="The question."),
    k: int = typer.Option(None, "--k", "-k", min=1, help="Chunks to retrieve (default: rag.k)."),
    mode: str = typer.Option(None, help="hybrid | vector | fts (default: rag.search)."),
    source: str = typer.Option(None, help="Only chunks from this source."),
    tag: str = typer.Option(None, help="Only chunks with this tag."),
    retrieve_only: bool = typer.Option(False, "--retrieve-only", help="Show the retrieved chunks; skip generation."),
    max_tokens: int = typer.Option(256, min=1),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Answer with retrieved sources: the answer, its citations, and the chunks with their scores.

    Example: tailor rag query "How long are deleted files kept on the Team plan?"
    """
    from tailorlm.chat import system_prompt
    from tailorlm.models.base import GenParams
    from tailorlm.project import Project
    from tailorlm.rag.index import RagIndex

    proj = Project.load(project)
    cfg = proj.config.rag
    k, mode = k or cfg.k, mode or cfg.search
    idx = RagIndex.for_project(proj)
    if retrieve_only or source or tag:
        hits = idx.search(question, k=k, mode=mode, source=source, tag=tag)
        if retrieve_only:
            if not emit({"question": question, "mode": mode, "hits": [h.to_dict() for h in hits]}, as_json):
                _show_hits(hits)
            return
    from tailorlm.models import get_generator
    from tailorlm.rag.rung import RagRung, make_reranker

    gen = get_generator(proj.config.models.generator)
    rung = RagRung(idx, gen, k=k, mode=mode, system=system_prompt(proj.config.task), context_tokens=cfg.context_tokens,
                   reranker=make_reranker(cfg.rerank, gen))
    answer = rung.answer([{"role": "user", "content": question}], GenParams(max_tokens=max_tokens))
    if emit(answer.to_dict(), as_json):
        return
    typer.echo(answer.text.strip())
    typer.echo("")
    cited = {c["n"] for c in answer.citations}
    for n, h in enumerate(answer.meta["retrieved"], start=1):
        mark = "*" if n in cited else " "
        typer.echo(f"{mark}[{n}] {h['score']:.4f}  {h['path']}{' > ' + h['heading'] if h['heading'] else ''}")
    typer.echo("(* = cited in the answer)")


def _show_hits(hits) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("#", "score", "source", "text"):
        table.add_column(col)
    for n, h in enumerate(hits, start=1):
        where = h.path + (f" > {h.heading}" if h.heading else "")
        table.add_row(str(n), f"{h.score:.4f}", where, h.text[:200].replace("\n", " "))
    Console().print(table)


@rag_app.command("eval")
def evaluate(
    suite: str = typer.Argument(..., help="JSONL of questions with their `sources` (doc paths) or `chunks` (ids)."),
    k: int = typer.Option(5, "--k", "-k", min=1, help="Cut-off for recall@k and nDCG@k."),
    modes: str = typer.Option("hybrid", help="Comma-separated search modes to compare, e.g. hybrid,vector,fts."),
    chunk_tokens: str = typer.Option(None, help="Comma-separated chunk sizes to compare (default: rag.chunk_tokens)."),
    rerank: str = typer.Option("none", help="Comma-separated rerankers to compare, e.g. none,llm."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Retrieval quality (recall@k, MRR, nDCG@k, with 95% CIs); several settings side by side, paired.

    Example: tailor rag eval questions.jsonl --modes hybrid,vector,fts
    """
    from rich.console import Console
    from rich.table import Table

    from tailorlm.project import Project
    from tailorlm.rag.evaluate import METRICS, evaluate as run_eval, parse_settings

    proj = Project.load(project)
    sizes = _split(chunk_tokens, int) if chunk_tokens else [proj.config.rag.chunk_tokens]
    settings = parse_settings(_split(modes), sizes, _split(rerank))
    report = run_eval(proj, suite, settings, k=k, on_progress=(lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True)))
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
