"""`tailor rag eval SUITE`: how well retrieval finds the right sources, before any generation.

A suite is a JSONL of questions (`input` messages or a `question` string), each with the sources
that answer it: `sources` (document paths), `chunks` (chunk ids) or `sections` (a document path and
a heading trail, "docs/faq.md :: FAQ > How do I ...?": any chunk under that heading counts, so
relevance survives a change of chunk size). Every setting is scored on the same questions (recall@k,
MRR, nDCG@k with 95% CIs), and each setting after the first is compared with the first by a paired
bootstrap on the per-question scores. `--tune` (rag/tune.py) searches the settings instead.
"""

from tailorlm.errors import TailorError
from tailorlm.paths import inside

METRICS = ("recall@k", "mrr", "ndcg@k")
UNITS = {"chunk": "chunks", "doc": "sources", "section": "sections"}  # relevance unit -> the suite's field
SECTION_SEP = " :: "


def ranked_ids(q: dict, hits: list) -> list[str]:
    """The hits as the ids `q["relevant"]` is written in; a chunk under a relevant section counts as it."""
    if q["unit"] == "chunk":
        return [h.id for h in hits]
    if q["unit"] == "doc":
        return [h.path for h in hits]
    out = []
    for h in hits:
        key = h.path + SECTION_SEP + h.heading
        out.append(next((r for r in q["relevant"] if key == r or key.startswith(r + " > ")), h.id))
    return out


def load_suite(project, suite: str) -> list[dict]:
    from tailorlm.eval.suite import suite_lines

    out = []
    for n, obj in suite_lines(inside(project.root, suite), suite):
        if not isinstance(obj, dict):
            raise TailorError(f"{suite}:{n}: expected an object with a question and its sources")
        question = obj.get("question") or next((m["content"] for m in reversed(obj.get("input") or [])
                                                 if m.get("role") == "user"), None)
        unit = next((u for u in UNITS if obj.get(UNITS[u])), None)
        if not question or unit is None:
            raise TailorError(f"{suite}:{n}: needs a question (`input` or `question`) and its `sources`, `chunks` or `sections`")
        relevant = obj[UNITS[unit]]
        if not isinstance(relevant, list) or not all(isinstance(r, str) for r in relevant):
            raise TailorError(f"{suite}:{n}: `{UNITS[unit]}` must be a list of strings")
        if unit == "section" and not all(SECTION_SEP in r for r in relevant):
            raise TailorError(f"{suite}:{n}: a section is 'PATH{SECTION_SEP}HEADING > SUBHEADING'")
        out.append({"id": obj.get("id", f"line-{n}"), "question": question, "relevant": set(relevant), "unit": unit})
    if not out:
        raise TailorError(f"suite {suite} has no questions")
    return out


def parse_settings(modes: list[str], chunk_tokens: list[int], rerank: list[str]) -> list[dict]:
    """Every combination of the given options, the first one being the baseline."""
    return [{"mode": m, "chunk_tokens": c, "rerank": r} for c in chunk_tokens for m in modes for r in rerank]


def index_for(project, embedder, chunk_tokens: int, docs: list, on_progress, **search) -> "RagIndex":  # noqa: F821
    """The project's index at `chunk_tokens` (its own table unless that is rag.chunk_tokens), built when
    its settings differ from what the table was built with, the build reporting to `on_progress` (the
    protocol, or the old `(message)` callback) as "indexing with chunk_tokens=N". `docs` caches the
    documents across calls."""
    from tailorlm.progress import messages, native
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex, fts_settings

    on_progress = native(on_progress, messages)

    table = "chunks" if chunk_tokens == project.config.rag.chunk_tokens else f"chunks_eval_{chunk_tokens}"
    index = RagIndex.for_project(project, embedder=embedder, table=table, chunk_tokens=chunk_tokens, **search)
    manifest = index.read_manifest()
    if manifest["settings"] != index.settings or manifest.get("fts") != fts_settings(index.cfg):
        if not docs:
            docs += index_documents(project)[0]
        task = f"indexing with chunk_tokens={chunk_tokens}"
        if on_progress:
            on_progress(task, 0, None)  # before the first chunks are embedded, which takes a while
        index.build(docs, on_progress, progress_task=task)
    return index


def evaluate(project, suite: str, settings: list[dict], k: int = 5, embedder=None, generator=None,
             on_progress=None) -> dict:
    """Every setting scored on the suite's questions, each after the first paired against it.
    `on_progress(task, done, total)` (tailorlm.progress) reports each index build and each setting's
    questions searched, as "searching: SETTING"; a `(message)` callback still gets each task's name once."""
    from tailorlm.eval.retrieval import score_queries
    from tailorlm.models import get_embedder
    from tailorlm.progress import messages, native
    from tailorlm.rag.rerank import make_reranker

    on_progress = native(on_progress, messages) or (lambda task, done, total, **info: None)
    questions = load_suite(project, suite)
    embedder = embedder or get_embedder(project.config.models.embedder)
    docs: list = []
    results = []
    for s in settings:
        search = {f: s[f] for f in ("fusion", "fts_weight", "rrf_k") if f in s}
        index = index_for(project, embedder, s["chunk_tokens"], docs, on_progress, **search)
        if s["rerank"] != "none" and generator is None:
            from tailorlm.models import get_generator

            generator = get_generator(project.config.models.generator)
        reranker = make_reranker(s["rerank"], generator)
        task = f"searching: {s}"
        on_progress(task, 0, len(questions))
        runs = []
        for q in questions:
            hits = index.search(q["question"], k=k * (3 if reranker else 1), mode=s["mode"])
            if reranker:
                hits = reranker(q["question"], hits)
            runs.append((ranked_ids(q, hits)[: k * 10], q["relevant"]))
            on_progress(task, len(runs), len(questions))
        scores = score_queries(runs, k)
        results.append({"setting": s, **{m: scores[m] for m in METRICS},
                        "per_query": [{"id": q["id"], **pq} for q, pq in zip(questions, scores["per_query"])]})
    for r in results[1:]:
        r["vs_first"] = paired_deltas(results[0], r)
    return {"suite": suite, "n": len(questions), "k": k, "unit": questions[0]["unit"], "results": results}


def paired_deltas(base: dict, other: dict) -> dict:
    """other - base for each metric, a paired bootstrap over the same questions."""
    from tailorlm.eval.stats import paired_bootstrap

    return {m: paired_bootstrap([p[m] for p in base["per_query"]], [p[m] for p in other["per_query"]]) for m in METRICS}
