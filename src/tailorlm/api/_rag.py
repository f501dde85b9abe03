"""`tailor rag query` and `tailor rag eval` as library calls (`tailorlm.api.index` builds the index).

Settings not given come from tailor.yaml's `rag:` section, checked like tailor.yaml's own values.
"""

from tailorlm.api._common import _quiet, project


def query(where=None, question: str = "", k: int | None = None, search: str | None = None,
          source: str | None = None, tag: str | None = None, retrieve_only: bool = False, max_tokens: int = 256,
          generator=None) -> dict:
    """Answer with retrieved sources (the rag rung): text, citations and `meta.retrieved` (the chunks, scored).

    `retrieve_only` skips generation and returns the `hits`, filtered by `source` and `tag`.

    >>> query("support", "How long are deleted files kept?", retrieve_only=True)["hits"][0]["path"]  # doctest: +SKIP
    'docs/retention.md'
    """
    from tailorlm.chat import system_prompt
    from tailorlm.config import overridden
    from tailorlm.errors import TailorError
    from tailorlm.models.base import GenParams
    from tailorlm.rag.index import RagIndex

    proj = project(where)
    cfg = overridden(proj.config.rag, k=k, search=search)
    idx = RagIndex.for_project(proj)
    if retrieve_only:
        hits = idx.search(question, k=cfg.k, mode=cfg.search, source=source, tag=tag)
        return {"question": question, "mode": cfg.search, "hits": [h.to_dict() for h in hits]}
    from tailorlm.models import get_generator
    from tailorlm.rag.rerank import make_reranker
    from tailorlm.rungs.rag import RagRung

    gen = generator or get_generator(proj.config.models.generator)
    rung = RagRung(idx, gen, k=cfg.k, mode=cfg.search, system=system_prompt(proj.config.task),
                   context_tokens=cfg.context_tokens, reranker=make_reranker(cfg.rerank, gen))
    answer = rung.answer([{"role": "user", "content": question}], GenParams(max_tokens=max_tokens))
    if answer.error:  # the rung keeps going on a failed question (an eval has more); a single query stops here
        raise TailorError(answer.error.removeprefix("TailorError: "))
    return answer.to_dict()


def rag_eval(where=None, suite: str = "", k: int = 5, modes: list[str] = ("hybrid",),
             chunk_tokens: list[int] | None = None, rerank: list[str] = ("none",), log=_quiet) -> dict:
    """Retrieval quality (recall@k, MRR, nDCG@k with 95% CIs) of every combination of the settings on a
    retrieval suite, each paired against the first; `chunk_tokens` defaults to rag.chunk_tokens."""
    from tailorlm.rag.evaluate import evaluate, parse_settings

    proj = project(where)
    sizes = list(chunk_tokens or [proj.config.rag.chunk_tokens])
    return evaluate(proj, suite, parse_settings(list(modes), sizes, list(rerank)), k=k, on_progress=log)


def rag_tune(where=None, suite: str = "", chunk_tokens: list[int] | None = None, k: int = 5, metric: str = "mrr",
             write: bool = True, log=_quiet) -> dict:
    """Search mode, fusion, BM25 weight, rrf_k and chunk size tuned on a retrieval suite (never the golden
    one); the winner is written into tailor.yaml's rag: section unless `write=False`."""
    from tailorlm.rag.tune import tune

    proj = project(where)
    sizes = list(chunk_tokens or [proj.config.rag.chunk_tokens])
    return tune(proj, suite, sizes, k=k, metric=metric.replace(f"@{k}", "@k"), write=write, on_progress=log)
