"""The RAG index: chunks of the project's documents, embedded, in LanceDB on disk.

`build_index` is incremental: each document's content hash is compared with the index manifest,
so after edits only changed documents are re-chunked and re-embedded, and deleted documents'
chunks are removed. Every operation is idempotent (delete a document's chunks, then add them), and
the manifest is rewritten only after the table is updated: a crash leaves the previous index
searchable, and the rerun finishes the job. Settings that change every chunk (embedder, chunk
size, overlap) trigger a full rebuild.

Search is vector (cosine), full-text (BM25) or hybrid. BM25 matches the question's words in the chunk's
text, its heading trail and its document's title, each with its own index and boost; a multi-word query
is an OR of its words, each weighted by BM25's IDF (requiring every word, or a phrase, was measured and
did not pay: docs/architecture.md). Hybrid fuses the two rankings (`fuse`): by default a weighted sum of
each list's min-max normalised scores, or weighted reciprocal rank.
"""

import copy
import hashlib
import json
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tailorlm.data.record import Record
from tailorlm.errors import TailorError

TABLE = "chunks"
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tailor-search")
FTS_COLUMNS = ("text", "heading", "title")  # each has its own BM25 index; `search` weighs them by rag.*_boost
EMBED_GROUP = 256  # chunks handed to the embedder at once: it sorts each group by length, so padding stays small
# What a hit carries. Searches select these: left to itself LanceDB also returns each hit's 384-float
# vector, which cost 3 ms of a 16 ms vector query and 5 ms of a 13 ms BM25 query at 100k chunks.
HIT_COLUMNS = ["id", "doc_id", "path", "heading", "text", "source", "flags"]

# Instruction-like text inside a document: a retrieved chunk that says this is an attack or a
# mistake, never an instruction to follow. Flagged in the index report.
INJECTION = re.compile(
    r"(ignore|disregard|forget)\s+(all\s+|any\s+|the\s+)?(previous|prior|above|earlier)\s+(instructions|prompts?|messages)"
    r"|you\s+are\s+now\s+(a|an|in)\b|new\s+instructions\s*:|system\s+prompt|<\|im_start\|>|\[/?INST\]|###\s*instruction",
    re.IGNORECASE)


@dataclass
class Hit:
    id: str
    doc_id: str
    path: str
    heading: str
    text: str
    score: float
    source: str = ""
    flags: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "doc_id": self.doc_id, "path": self.path, "heading": self.heading,
                "score": round(self.score, 4), "source": self.source, "flags": self.flags, "text": self.text}


