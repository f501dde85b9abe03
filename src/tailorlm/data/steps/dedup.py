"""Deduplication steps: exact, near (MinHash LSH) and line-level boilerplate.

- `exact_dedup` drops records whose normalised content hashes equal an earlier record's.
- `near_dedup` drops records whose word n-gram sets overlap an earlier record's with Jaccard at
  or above the threshold. MinHash LSH finds candidate pairs; each candidate is then checked with
  the exact Jaccard of the two n-gram sets (as 64-bit hashes), so nothing below the threshold is
  ever dropped. The first record of each cluster (in input order) is kept: deterministic for the
  same input.

Memory: none of them holds the records. Exact dedup keeps a digest per distinct record; near and
line dedup park the records in a `Spool` (a temporary file) between their two passes and keep
only hashes and band keys in memory, so `tailor data prepare` runs in flat memory at 1M documents
(docs/scaling.md).
- `line_dedup` removes lines (headers, footers, signatures) repeated across many documents.
"""

import hashlib
import re
import tempfile
from array import array
from typing import Iterable, Iterator

from pydantic import Field

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Filter, Step, StepParams

_WORD = re.compile(r"\w+", re.UNICODE)


def _canonical(record: Record) -> str:
    return " ".join(record.joined().casefold().split())


class ExactDedup(Filter):
    name = "exact_dedup"

    def __init__(self, **params):
        super().__init__(**params)
        self.seen: dict[bytes, str] = {}  # 32-byte digest -> first id: the only state kept per record

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        digest = hashlib.sha256(f"{record.kind}\x00{_canonical(record)}".encode()).digest()
        if digest in self.seen:
            record.meta["duplicate_of"] = self.seen[digest]
            return False, "duplicate"
        self.seen[digest] = record.id
        return True


