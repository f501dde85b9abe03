"""The RAG index: chunks of the project's documents, embedded, in LanceDB on disk.

`build_index` is incremental: each document's content hash is compared with the index manifest,
so after edits only changed documents are re-chunked and re-embedded, and deleted documents'
chunks are removed. Every operation is idempotent (delete a document's chunks, then add them), and
the manifest is rewritten only after the table is updated: a crash leaves the previous index
searchable, and the rerun finishes the job. Settings that change every chunk (embedder, chunk
size, overlap) trigger a full rebuild.

Search is vector (cosine), full-text (BM25) or hybrid, fused by reciprocal rank.
"""

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tailorlm.data.record import Record
from tailorlm.errors import TailorError

TABLE = "chunks"
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tailor-search")
RRF_K = 60  # the constant from Cormack et al. 2009; ranks matter, raw scores do not
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

    def __init__(self, uri: str, embedder, settings: dict, table: str = TABLE, refine_factor: int = 10):
        self.uri, self.embedder, self.settings, self.table_name = uri, embedder, settings, table
        self.refine_factor = refine_factor
        self._db = None

    @classmethod
    def for_project(cls, project, embedder=None, table: str = TABLE, **overrides) -> "RagIndex":
        cfg = project.config.rag.model_copy(update=overrides)
        uri = cfg.uri or str(project.artifacts("indexes") / "rag")
        if embedder is None:
            from tailorlm.models import get_embedder

            embedder = get_embedder(project.config.models.embedder)
        settings = {"embedder": project.config.models.embedder.model, "chunk_tokens": cfg.chunk_tokens,
                    "overlap_tokens": cfg.overlap_tokens, "ann_min_rows": cfg.ann_min_rows}
        index = cls(uri, embedder, settings, table)
        index.refine_factor = cfg.ann_refine_factor
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
            self._ann = any(i.columns == ["vector"] for i in self._open.list_indices())
        return self._open

    # -- building ---------------------------------------------------------------------------

    def manifest_path(self) -> Path:
        return Path(self.uri) / f"{self.table_name}.manifest.json"

    def read_manifest(self) -> dict:
        path = self.manifest_path()
        return json.loads(path.read_text()) if path.exists() else {"settings": None, "docs": {}}

    def build(self, docs: list[Record], on_progress: Callable[[int, int], None] | None = None) -> dict:
        """Bring the index up to date with `docs` (text records); returns what changed."""
        manifest = self.read_manifest()
        rebuild = manifest["settings"] != self.settings
        old = {} if rebuild else manifest["docs"]
        current = {d.id: _doc_hash(d) for d in docs}
        changed = [d for d in docs if old.get(d.id) != current[d.id]]
        removed = sorted(set(old) - set(current))
        rows = []
        for d in changed:
            rows += self._chunk(d)
        vectors = self._embed([r["embed_text"] for r in rows], on_progress)
        for r, v in zip(rows, vectors):
            r["vector"] = v
            del r["embed_text"]
        self._apply(rows, [d.id for d in changed] + removed, rebuild)
        # The manifest is the commit point: written aside and renamed, after the table is updated.
        Path(self.uri).mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path().with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "docs": current}, indent=1))
        tmp.replace(self.manifest_path())
        flagged = sorted({r["path"] for r in rows if r["flags"]})
        return {"documents": len(docs), "embedded_documents": len(changed), "removed_documents": len(removed),
                "chunks_added": len(rows), "chunks_total": self._table().count_rows() if docs else 0,
                "rebuilt": rebuild, "flagged_injection": flagged, "uri": self.uri}

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
        # verbose=False: counting a long text is not feeding it to the model, so no length warning.
        return lambda s: len(tok(s, add_special_tokens=False, verbose=False)["input_ids"])

    def _embed(self, texts: list[str], on_progress) -> list[list[float]]:
        out: list[list[float]] = []
        batch = 64
        if on_progress:
            on_progress(0, len(texts))
        for start in range(0, len(texts), batch):
            out += self.embedder.embed(texts[start : start + batch])
            if on_progress:
                on_progress(len(texts[start : start + batch]), len(texts))
        return out

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

        table.create_index("text", config=FTS(), replace=True)
        n = table.count_rows()
        if n >= self.settings["ann_min_rows"]:
            from lancedb.index import IvfPq

            table.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=max(16, int(n**0.5)),
                                                       num_sub_vectors=48), replace=True)

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
        fused: dict[str, tuple[float, Hit]] = {}
        for hits in (vector_hits, fts_future.result()):
            for rank, hit in enumerate(hits):
                score = fused.get(hit.id, (0.0, hit))[0] + 1.0 / (RRF_K + rank + 1)
                fused[hit.id] = (score, hit)
        best = sorted(fused.values(), key=lambda sh: (-sh[0], sh[1].id))[:k]
        for score, hit in best:
            hit.score = score
        return [hit for _, hit in best]

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
        q = table.search(terms, query_type="fts").select(HIT_COLUMNS).limit(k)
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