class RagIndex:
    """A project's chunk index.

    >>> index = RagIndex.for_project(project)  # doctest: +SKIP
    >>> index.build()  # doctest: +SKIP
    >>> [h.path for h in index.search("How long are deleted files kept?", k=3)]  # doctest: +SKIP
    """

    def __init__(self, uri: str, embedder, settings: dict, table: str = TABLE, refine_factor: int = 10,
                 search_config=None):
        from tailorlm.config import RagConfig

        self.uri, self.embedder, self.settings, self.table_name = uri, embedder, settings, table
        self.refine_factor = refine_factor
        self.cfg = search_config or RagConfig()  # tokenizer, boosts and fusion
        self._db = None

    @classmethod
    def for_project(cls, project, embedder=None, table: str = TABLE, **overrides) -> "RagIndex":
        cfg = project.config.rag.model_copy(update=overrides)
        uri = cfg.uri or str(project.artifacts("indexes") / "rag")
        if embedder is None:
            from tailorlm.models import get_embedder

            embedder = get_embedder(project.config.models.embedder)
        index = cls(uri, embedder, index_settings(project.config.models.embedder, cfg), table,
                    cfg.ann_refine_factor, cfg)
        index.project = project
        return index

    @property
    def db(self):
        if self._db is None:
            os.environ.setdefault("LANCEDB_LOG", "error")  # lance logs routine events as warnings
            import lancedb

            self._db = lancedb.connect(self.uri)
        return self._db

    def _exists(self) -> bool:
        return self.table_name in self.db.list_tables(limit=10_000).tables

    def _table(self):
        # Opened once per index object (about a millisecond each time otherwise); a build reopens it.
        if getattr(self, "_open", None) is None:
            if not self._exists():
                raise TailorError("the RAG index is empty; build it with `tailor rag index`")
            self._open = self.db.open_table(self.table_name)
            indexed = [i.columns for i in self._open.list_indices()]
            self._ann = ["vector"] in indexed
            # an index built before headings and titles had their own BM25 indexes searches text alone
            self._fts_columns = [c for c in FTS_COLUMNS if [c] in indexed]
        return self._open

    # -- building ---------------------------------------------------------------------------

    def manifest_path(self) -> Path:
        return Path(self.uri) / f"{self.table_name}.manifest.json"

    def read_manifest(self) -> dict:
        path = self.manifest_path()
        return json.loads(path.read_text()) if path.exists() else {"settings": None, "docs": {}}

    def build(self, docs: list[Record], on_progress=None, progress_task: str = "embedding chunks") -> dict:
        """Bring the index up to date with `docs` (text records); returns what changed.

        `on_progress(progress_task, embedded, total, chunks_per_s=...)` (tailorlm.progress) is called as
        chunks are embedded. Chunking runs on a thread ahead of the embedder, so `total` is None until the
        chunks made outrun the embedded ones, then grows with them until chunking is done. A callback of the
        old shape, `(embedded, chunks_so_far, chunking_done)`, is still taken."""
        from tailorlm.progress import index_shape, native

        on_progress = native(on_progress, index_shape)
        if on_progress:
            started = time.perf_counter()

            def report(done: int, made: int, finished: bool) -> None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                on_progress(progress_task, done, made if finished or made > done else None, chunks_per_s=f"{rate:.1f}")
        else:
            report = None
        manifest = self.read_manifest()
        rebuild = manifest["settings"] != self.settings
        old = {} if rebuild else manifest["docs"]
        current = {d.id: _doc_hash(d) for d in docs}
        changed = [d for d in docs if old.get(d.id) != current[d.id]]
        removed = sorted(set(old) - set(current))
        rows = self._chunk_and_embed(changed, report)
        fts = fts_settings(self.cfg)
        if rows or removed or rebuild or manifest.get("fts") != fts:
            self._apply(rows, [d.id for d in changed] + removed, rebuild)
        # The manifest is the commit point: written aside and renamed, after the table is updated.
        Path(self.uri).mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path().with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "fts": fts, "docs": current}, indent=1))
        tmp.replace(self.manifest_path())
        flagged = sorted({r["path"] for r in rows if r["flags"]})
        return {"documents": len(docs), "embedded_documents": len(changed), "removed_documents": len(removed),
                "chunks_added": len(rows), "chunks_total": self._table().count_rows() if docs else 0,
                "rebuilt": rebuild, "flagged_injection": flagged, "uri": self.uri}

    def _chunk_and_embed(self, docs: list[Record], on_progress) -> list[dict]:
        """Chunk on a thread while the embedder works through the chunks already made: the tokenizer
        and torch both release the GIL, so reading and chunking hide behind embedding."""
        groups: queue.Queue = queue.Queue(maxsize=4)
        made, failed, stop = [0], [], threading.Event()

        def produce():
            try:
                pending: list[dict] = []
                for d in docs:
                    if stop.is_set():
                        return
                    pending += self._chunk(d)
                    while len(pending) >= EMBED_GROUP:
                        made[0] += EMBED_GROUP
                        groups.put(pending[:EMBED_GROUP])
                        pending = pending[EMBED_GROUP:]
                made[0] += len(pending)
                groups.put(pending)
            except BaseException as e:  # raised again on the caller's thread
                failed.append(e)
            finally:
                groups.put(None)

        thread = threading.Thread(target=produce, name="tailor-chunking", daemon=True)
        thread.start()
        rows: list[dict] = []
        try:
            while (group := groups.get()) is not None:
                if group:
                    for r, v in zip(group, self._embed([r.pop("embed_text") for r in group])):
                        r["vector"] = v
                    rows += group
                if on_progress:
                    on_progress(len(rows), made[0], False)
        finally:
            stop.set()  # an embedding error (or Ctrl-C) stops the chunker; drain so its last put returns
            while thread.is_alive() or not groups.empty():
                try:
                    groups.get(timeout=0.05)
                except queue.Empty:
                    pass
        if failed:
            raise failed[0]
        if on_progress:
            on_progress(len(rows), len(rows), True)
        return rows

    def _chunk(self, doc: Record) -> list[dict]:
        from tailorlm.rag.chunking import chunk_record

        chunks = chunk_record(doc, max_tokens=self.settings["chunk_tokens"], overlap_tokens=self.settings["overlap_tokens"],
                              count_tokens=self._count_tokens())
        tags = ",".join(doc.meta.get("tags") or [])
        return [{"id": f"{doc.id}#{c.index}", "doc_id": doc.id, "source": doc.meta.get("source", ""),
                 "path": doc.meta.get("path", doc.id), "title": doc.meta.get("title") or "", "heading": " > ".join(c.heading),
                 "start": c.start, "end": c.end, "text": c.text, "tags": f",{tags}," if tags else "",
                 "flags": "injection" if INJECTION.search(c.text) else "", "embed_text": c.embed_text} for c in chunks]

    def _count_tokens(self):
        tok = getattr(getattr(self.embedder, "model", None), "tokenizer", None)
        if tok is None:
            return None  # endpoints: the chunker's word-based estimate
        # A copy for the chunking thread: a fast tokenizer used from two threads at once (the embedder
        # tokenizes with truncation on) can fail with "Already borrowed".
        tok = copy.deepcopy(tok)
        # verbose=False: counting a long text is not feeding it to the model, so no length warning.
        return lambda s: len(tok(s, add_special_tokens=False, verbose=False)["input_ids"])

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts)

    def _apply(self, rows: list[dict], stale_docs: list[str], rebuild: bool) -> None:
        import pyarrow as pa

        exists = self._exists()
        if rows:
            dim = len(rows[0]["vector"])
            schema = pa.schema([(k, pa.int64() if k in ("start", "end") else pa.string()) for k in rows[0] if k != "vector"]
                               + [("vector", pa.list_(pa.float32(), dim))])
            data = pa.Table.from_pylist(rows, schema=schema)
        if rebuild or not exists:
            if rows:
                self.db.create_table(self.table_name, data=data, mode="overwrite")
            elif exists:
                self.db.drop_table(self.table_name)
        else:
            table = self.db.open_table(self.table_name)
            for start in range(0, len(stale_docs), 500):
                ids = ", ".join("'" + d.replace("'", "''") + "'" for d in stale_docs[start : start + 500])
                table.delete(f"doc_id IN ({ids})")
            if rows:
                table.add(data)
        if self._exists():
            self._reindex(self.db.open_table(self.table_name))
        self._open = None

    def _reindex(self, table) -> None:
        from lancedb.index import FTS

        fts = fts_settings(self.cfg)
        for column in FTS_COLUMNS:
            table.create_index(column, config=FTS(stem=fts["stem"], remove_stop_words=fts["remove_stop_words"],
                                                  ascii_folding=fts["ascii_folding"]), replace=True)
        n = table.count_rows()
        if n >= self.settings["ann_min_rows"]:
            from lancedb.index import IvfPq

            table.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=max(16, int(n**0.5)),
                                                       num_sub_vectors=48), replace=True)

    def describe(self, mode: str) -> str:
        """The search settings in one line, for reports: e.g. "hybrid (score fusion, BM25 weight 1.0), 200-token
        chunks, BM25 on text + heading x2 + title x1, stemmed, stop words kept"."""
        c, s = self.cfg, self.settings
        fusion = (f" ({c.fusion} fusion, BM25 weight {c.fts_weight:g}" + (f", rrf_k {c.rrf_k}" if c.fusion == "rrf" else "")
                  + ")") if mode == "hybrid" else ""
        bm25 = (f", BM25 on text + heading x{c.heading_boost:g} + title x{c.title_boost:g}, "
                f"{'stemmed' if c.fts_stem else 'unstemmed'}, stop words {'removed' if c.fts_remove_stop_words else 'kept'}"
                if mode != "vector" else "")
        return f"{mode}{fusion}, {s['chunk_tokens']}-token chunks, {s['embedder']}{bm25}"

    # -- searching --------------------------------------------------------------------------

    def search(self, query: str, k: int = 4, mode: str = "hybrid", source: str | None = None,
               tag: str | None = None, vector: list[float] | None = None) -> list[Hit]:
        """The k best chunks for `query`; `source` and `tag` filter by metadata. `vector` is the
        query's embedding when the caller already has it."""
        table = self._table()
        where = _where(source, tag)
        pool = max(k * 4, 20)
        if mode in ("vector", "hybrid") and vector is None:
            vector = self.embedder.embed([query])[0]
        if mode == "vector":
            return self._vector(table, vector, k, where)
        if mode == "fts":
            return self._fts(table, query, k, where)
        if mode != "hybrid":
            raise TailorError(f"unknown search mode {mode!r}; use hybrid, vector or fts")
        # Both searches run in LanceDB's native code, which releases the GIL: run them side by side.
        fts_future = _POOL.submit(self._fts, table, query, pool, where)
        vector_hits = self._vector(table, vector, pool, where)
        return fuse([vector_hits, fts_future.result()], [1.0, self.cfg.fts_weight], self.cfg.fusion, self.cfg.rrf_k)[:k]

    def _vector(self, table, vector: list[float], k: int, where: str | None) -> list[Hit]:
        q = table.search(vector, vector_column_name="vector").distance_type("cosine").select(HIT_COLUMNS).limit(k)
        if self._ann:
            # IVF-PQ alone found 41% of the exact top 10 at 100k chunks; probing more partitions and
            # re-ranking 10x candidates on full vectors found 90% (benchmarks/rag.py).
            q = q.nprobes(20).refine_factor(self.refine_factor)
        if where:
            q = q.where(where, prefilter=True)
        return [_hit(r, 1.0 - r["_distance"]) for r in q.to_list()]

    def _fts(self, table, query: str, k: int, where: str | None) -> list[Hit]:
        terms = " ".join(re.findall(r"\w+", query))  # the FTS query parser rejects stray punctuation
        if not terms:
            return []
        from lancedb.query import MatchQuery, MultiMatchQuery

        columns = self._fts_columns or ["text"]
        if len(columns) == 1:
            fq = MatchQuery(terms, columns[0])
        else:
            boost = {"text": 1.0, "heading": self.cfg.heading_boost, "title": self.cfg.title_boost}
            fq = MultiMatchQuery(terms, columns, boosts=[boost[c] for c in columns])
        q = table.search(fq, query_type="fts").select(HIT_COLUMNS).limit(k)
        if where:
            q = q.where(where, prefilter=True)
        return [_hit(r, r["_score"]) for r in q.to_list()]

    def chunks(self, limit: int = 100_000) -> list[Hit]:
        """Every chunk (up to `limit`), in storage order: distractors for RAFT data are drawn from these."""
        return [_hit(r, 0.0) for r in self._table().search().select(HIT_COLUMNS).limit(limit).to_list()]

    def flagged(self) -> list[dict]:
        table = self._table()
        rows = table.search().where("flags != ''").select(["id", "path", "heading", "flags"]).limit(10_000).to_list()
        return [{k: r[k] for k in ("id", "path", "heading", "flags")} for r in rows]


