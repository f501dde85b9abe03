"""Synthetic scale-up for `rag.py`'s latency numbers: a real index's chunks, copied until a table holds
10k or 100k rows, then indexed exactly as the library indexes its own table.

Copy c of a real chunk keeps its metadata, gets the id `<doc>~c#<i>`, a text with about 10% of its
words dropped at random, and the real vector plus Gaussian noise of norm about 0.6, renormalised
(cosine to the original about 0.85: a paraphrase, not a duplicate). The originals stay in the
table with their real vectors. Texts are therefore far more repetitive than a real 100k-chunk
corpus: rare words are ~40x commoner, which makes BM25's posting lists longer, not shorter.

    table, seconds = build_scaled(index, real_rows, 100_000, seed=0)
"""

import time

import numpy as np

NOISE_NORM = 0.6
DROP_WORDS = 0.1


class _TimedTable:
    """A LanceDB table whose `create_index` calls are timed, per column: FTS on `text`, IVF-PQ on `vector`."""

    def __init__(self, table):
        self._t, self.seconds = table, {}

    def create_index(self, column, **kwargs):
        t0 = time.perf_counter()
        out = self._t.create_index(column, **kwargs)
        self.seconds[column] = time.perf_counter() - t0
        return out

    def __getattr__(self, name):
        return getattr(self._t, name)


