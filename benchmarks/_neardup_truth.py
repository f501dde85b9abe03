"""Ground truth for near-duplicate detection: every pair of documents whose word 5-gram sets
have exact Jaccard similarity at or above a threshold, found without any sketch.

All pairs are compared exactly: the n-gram sets become rows of a sparse 0/1 matrix X, and
X @ X.T holds every pair's intersection size at once (pairs sharing no n-gram have Jaccard 0
and never appear). |A u B| = |A| + |B| - |A n B| then gives each Jaccard exactly.

    truth = true_pairs([shingles(t, 5) for t in texts], 0.8)
    scores(predicted_pairs, truth)  # {"precision": ..., "recall": ..., "f1": ...}
"""


def true_pairs(sets: list[set[str]], threshold: float) -> set[tuple[int, int]]:
    """(i, j) with i < j and Jaccard(sets[i], sets[j]) >= threshold; empty sets pair with nothing."""
    import numpy as np
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for g in s:
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    x = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(sets), len(vocab)))
    inter = sparse.triu(x @ x.T, k=1).tocoo()
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    jac = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    # A float comparison at exactly the threshold must agree with Tailor's own `jaccard() >=`.
    hit = jac >= threshold
    return {(int(i), int(j)) for i, j in zip(inter.row[hit], inter.col[hit])}


def clusters(n: int, pairs) -> list[int]:
    """Cluster id (its smallest member) of each of n items, joining every pair."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(n)]


def co_clustered(labels: list[int]) -> set[tuple[int, int]]:
    """Every pair (i < j) of items that share a cluster."""
    members: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        members.setdefault(c, []).append(i)
    return {(a, b) for group in members.values() for k, a in enumerate(group) for b in group[k + 1:]}


def scores(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> dict:
    """Precision, recall and F1 of predicted pairs against true pairs (both as i < j).

    >>> scores({(0, 1), (1, 2)}, {(0, 1), (2, 3)})["f1"]
    0.5
    """
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"true_pairs": len(truth), "predicted_pairs": len(predicted), "true_positives": tp,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
