"""The baseline of `data_prepare.py`: the same steps built from datatrove's stock blocks.

Built the way datatrove's own examples (`examples/minhash_deduplication.py`, `examples/fineweb.py`,
`examples/sentence_deduplication.py`) build them: one `LocalPipelineExecutor` per stage, each
writing its signatures and duplicate lists to a folder that the next stage reads. `tasks=1,
workers=1` keeps every stage in this process, like Tailor; the MinHash bucket stage must run one
task per bucket, so it has `tasks=num_buckets, workers=1` (sequential). The documents come from
memory through a one-line reader (a closure, so the executor does not deep-copy them per task):
no JSONL is read or written, which favours the baseline over a run that reads files.

Needs `pip install datatrove spacy`: datatrove's English word tokenizer is spaCy's (blank `en`,
no model download).

    kept, stage_seconds = run_datatrove(docs, workdir)
"""

import contextlib
import json
import struct
import time
from pathlib import Path

# Stock defaults, written out: 5-grams, 14 bands of 8 rows (FineWeb's setting). The S-curve's
# midpoint is (1/14)**(1/8) ~ 0.72; a pair at Jaccard 0.8 shares a band with probability 0.92.
# There is no exact check afterwards: every band collision is a duplicate.
MINHASH = dict(n_grams=5, num_buckets=14, hashes_per_bucket=8)


def documents(docs: list[tuple[str, str]]):
    """Fresh datatrove Documents: steps rewrite `doc.text` in place, so each run gets its own."""
    from datatrove.data import Document

    return [Document(text=text, id=doc_id, metadata={"source": "bench"}) for doc_id, text in docs]


def _reader(docs):
    def read(data, rank: int = 0, world_size: int = 1):
        yield from docs
    return read


def _tee(out: list):
    """A pass-through step that keeps what flows by: the input of the next filtering stage."""
    def tee(data, rank: int = 0, world_size: int = 1):
        for doc in data:
            out.append(doc)
            yield doc
    return tee


def canonical_text(doc) -> str:
    """Exact dedup's key: the same casefolded, whitespace-collapsed text Tailor hashes.
    datatrove reads the return annotation to pick its hash function."""
    return " ".join(doc.text.casefold().split())