def fuse(rankings: list[list[Hit]], weights: list[float], method: str = "score", rrf_k: int = 60) -> list[Hit]:
    """One ranking from several (best first), each weighted.

    `score`: each list's scores are min-max normalised to [0, 1] and summed with the weights; a list
    whose scores are all equal says nothing about order and adds nothing. `rrf`: reciprocal rank fusion,
    weight / (rrf_k + rank). Ties break by id, so the result is deterministic.

    >>> a, b, c = (Hit(i, "", "", "", "", s) for i, s in (("a", .9), ("b", .8), ("c", .1)))
    >>> [h.id for h in fuse([[a, b, c], []], [1.0, 1.0])]
    ['a', 'b', 'c']
    """
    if method not in ("score", "rrf"):
        raise TailorError(f"unknown fusion {method!r}; use score or rrf")
    total: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for ranking, weight in zip(rankings, weights):
        scores = [h.score for h in ranking]
        low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
        for rank, hit in enumerate(ranking):
            if method == "rrf":
                part = 1.0 / (rrf_k + rank + 1)
            else:
                part = (hit.score - low) / (high - low) if high > low else 0.0
            total[hit.id] = total.get(hit.id, 0.0) + weight * part
            hits.setdefault(hit.id, hit)
    order = sorted(total, key=lambda i: (-total[i], i))
    return [Hit(**{**hits[i].__dict__, "score": total[i]}) for i in order]