def build_scaled(index, real, size: int, seed: int):
    """Write `size` rows (the real ones first, then perturbed copies) into `index`'s table and index it
    with `RagIndex._reindex`. `real` is the real table as a pyarrow Table. Returns the open table and
    {"write_s", "fts_index_s", "ivf_pq_index_s" (None below ann_min_rows)}."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n_real = real.num_rows
    cols = {name: real.column(name).to_pylist() for name in real.column_names if name != "vector"}
    vectors = np.asarray(real.column("vector").to_pylist(), dtype=np.float32)
    src = np.arange(size) % n_real  # row r copies real row src[r]; copy number r // n_real
    copy = np.arange(size) // n_real
    out = {name: [] for name in cols}
    for r, (s, c) in enumerate(zip(src.tolist(), copy.tolist())):
        for name, values in cols.items():
            out[name].append(values[s])
        if c:
            doc = f"{cols['doc_id'][s]}~{c}"
            out["doc_id"][r] = doc
            out["id"][r] = f"{doc}#{cols['id'][s].rsplit('#', 1)[-1]}"
            words = cols["text"][s].split()
            keep = rng.random(len(words)) >= DROP_WORDS
            out["text"][r] = " ".join(w for w, k in zip(words, keep) if k) or cols["text"][s]
    vec = vectors[src].copy()
    noisy = copy > 0
    noise = rng.standard_normal((int(noisy.sum()), vec.shape[1])).astype(np.float32)
    vec[noisy] += noise * (NOISE_NORM / np.sqrt(vec.shape[1]))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    schema = real.schema  # the schema the library wrote: id, doc_id, ..., flags, vector
    arrays = [pa.array(out[f.name], type=f.type) if f.name != "vector" else
              pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel(), type=pa.float32()), vec.shape[1])
              for f in schema]
    data = pa.Table.from_arrays(arrays, schema=schema)
    t0 = time.perf_counter()
    table = index.db.create_table(index.table_name, data=data, mode="overwrite")
    write_s = time.perf_counter() - t0
    timed = _TimedTable(table)
    index._reindex(timed)  # the library's own indexing: FTS always, IVF-PQ from ann_min_rows
    fts = [timed.seconds[c] for c in ("text", "heading", "title") if c in timed.seconds]
    return table, {"rows": table.count_rows(), "write_s": write_s, "fts_index_s": sum(fts) if fts else None,
                   "ivf_pq_index_s": timed.seconds.get("vector")}


def time_queries(index, queries: list[tuple[str, list[float]]], modes, n_timed: int, warmup: int, k: int) -> dict:
    """p50/p95 milliseconds per mode of `index.search(q, k, mode, vector=v)`: the query's embedding is
    given, so it is not timed. The modes take turns on each query (rotating who goes first), so
    load from other processes falls on all of them alike."""
    for q, v in queries[:warmup]:
        for m in modes:
            index.search(q, k=k, mode=m, vector=v)
    times = {m: [] for m in modes}
    for i in range(n_timed):
        q, v = queries[i % len(queries)]
        for j in range(len(modes)):
            m = modes[(i + j) % len(modes)]
            t0 = time.perf_counter()
            index.search(q, k=k, mode=m, vector=v)
            times[m].append((time.perf_counter() - t0) * 1000)
    return {m: summarise(t) for m, t in times.items()}


def summarise(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "mean_ms": float(a.mean())}


def ann_recall(index, table, vectors: list[list[float]], k: int = 10) -> tuple[list[float], list[float]]:
    """Per query: the share of the exact top-k (brute force, the index bypassed) that the library's
    vector search (IVF-PQ, 20 probes, re-ranked by `rag.ann_refine_factor`) returns, by row; and the same with
    each copy mapped back to the real chunk it was made from (did the search find the same content?)."""
    by_row, by_source = [], []
    for v in vectors:
        ann = [h.id for h in index._vector(table, v, k, None)]
        exact = [r["id"] for r in table.search(v, vector_column_name="vector").distance_type("cosine")
                 .bypass_vector_index().limit(k).select(["id"]).to_list()]
        by_row.append(len(set(ann) & set(exact)) / k)
        real_ann, real_exact = {_source(i) for i in ann}, {_source(i) for i in exact}
        by_source.append(len(real_ann & real_exact) / len(real_exact))
    return by_row, by_source


def refine_trial(table, vectors: list[list[float]], k: int = 10, refine: int = 10) -> dict:
    """A raw LanceDB IVF-PQ query re-ranked on full vectors (`refine_factor`, default probes), beside
    the library's own search, to show what recall and latency re-ranking trades. Recall by row."""
    recall, ms = [], []
    for v in vectors:
        exact = {r["id"] for r in table.search(v, vector_column_name="vector").distance_type("cosine")
                 .bypass_vector_index().limit(k).select(["id"]).to_list()}
        t0 = time.perf_counter()
        got = table.search(v, vector_column_name="vector").distance_type("cosine").refine_factor(refine).limit(k).to_list()
        ms.append((time.perf_counter() - t0) * 1000)
        recall.append(len({r["id"] for r in got} & exact) / k)
    return {"refine_factor": refine, "recall": recall, "latency": summarise(ms)}


def _source(chunk_id: str) -> str:
    """`<doc>~c#<i>` -> `<doc>#<i>`: the real chunk a copy was made from."""
    head, _, index = chunk_id.rpartition("#")
    return head.rsplit("~", 1)[0] + "#" + index if "~" in head else chunk_id


def hybrid_breakdown(index, queries: list[tuple[str, list[float]]], n: int, k: int) -> dict:
    """Where one hybrid query's time goes: opening the table (every `search` does), the vector and the
    BM25 searches at hybrid's pool size, each run alone, and the whole hybrid call."""
    pool = max(k * 4, 20)  # as RagIndex.search
    parts = {"open_table": [], "vector_pool": [], "fts_pool": [], "hybrid_total": []}
    for i in range(n):
        q, v = queries[i % len(queries)]
        t0 = time.perf_counter()
        table = index._table()
        t1 = time.perf_counter()
        index._vector(table, v, pool, None)
        t2 = time.perf_counter()
        index._fts(table, q, pool, None)
        t3 = time.perf_counter()
        index.search(q, k=k, mode="hybrid", vector=v)
        t4 = time.perf_counter()
        for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[name].append(dt * 1000)
    return {name: summarise(ms) for name, ms in parts.items()}
