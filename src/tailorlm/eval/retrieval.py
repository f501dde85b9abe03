"""Retrieval metrics over ranked results: recall@k, precision@k, MRR and nDCG@k.

`tailor rag eval` scores the retriever with `score_queries` before any generation happens, and the
ladder uses the same per-query scores to compare two retrievers (or index settings) with the
paired tests in `stats.py`. Relevance is binary: a document is relevant or it is not.

A ranked list may repeat an id (several chunks of one document, fused result lists); only the
first occurrence counts, so a document cannot be "found" twice.
"""

from __future__ import annotations

import math

from tailorlm.eval.stats import mean_ci


def _dedupe(ranked_ids) -> list:
    # dict keeps insertion order, so this keeps the first occurrence of each id.
    return list(dict.fromkeys(ranked_ids))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _check_relevant(relevant_ids) -> set:
    relevant = set(relevant_ids)
    if not relevant:
        raise ValueError(
            "a query has no relevant ids, so recall and nDCG are undefined; label at least one "
            "relevant document or leave the query out of the retrieval suite"
        )
    return relevant


def recall_at_k(ranked_ids, relevant_ids, k: int) -> float:
    """Fraction of the relevant ids that appear in the top k.

    >>> recall_at_k(["a", "b", "c", "d"], {"b", "d"}, 2)
    0.5
    """
    _check_k(k)
    relevant = _check_relevant(relevant_ids)
    hits = sum(1 for doc in _dedupe(ranked_ids)[:k] if doc in relevant)
    return hits / len(relevant)


def precision_at_k(ranked_ids, relevant_ids, k: int) -> float:
    """Fraction of the top k positions that hold a relevant id.

    The denominator is always k, so a retriever that returns fewer than k results is not rewarded
    for it.

    >>> precision_at_k(["a", "b", "c", "d"], {"b", "d"}, 4)
    0.5
    """
    _check_k(k)
    relevant = _check_relevant(relevant_ids)
    hits = sum(1 for doc in _dedupe(ranked_ids)[:k] if doc in relevant)
    return hits / k


def mrr(ranked_ids, relevant_ids) -> float:
    """Reciprocal rank of the first relevant id (1-based), 0.0 if none is retrieved.

    Averaged over queries this is the mean reciprocal rank.

    >>> mrr(["a", "b", "c", "d"], {"b", "d"})
    0.5
    """
    relevant = _check_relevant(relevant_ids)
    for rank, doc in enumerate(_dedupe(ranked_ids), start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked_ids, relevant_ids, k: int) -> float:
    """Normalised discounted cumulative gain at k with binary relevance.

    DCG sums 1 / log2(rank + 1) over the relevant ids in the top k; it is divided by the DCG of a
    perfect ranking, which places min(k, |relevant|) relevant ids first.

    >>> round(ndcg_at_k(["a", "b", "c", "d"], {"b", "d"}, 4), 4)
    0.6509
    """
    _check_k(k)
    relevant = _check_relevant(relevant_ids)
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, doc in enumerate(_dedupe(ranked_ids)[:k], start=1)
        if doc in relevant
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def score_queries(runs: list[tuple[list[str], set[str]]], k: int) -> dict:
    """Score many queries: per-query values (for paired tests) and means with confidence intervals.

    `runs` holds one (ranked_ids, relevant_ids) pair per query, in a fixed order, so the
    `per_query` lists of two retrievers scored on the same queries can go straight into
    `paired_bootstrap` or `paired_permutation`. Every query is scored; none is dropped.

    >>> r = score_queries([(["a", "b"], {"b"}), (["c", "d"], {"c"})], k=2)
    >>> r["n"], r["mrr"]["mean"], r["per_query"][0]["mrr"]
    (2, 0.75, 0.5)
    """
    _check_k(k)
    if not runs:
        raise ValueError("score_queries needs at least one query")
    per_query = []
    for i, (ranked, relevant) in enumerate(runs):
        if not set(relevant):
            raise ValueError(
                f"query {i} has no relevant ids, so recall and nDCG are undefined; label at "
                "least one relevant document or leave the query out of the retrieval suite"
            )
        per_query.append({
            "recall@k": recall_at_k(ranked, relevant, k),
            "mrr": mrr(ranked, relevant),
            "ndcg@k": ndcg_at_k(ranked, relevant, k),
        })
    result: dict = {"n": len(per_query), "k": k}
    for name in ("recall@k", "mrr", "ndcg@k"):
        ci = mean_ci([q[name] for q in per_query])
        result[name] = {"mean": ci["mean"], "low": ci["low"], "high": ci["high"]}
    result["per_query"] = per_query
    return result