def run_datatrove(docs: list, workdir: Path, line_dedup: bool = True) -> tuple[list, dict[str, float]]:
    """Exact dedup, MinHash dedup, line dedup, Gopher repetition and quality, FineWeb quality,
    PII, over `docs` (datatrove Documents). Returns the kept documents and seconds per stage."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature, ExactFindDedups,
                                          MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                          MinhashDedupFilter, MinhashDedupSignature, SentDedupConfig,
                                          SentenceDedupFilter, SentenceDedupSignature, SentenceFindDedups)
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.formatters import PIIFormatter

    exact = ExactDedupConfig(content_getter=canonical_text)
    minhash = MinhashConfig(**MINHASH)
    # Line-level: split on "\n", spans of one line. Its own length rules are off (0) because
    # Tailor's line_dedup has none; the quality filters judge length on both sides.
    lines = SentDedupConfig(n_sentences=1, split_sentences=False, min_doc_words=0, min_num_sentences=0)
    after_exact: list = []
    after_minhash: list = []
    kept: list = []
    w = str(workdir)
    stages = [
        ("exact_signature", [_reader(docs), ExactDedupSignature(f"{w}/exact/sigs", config=exact)], 1),
        ("exact_find", [ExactFindDedups(f"{w}/exact/sigs", f"{w}/exact/dups", config=exact)], 1),
        ("exact_filter+minhash_signature", [_reader(docs), ExactDedupFilter(f"{w}/exact/dups", config=exact),
                                            _tee(after_exact), MinhashDedupSignature(f"{w}/mh/sigs", config=minhash)], 1),
        ("minhash_buckets", [MinhashDedupBuckets(f"{w}/mh/sigs", f"{w}/mh/buckets", config=minhash)], minhash.num_buckets),
        ("minhash_cluster", [MinhashDedupCluster(f"{w}/mh/buckets", f"{w}/mh/remove", config=minhash)], 1),
    ]
    tail = [GopherRepetitionFilter(), GopherQualityFilter(), FineWebQualityFilter(), PIIFormatter(), _tee(kept)]
    if line_dedup:
        stages += [
            ("minhash_filter+line_signature", [_reader(after_exact), MinhashDedupFilter(f"{w}/mh/remove"),
                                               _tee(after_minhash), SentenceDedupSignature(f"{w}/line/sigs", config=lines)], 1),
            ("line_find", [SentenceFindDedups(f"{w}/line/sigs", f"{w}/line/dups", config=lines)], 1),
            ("line_filter+quality+pii", [_reader(after_minhash), SentenceDedupFilter(f"{w}/line/dups", config=lines), *tail], 1),
        ]
    else:
        stages.append(("minhash_filter+quality+pii", [_reader(after_exact), MinhashDedupFilter(f"{w}/mh/remove"), *tail], 1))

    seconds: dict[str, float] = {}
    # datatrove logs every task to stderr at INFO, with progress bars; a file takes them quietly.
    with open(workdir / "datatrove_stderr.log", "w") as log, contextlib.redirect_stderr(log):
        for name, pipeline, tasks in stages:
            start = time.perf_counter()
            LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=f"{w}/logs/{name}").run()
            seconds[name] = time.perf_counter() - start
    return kept, seconds


def dropped_by_step(workdir: Path) -> list[dict]:
    """What each datatrove step dropped, by reason, read from the stats its executor saved."""
    out = []
    for name in sorted((workdir / "logs").iterdir(), key=lambda p: p.stat().st_mtime):
        for step in json.loads((name / "stats.json").read_text()):
            stats = step.get("stats", {})
            if "total" in stats and ("forwarded" in stats or "removed_sentences" in stats):
                reasons = {k.removeprefix("dropped_"): _count(v) for k, v in stats.items() if k.startswith("dropped_")}
                row = {"step": step["name"].split(": ")[-1].split(" ", 1)[-1], "total": _count(stats["total"]),
                       "dropped": _count(stats.get("dropped", 0)), "reasons": reasons}
                if "removed_sentences" in stats:  # line dedup: lines here, as split_sentences is off
                    row["lines_removed"] = _count(stats["removed_sentences"])
                out.append(row)
    return out


def _count(value) -> int:
    return value["total"] if isinstance(value, dict) else value  # counters are saved bare or as metrics


def minhash_duplicates(docs: list, workdir: Path) -> tuple[set[tuple[int, int]], list[set[int]]]:
    """Run datatrove's MinHash signature, bucket and cluster stages on `docs` (Documents) and
    read back what it found, by document index: the pairs that share a band (a bucket file
    chains equal signatures a-b, b-c, so each chain is expanded to all its pairs), and the
    clusters its union-find makes of them."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupBuckets, MinhashDedupSignature

    minhash = MinhashConfig(**MINHASH)
    w = str(workdir)
    with open(workdir / "datatrove_stderr.log", "w") as log, contextlib.redirect_stderr(log):
        LocalPipelineExecutor([_reader(docs), MinhashDedupSignature(f"{w}/sigs", config=minhash)], tasks=1, workers=1,
                              logging_dir=f"{w}/logs/sig").run()
        LocalPipelineExecutor([MinhashDedupBuckets(f"{w}/sigs", f"{w}/buckets", config=minhash)],
                              tasks=minhash.num_buckets, workers=1, logging_dir=f"{w}/logs/buckets").run()
    pairs: set[tuple[int, int]] = set()
    everything: list[tuple[int, int]] = []
    for path in sorted((workdir / "buckets").glob("*.dups")):
        raw = path.read_bytes()
        chain = [(d1, d2) for _, d1, _, d2 in struct.iter_unpack("<4I", raw)]
        everything += chain
        for group in _components(chain):
            members = sorted(group)
            pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1:])
    return pairs, _components(everything)


def _components(edges) -> list[set[int]]:
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[root(a)] = root(b)
    groups: dict[int, set[int]] = {}
    for x in list(parent):
        groups.setdefault(root(x), set()).add(x)
    return list(groups.values())
