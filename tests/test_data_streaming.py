"""`tailor data prepare` streams: it never holds the corpus, and batching does not change the version.

The first test counts the live `Record` objects while a version is written; before streaming,
prepare listed every record (and near and line dedup listed them again), so the count reached the
corpus size. The second writes the same source in batches of 7 rows and in one batch.
"""

import gc
import json
import random

import pyarrow.parquet as pq
import pytest

from tailorlm.data import writer
from tailorlm.data.pipeline import prepare
from tailorlm.data.record import Record
from tailorlm.data.versions import load_records
from tailorlm.project import init_project

N_DOCS = 1200
STEPS = "  steps:\n    - normalize: {}\n    - exact_dedup: {}\n    - near_dedup: {}\n    - line_dedup: {}\n"


def _project(root, n_docs: int = N_DOCS):
    """A text source of distinct documents with a shared footer, exact copies and near copies."""
    project = init_project(root, name="stream")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    rows = []
    for i in range(n_docs):
        if i % 50 == 49:
            text = rows[i - 7]["text"]  # an exact copy
        elif i % 50 == 48:
            text = rows[i - 3]["text"].replace("\n", " extra\n", 1)  # a near copy
        else:
            text = " ".join(rng.choices(words, k=60)) + "\nAll rights reserved by the streaming test."
        rows.append({"id": f"d{i}", "text": text})
    (root / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = (root / "tailor.yaml").read_text()
    cfg = cfg.replace("sources: []", "sources:\n  - {name: docs, path: docs.jsonl, kind: text}")
    (root / "tailor.yaml").write_text(cfg + "data:\n" + STEPS)
    return type(project).load(root)


def _live_records() -> int:
    gc.collect()  # only reachable Records count: garbage awaiting collection is not held
    return sum(type(o) is Record for o in gc.get_objects())  # type(), not isinstance: that reads __class__, and torch warns on a deprecated alias it finds


def test_prepare_holds_a_few_records_at_a_time_not_the_corpus(tmp_path, monkeypatch):
    """Live Records are counted every 100 records read and every 100 written: a step that lists
    its input shows while reading, a list of survivors while writing."""
    from tailorlm.data import pipeline

    project = _project(tmp_path / "p")
    before = _live_records()  # Records that earlier tests in this process still hold
    read, written, live = [0], [0], []
    read_file, add = pipeline.read_file, writer.VersionWriter.add

    def counting_read_file(*args, **kwargs):  # the real reader; this only looks
        for item in read_file(*args, **kwargs):
            read[0] += 1
            if read[0] % 100 == 0:
                live.append(_live_records() - before)
            yield item

    def counting_add(self, record, split=None):  # the real add; this only looks
        written[0] += 1
        if written[0] % 100 == 0:
            live.append(_live_records() - before)
        return add(self, record, split)

    monkeypatch.setattr(pipeline, "read_file", counting_read_file)
    monkeypatch.setattr(writer.VersionWriter, "add", counting_add)
    [manifest] = prepare(project)
    steps = {s["step"]: s for s in manifest["steps"]}
    assert steps["exact_dedup"]["dropped"]["duplicate"] >= 20
    assert steps["near_dedup"]["dropped"]["near_duplicate"] >= 20
    assert steps["line_dedup"]["stats"]["lines_removed"] >= 1000  # the footer
    assert manifest["accounting"]["holds"] and written[0] == manifest["accounting"]["kept"] > 1000
    assert read[0] == N_DOCS and len(live) >= 20
    assert max(live) < 20, f"live Records while writing: {live} (the corpus is {N_DOCS})"


def test_batched_writes_give_the_same_version_as_one_batch(tmp_path, monkeypatch):
    [one] = prepare(_project(tmp_path / "one"))
    monkeypatch.setattr(writer, "BATCH_SIZE", 7)
    small = _project(tmp_path / "small")
    [batched] = prepare(small)
    assert batched["id"] == one["id"] and batched["splits"] == one["splits"]
    n = batched["splits"]["data"]
    assert pq.ParquetFile(small.root / batched["path"] / "data.parquet").metadata.num_row_groups == -(-n // 7)
    a = [(r.id, r.content, r.meta.get("near_duplicate_of")) for r in load_records(small, batched)]
    b = [(r.id, r.content, r.meta.get("near_duplicate_of")) for r in load_records(_reload(tmp_path / "one"), one)]
    assert a == b
    quarantine = (small.root / batched["path"] / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantine) == batched["accounting"]["dropped_by_steps"]


def _reload(root):
    from tailorlm.project import Project

    return Project.load(root)


@pytest.mark.parametrize("records", [[], [Record("a", "text", {"text": "x"}, {"split": "train"})]])
def test_a_failed_write_leaves_no_folder_behind(tmp_path, records):
    project = init_project(tmp_path / "p", name="fail")
    with pytest.raises(RuntimeError):
        with writer.VersionWriter(project, "ds") as out:
            for r in records:
                out.add(r)
            raise RuntimeError("a step failed")
    assert list((project.artifacts("datasets") / "ds").iterdir()) == []


def test_readers_stream_jsonl_csv_and_parquet_to_the_same_records(tmp_path):
    """5,000 rows: more than one Parquet batch (4,096); a duplicate id late in the file is still
    caught, and a CSV with a bad byte at its end is rejected whole, with the offset."""
    import csv

    import pyarrow as pa

    from tailorlm.data.readers.records import Rejected, read_file

    rows = [{"id": f"r{i}", "text": f"row {i} text"} for i in range(5000)] + [{"id": "r7", "text": "again"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "a.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["id", "text"])
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    got = {}
    for ext in ("jsonl", "csv", "parquet"):
        items = list(read_file(tmp_path / f"a.{ext}", f"a.{ext}", "s", kind="text"))
        kept = [(r.id, r.content["text"]) for r in items if isinstance(r, Record)]
        [dup] = [r for r in items if isinstance(r, Rejected)]
        assert (dup.field, dup.reason) == ("id", "duplicate id 'r7'")
        got[ext] = kept
    assert got["jsonl"] == got["csv"] == got["parquet"] and len(got["csv"]) == 5000
    bad = (tmp_path / "a.csv").read_bytes() + b"r9999,caf\xe9\n"
    (tmp_path / "bad.csv").write_bytes(bad)
    [rejected] = list(read_file(tmp_path / "bad.csv", "bad.csv", "s", kind="text"))
    offset = bad.index(b"\xe9")
    assert rejected.reason == f"not valid UTF-8 (byte offset {offset})"


def test_sources_of_two_kinds_stop_the_streamed_prepare_and_leave_nothing(tmp_path):
    """The kind is taken from the first record and checked on every later one, so a chat source after
    a text source stops the run (as when all records were listed first) and no version is written."""
    from tailorlm.errors import TailorError

    project = init_project(tmp_path / "p", name="kinds")
    root = project.root
    (root / "a.jsonl").write_text(json.dumps({"id": "t1", "text": "a document"}) + "\n")
    chat = {"id": "c1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (root / "b.jsonl").write_text(json.dumps(chat) + "\n")
    cfg = (root / "tailor.yaml").read_text().replace(
        "sources: []", "sources:\n  - {name: a, path: a.jsonl}\n  - {name: b, path: b.jsonl}")
    (root / "tailor.yaml").write_text(cfg + "data:\n  steps:\n    - normalize: {}\n")
    with pytest.raises(TailorError, match=r"would mix kinds \['chat', 'text'\]"):
        prepare(_reload(root), ["a", "b"], name="both")
    assert not any((project.artifacts("datasets") / "both").iterdir())
