"""Deduplication steps: exact, near (MinHash LSH) and line-level boilerplate.

- `exact_dedup` drops records whose normalised content hashes equal an earlier record's.
- `near_dedup` drops records whose word n-gram sets overlap an earlier record's with Jaccard at
  or above the threshold. MinHash LSH finds candidate pairs; each candidate is then checked with
  the exact Jaccard of the two n-gram sets, so nothing below the threshold is ever dropped.
  The first record of each cluster (in input order) is kept: deterministic for the same input.
- `line_dedup` removes lines (headers, footers, signatures) repeated across many documents.
"""

import hashlib
import re
from collections import Counter, defaultdict
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
        self.seen: dict[str, str] = {}

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        digest = hashlib.sha256(f"{record.kind}\x00{_canonical(record)}".encode()).hexdigest()
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
        import numpy as np
        import xxhash

        records = list(records)
        rng = np.random.default_rng(self.p.seed)
        # Multiply-shift hashing: (a*x + b) mod 2**64 with odd 64-bit a, keeping the top 32 bits.
        # (Small a and b below a Mersenne prime rarely wrap, which correlates the permutations and
        # cost recall; measured in benchmarks/data_prepare.py.)
        a = rng.integers(0, 2**63, self.p.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        b = rng.integers(0, 2**63, self.p.num_perm, dtype=np.uint64)
        bands, rows = lsh_shape(self.p.threshold, self.p.num_perm)
        sets = [shingles(r.joined(), self.p.ngram) for r in records]
        buckets: dict[tuple, list[int]] = defaultdict(list)
        for i, s in enumerate(sets):
            if not s:
                continue
            x = np.fromiter((xxhash.xxh64_intdigest(g) for g in s), dtype=np.uint64, count=len(s))
            sig = ((x[:, None] * a[None, :] + b) >> np.uint64(32)).min(axis=0)  # uint64 arithmetic wraps
            for band in range(bands):
                buckets[(band, sig[band * rows : (band + 1) * rows].tobytes())].append(i)

        parent = list(range(len(records)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        checked: set[tuple[int, int]] = set()
        for members in buckets.values():
            for pos, j in enumerate(members[1:], start=1):
                for i in members[:pos]:
                    if (i, j) in checked:
                        continue
                    checked.add((i, j))
                    if records[i].kind == records[j].kind and jaccard(sets[i], sets[j]) >= self.p.threshold:
                        self.pairs.append((records[i].id, records[j].id))
                        ri, rj = root(i), root(j)
                        parent[max(ri, rj)] = min(ri, rj)  # the earliest record roots the cluster
        self.stats["candidate_pairs_checked"] = len(checked)
        for i, record in enumerate(records):
            keeper = root(i)
            if keeper == i:
                yield record
            else:
                record.meta["near_duplicate_of"] = records[keeper].id
                self.clusters.setdefault(records[keeper].id, []).append(record.id)
                self.drop(record, "near_duplicate")

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
        records = list(records)
        counts: Counter[str] = Counter()
        for r in records:
            if r.kind == "text":
                counts.update({line.strip() for line in r.content["text"].split("\n") if len(line.strip()) >= self.p.min_chars})
        boiler = {line for line, n in counts.items() if n >= self.p.min_docs}
        for r in records:
            if r.kind != "text" or not boiler:
                yield r
                continue
            lines = r.content["text"].split("\n")
            kept = [line for line in lines if line.strip() not in boiler]
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
