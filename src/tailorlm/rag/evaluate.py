"""`tailor rag eval SUITE`: how well retrieval finds the right sources, before any generation.

A suite is a JSONL of questions (`input` messages or a `question` string), each with the sources
that answer it (`sources`: document paths, or `chunks`: chunk ids). Every setting is scored on
the same questions (recall@k, MRR, nDCG@k with 95% CIs), and each setting after the first is
compared with the first by a paired bootstrap on the per-question scores.
"""

import json

from tailorlm.errors import TailorError
from tailorlm.paths import inside

METRICS = ("recall@k", "mrr", "ndcg@k")


def load_suite(project, suite: str) -> list[dict]:
    path = inside(project.root, suite)
    if not path.exists():
        raise TailorError(f"suite file not found: {suite}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TailorError(f"{suite}:{n}: invalid JSON: {e.msg}") from e
        question = obj.get("question") or next((m["content"] for m in reversed(obj.get("input") or [])
                                                 if m.get("role") == "user"), None)
        relevant = obj.get("chunks") or obj.get("sources")
        if not question or not relevant:
            raise TailorError(f"{suite}:{n}: needs a question (`input` or `question`) and its `sources` or `chunks`")
        out.append({"id": obj.get("id", f"line-{n}"), "question": question, "relevant": set(relevant),
                    "unit": "chunk" if "chunks" in obj else "doc"})
    if not out:
        raise TailorError(f"suite {suite} has no questions")
    return out


def parse_settings(modes: list[str], chunk_tokens: list[int], rerank: list[str]) -> list[dict]:
    """Every combination of the given options, the first one being the baseline."""
    return [{"mode": m, "chunk_tokens": c, "rerank": r} for c in chunk_tokens for m in modes for r in rerank]


def evaluate(project, suite: str, settings: list[dict], k: int = 5, embedder=None, generator=None,
             on_progress=lambda _msg: None) -> dict:
    from tailorlm.eval.retrieval import score_queries
    from tailorlm.eval.stats import paired_bootstrap
    from tailorlm.models import get_embedder
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex
    from tailorlm.rag.rung import make_reranker

    questions = load_suite(project, suite)
    embedder = embedder or get_embedder(project.config.models.embedder)
    docs = None
    results = []
    for s in settings:
        table = "chunks" if s["chunk_tokens"] == project.config.rag.chunk_tokens else f"chunks_eval_{s['chunk_tokens']}"
        index = RagIndex.for_project(project, embedder=embedder, table=table, chunk_tokens=s["chunk_tokens"])
        if index.read_manifest()["settings"] != index.settings:
            # Settings the main index was not built with get their own table, built once here.
            if docs is None:
                docs, _ = index_documents(project)
            on_progress(f"indexing with chunk_tokens={s['chunk_tokens']}")
            index.build(docs)
        if s["rerank"] != "none" and generator is None:
            from tailorlm.models import get_generator

            generator = get_generator(project.config.models.generator)
        reranker = make_reranker(s["rerank"], generator)
        on_progress(f"searching: {s}")
        runs = []
        for q in questions:
            hits = index.search(q["question"], k=k * (3 if reranker else 1), mode=s["mode"])
            if reranker:
                hits = reranker(q["question"], hits)
            ranked = [h.id if q["unit"] == "chunk" else h.path for h in hits][: k * 10]
            runs.append((ranked, q["relevant"]))
        scores = score_queries(runs, k)
        results.append({"setting": s, **{m: scores[m] for m in METRICS},
                        "per_query": [{"id": q["id"], **pq} for q, pq in zip(questions, scores["per_query"])]})
    base = results[0]
    for r in results[1:]:
        r["vs_first"] = {m: paired_bootstrap([p[m] for p in base["per_query"]], [p[m] for p in r["per_query"]])
                         for m in METRICS}
    return {"suite": suite, "n": len(questions), "k": k, "unit": questions[0]["unit"], "results": results}