def shingles(text: str, n: int) -> set[str]:
    """Word n-grams of a text (lower-cased); a text shorter than n words is one shingle."""
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def lsh_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows whose S-curve puts the 50% point well below the threshold: candidates are
    verified exactly afterwards, so extra candidates cost time but never precision."""
    best = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        midpoint = (1 / bands) ** (1 / rows)
        if midpoint <= threshold - 0.15 and (best is None or rows > best[1]):
            best = (bands, rows)
    return best or (num_perm, 1)


def shingle_hashes(grams: set[str]):
    """The sorted, distinct 64-bit xxhash of each shingle: the compact stand-in for the set (Jaccard
    on the hashes equals Jaccard on the strings unless two distinct shingles collide in 64 bits)."""
    import numpy as np
    import xxhash

    x = np.fromiter((xxhash.xxh64_intdigest(g) for g in grams), dtype=np.uint64, count=len(grams))
    return np.unique(x)


class Signer:
    """MinHash signatures cut into LSH bands, each band reduced to one 64-bit key."""

    def __init__(self, num_perm: int, seed: int, bands: int, rows: int):
        import numpy as np

        rng = np.random.default_rng(seed)
        # Multiply-shift hashing: (a*x + b) mod 2**64 with odd 64-bit a, keeping the top 32 bits.
        # (Small a and b below a Mersenne prime rarely wrap, which correlates the permutations and
        # cost recall; measured in benchmarks/data_prepare.py.)
        self.a = rng.integers(0, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
        self.bands, self.rows = bands, rows
        self.no_keys = array("Q", [0] * bands)

    def band_keys(self, hashes) -> array:
        import numpy as np
        import xxhash

        sig = ((hashes[:, None] * self.a[None, :] + self.b) >> np.uint64(32)).min(axis=0)  # uint64 arithmetic wraps
        # A band's rows hashed to 8 bytes (seeded by the band): a collision only adds a candidate,
        # which the exact check then rejects.
        return array("Q", (xxhash.xxh64_intdigest(sig[k * self.rows : (k + 1) * self.rows].tobytes(), seed=k)
                           for k in range(self.bands)))


def candidate_pairs(keys, has_set) -> Iterator[tuple[int, int]]:
    """Every pair (i, j), i < j, of records sharing a band key in some band, each pair once, in the
    order of the first band that joins them."""
    import numpy as np

    seen: set[tuple[int, int]] = set()
    rows = np.flatnonzero(has_set)
    for band in range(keys.shape[1]):
        col = keys[rows, band]
        order = np.argsort(col, kind="stable")  # stable: equal keys stay in input order
        sorted_keys = col[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(sorted_keys)]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            members = rows[order[s:e]].tolist()
            for pos, j in enumerate(members[1:], start=1):
                for i in members[:pos]:
                    if (i, j) not in seen:
                        seen.add((i, j))
                        yield i, j


class ShingleStore:
    """Each record's shingle hashes, appended to a temporary file; read back by index to verify a
    candidate pair. Memory: two 8-byte offsets per record."""

    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="tailor-shingles-")
        self.starts, self.lengths = array("q"), array("q")
        self._map = None

    def append(self, hashes) -> None:
        self.starts.append(self._file.tell() // 8)
        self.lengths.append(len(hashes))
        self._file.write(hashes.tobytes())

    def get(self, i: int):
        import numpy as np

        if self._map is None:
            self._file.flush()
            size = self._file.tell() // 8
            self._map = np.memmap(self._file, dtype=np.uint64, mode="r", shape=(size,)) if size else np.zeros(0, np.uint64)
        return self._map[self.starts[i] : self.starts[i] + self.lengths[i]]

    def jaccard(self, i: int, j: int) -> float:
        import numpy as np

        a, b = self.get(i), self.get(j)
        inter = int(np.intersect1d(a, b, assume_unique=True).size)
        union = len(a) + len(b) - inter
        return inter / union if union else 1.0

    def close(self) -> None:
        self._map = None
        self._file.close()


class NearDedup(Step):
    name = "near_dedup"

    class Params(StepParams):
        threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of word n-gram sets at which records are duplicates.")
        ngram: int = Field(5, ge=1, description="Words per shingle.")
        num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations; more means fewer missed pairs, slower.")
        seed: int = Field(1, description="Seed of the hash permutations.")

    def __init__(self, **params):
        super().__init__(**params)
        self.clusters: dict[str, list[str]] = {}  # kept id -> ids dropped as its near-duplicates
        self.pairs: list[tuple[str, str]] = []  # every verified pair at or above the threshold

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        """Two passes. The first parks each record in a spool and keeps only compact state: its sorted
        64-bit shingle hashes (on disk, in `ShingleStore`) and its band keys (8 bytes per band, in
        memory). Between the passes, the band keys give the candidate pairs, each verified with the
        exact Jaccard of the two hash sets, and a union-find joins the verified pairs. The second pass
        reads the spool back and keeps each cluster's earliest record. Clusters are decided on the
        whole input, as when the records were all in a list, so the survivors do not depend on order
        of arrival within the corpus, only on input order."""
        import numpy as np

        from tailorlm.data.steps.spool import Spool

        spool, shingles_store = Spool(), ShingleStore()
        kinds: dict[str, int] = {}
        kind_of, band_rows, has_set = array("b"), array("Q"), array("b")
        signer = Signer(self.p.num_perm, self.p.seed, *lsh_shape(self.p.threshold, self.p.num_perm))
        try:
            for record in records:
                spool.append(record)
                kind_of.append(kinds.setdefault(record.kind, len(kinds)))
                hashes = shingle_hashes(shingles(record.joined(), self.p.ngram))
                shingles_store.append(hashes)
                has_set.append(1 if len(hashes) else 0)
                band_rows.extend(signer.band_keys(hashes) if len(hashes) else signer.no_keys)
            n = len(spool)
            keys = np.frombuffer(band_rows, dtype=np.uint64).reshape(n, signer.bands) if n else None
            parent = array("q", range(n))

            def root(i: int) -> int:
                while parent[i] != i:
                    parent[i] = parent[parent[i]]
                    i = parent[i]
                return i

            verified: list[tuple[int, int]] = []
            checked = 0
            for i, j in candidate_pairs(keys, np.frombuffer(has_set, dtype=np.int8).astype(bool)) if n else ():
                checked += 1
                if kind_of[i] == kind_of[j] and shingles_store.jaccard(i, j) >= self.p.threshold:
                    verified.append((i, j))
                    ri, rj = root(i), root(j)
                    parent[max(ri, rj)] = min(ri, rj)  # the earliest record roots the cluster
            self.stats["candidate_pairs_checked"] = checked
            shingles_store.close()
            keepers = {root(i) for i in range(n) if root(i) != i}
            wanted = keepers | {k for pair in verified for k in pair}
            ids: dict[int, str] = {}
            for i, record in enumerate(spool):
                if i in wanted:
                    ids[i] = record.id
                keeper = root(i)
                if keeper == i:
                    yield record
                else:
                    record.meta["near_duplicate_of"] = ids[keeper]
                    self.clusters.setdefault(ids[keeper], []).append(record.id)
                    self.drop(record, "near_duplicate")
            self.pairs = [(ids[i], ids[j]) for i, j in verified]
        finally:
            spool.close()
            shingles_store.close()

    def summary(self) -> dict:
        out = super().summary()
        biggest = sorted(self.clusters.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:20]
        out["largest_clusters"] = [{"kept": k, "dropped": v} for k, v in biggest]
        return out


class LineDedup(Step):
    name = "line_dedup"

    class Params(StepParams):
        min_docs: int = Field(3, ge=2, description="A line found in at least this many documents is boilerplate.")
        min_chars: int = Field(10, ge=1, description="Shorter lines (blank lines, '---') are never counted as boilerplate.")

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        """Two passes: the first parks the records in a spool and keeps, per text record, the 64-bit
        hashes of its distinct long lines (8 bytes each); the lines found in `min_docs` documents or
        more are the boilerplate, which the second pass removes from the spooled records."""
        import numpy as np

        from tailorlm.data.steps.spool import Spool

        spool, hashes = Spool(), array("Q")
        try:
            for r in records:
                spool.append(r)
                if r.kind == "text":
                    hashes.extend({self._key(line) for line in r.content["text"].split("\n") if self._long(line)})
            values, counts = np.unique(np.frombuffer(hashes, dtype=np.uint64), return_counts=True)
            boiler = set(values[counts >= self.p.min_docs].tolist())
            del hashes, values, counts
            yield from self._strip(spool, boiler)
        finally:
            spool.close()

    def _long(self, line: str) -> bool:
        return len(line.strip()) >= self.p.min_chars

    @staticmethod
    def _key(line: str) -> int:
        import xxhash

        return xxhash.xxh64_intdigest(line.strip())

    def _strip(self, records: Iterable[Record], boiler: set[int]) -> Iterator[Record]:
        for r in records:
            if r.kind != "text" or not boiler:
                yield r
                continue
            lines = r.content["text"].split("\n")
            kept = [line for line in lines if not (self._long(line) and self._key(line) in boiler)]
            removed = len(lines) - len(kept)
            if not removed:
                yield r
                continue
            self.stats["lines_removed"] += removed
            text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
            if not text:
                self.drop(r, "only_boilerplate")
                continue
            yield Record(r.id, r.kind, {**r.content, "text": text}, r.meta)
