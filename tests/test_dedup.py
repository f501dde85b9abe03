"""Exact, near and line dedup: the exact survivors, checked against brute-force Jaccard."""

import itertools
import json
from pathlib import Path

from tailorlm.data.record import Record
from tailorlm.data.steps.dedup import ExactDedup, LineDedup, NearDedup, jaccard, lsh_shape, shingles

EXAMPLE = Path(__file__).parent.parent / "src/tailorlm/examples/support"


def _tickets() -> list[Record]:
    out = []
    for line in (EXAMPLE / "tickets.jsonl").read_text().splitlines():
        obj = json.loads(line)
        out.append(Record(obj["id"], "chat", {"messages": obj["messages"]}, {"label": obj["label"]}))
    return out


def _run(step, records):
    dropped = []
    step.sink = lambda r, name, reason: dropped.append((r.id, reason))
    kept = list(step(records))
    assert len(kept) + len(dropped) == len(records)
    return kept, dropped


def test_exact_dedup_keeps_the_first_of_each_planted_pair():
    planted = json.loads((EXAMPLE / "planted.json").read_text())
    kept, dropped = _run(ExactDedup(), _tickets())
    assert len(dropped) == 15
    firsts = {min(a, b) for a, b in _pairs(planted, "exact")}
    seconds = {max(a, b) for a, b in _pairs(planted, "exact")}
    assert {i for i, _ in dropped} == seconds
    assert firsts <= {r.id for r in kept}


def _pairs(planted: dict, key: str) -> list[tuple[str, str]]:
    section = next(v for k, v in planted["tickets"].items() if key in k)
    return [tuple(p) if isinstance(p, list) else (p["original"], p["copy"]) for p in section]


def test_exact_dedup_ignores_case_and_whitespace_but_not_words():
    a = Record("a", "text", {"text": "Hello   World"})
    b = Record("b", "text", {"text": "hello world"})
    c = Record("c", "text", {"text": "hello there world"})
    kept, dropped = _run(ExactDedup(), [a, b, c])
    assert [r.id for r in kept] == ["a", "c"] and dropped == [("b", "duplicate")]


def test_near_dedup_finds_exactly_the_pairs_above_threshold():
    records = list(_run(ExactDedup(), _tickets())[0])
    step = NearDedup(threshold=0.8, ngram=5)
    kept, dropped = _run(step, records)
    sets = {r.id: shingles(r.joined(), 5) for r in records}
    truth = {(a.id, b.id) for a, b in itertools.combinations(records, 2) if jaccard(sets[a.id], sets[b.id]) >= 0.8}
    assert truth, "the example plants near-duplicates"
    assert set(step.pairs) == truth  # no false positives (verified exactly), no misses
    order = {r.id: i for i, r in enumerate(records)}
    assert {i for i, _ in dropped} == {max(p, key=order.get) for p in truth}
    assert all(reason == "near_duplicate" for _, reason in dropped)


def test_near_dedup_is_deterministic_and_threshold_matters():
    docs = [Record(str(i), "text", {"text": t}) for i, t in enumerate([
        "the quick brown fox jumps over the lazy dog near the river bank today",
        "the quick brown fox jumps over the lazy dog near the river bank today again",
        "a completely different sentence about invoices and billing cycles for teams",
    ])]
    j = jaccard(shingles(docs[0].joined(), 5), shingles(docs[1].joined(), 5))
    assert 0.8 <= j < 0.95
    assert [r.id for r in _run(NearDedup(threshold=0.8), docs)[0]] == ["0", "2"]
    assert [r.id for r in _run(NearDedup(threshold=0.95), docs)[0]] == ["0", "1", "2"]


def test_lsh_shape_leaves_margin_below_the_threshold():
    bands, rows = lsh_shape(0.8, 128)
    assert bands * rows <= 128
    assert (1 / bands) ** (1 / rows) <= 0.65
    # Probability that a pair at exactly the threshold becomes a candidate.
    assert 1 - (1 - 0.8**rows) ** bands > 0.99


def test_line_dedup_removes_footer_boilerplate_from_docs():
    footer = "Copyright 2026 Keelbox Systems. All rights reserved."
    docs = [Record(str(i), "text", {"text": f"Document {i} body text here.\n{footer}"}) for i in range(4)]
    docs.append(Record("only", "text", {"text": footer}))
    step = LineDedup(min_docs=3)
    kept, dropped = _run(step, docs)
    assert [r.content["text"] for r in kept] == [f"Document {i} body text here." for i in range(4)]
    assert dropped == [("only", "only_boilerplate")]
    assert step.stats["lines_removed"] == 5