def index_settings(embedder_cfg, cfg) -> dict:
    """What every chunk's vector depends on: a change rebuilds the table (the manifest keeps them)."""
    runtime = getattr(embedder_cfg, "runtime", "torch")
    # the torch runtime keeps the bare model name, so indexes built before runtimes existed stay valid
    name = embedder_cfg.model if runtime == "torch" else f"{embedder_cfg.model}@{runtime}"
    return {"embedder": name, "chunk_tokens": cfg.chunk_tokens, "overlap_tokens": cfg.overlap_tokens,
            "ann_min_rows": cfg.ann_min_rows}


def fts_settings(cfg) -> dict:
    """The BM25 tokenizer's settings: a change re-creates the full-text indexes only, nothing is re-embedded."""
    return {"stem": cfg.fts_stem, "remove_stop_words": cfg.fts_remove_stop_words, "ascii_folding": cfg.fts_ascii_folding,
            "columns": list(FTS_COLUMNS)}


def _hit(row: dict, score: float) -> Hit:
    return Hit(row["id"], row["doc_id"], row["path"], row["heading"], row["text"], float(score), row["source"], row["flags"])


def _where(source: str | None, tag: str | None) -> str | None:
    parts = []
    if source:
        parts.append("source = '" + source.replace("'", "''") + "'")
    if tag:
        parts.append("tags LIKE '%," + tag.replace("'", "''").replace("%", "") + ",%'")
    return " AND ".join(parts) or None


def _doc_hash(doc: Record) -> str:
    return hashlib.sha256(json.dumps([doc.content, doc.meta.get("tags"), doc.meta.get("format")],
                                     sort_keys=True).encode()).hexdigest()
