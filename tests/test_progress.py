"""The one progress protocol: prepare (in process and on datatrove's local executor), the RAG index build,
eval and rag eval call `on_progress(task, done, total, **info)` themselves, on a real tiny project; the
older shapes their callers not yet moved still pass keep working."""

import json

import pytest

from tailorlm.data import pipeline
from tailorlm.data.executors import prepare_with_executor
from tailorlm.eval.runner import evaluate
from tailorlm.eval.suite import load_suite
from tailorlm.models.pool import ModelPool
from tailorlm.progress import display
from tailorlm.project import Project
from tailorlm.rag import evaluate as rag_eval
from tailorlm.rag.documents import index_documents
from tailorlm.rag.index import RagIndex
from tailorlm.rungs.build import rung_for_model
from tests.helpers import write_shop

LABELS = ["billing", "login", "bug"]
DOCS = {"billing.md": "# Billing\n\nRefunds take five days. Invoices are sent monthly, by mail.\n\n"
                      "## Cards\n\nA declined card is retried after three days.\n",
        "login.md": "# Login\n\nReset passwords from the sign-in page. SSO uses SAML.\n"}


class Recorder:
    """One callback of the protocol's shape for every stage: what each task reported, in order."""

    def __init__(self):
        self.seen: list[tuple[str, int, int | None, dict]] = []

    def __call__(self, task: str, done: int, total: int | None, **info) -> None:
        assert isinstance(task, str) and isinstance(done, int) and (total is None or isinstance(total, int))
        self.seen.append((task, done, total, info))

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for t, *_ in self.seen))

    def reports(self, task: str) -> list[tuple[int, int | None]]:
        """`task`'s (done, total) reports, checked: done never goes back, never passes a known total,
        and the last report is complete (done == total)."""
        reports = [(d, t) for name, d, t, _ in self.seen if name == task]
        assert reports, f"{task!r} never reported; tasks: {self.tasks()}"
        done = [d for d, _ in reports]
        assert done == sorted(done), f"{task}: done went back: {done}"
        assert all(t is None or d <= t for d, t in reports), reports
        assert reports[-1][0] == reports[-1][1], f"{task}: the last report is not complete: {reports[-1]}"
        return reports


@pytest.fixture
def shop(tmp_path, tiny_model_dir):
    tickets = [{"id": f"t{i}", "messages": [{"role": "user", "content": f"ticket {i}: my {LABELS[i % 3]} problem"},
                                            {"role": "assistant", "content": LABELS[i % 3]}]} for i in range(30)]
    golden = [{"id": f"g{i}", "input": [{"role": "user", "content": f"question {i} on {LABELS[i % 3]}"}],
               "reference": LABELS[i % 3], "labels": [LABELS[i % 3]]} for i in range(5)]
    root = write_shop(tmp_path / "shop", tiny_model_dir, tickets, golden, "  - {kind: zero_shot}\n", docs=DOCS,
                      extra="rag: {chunk_tokens: 64}\n")
    (root / "retrieval.jsonl").write_text(
        json.dumps({"question": "How long do refunds take?", "sources": ["docs/billing.md"]}) + "\n"
        + json.dumps({"question": "How do I reset my password?", "sources": ["docs/login.md"]}) + "\n")
    return Project.load(root)


@pytest.fixture(scope="module")
def embedder():
    from tailorlm.config import EmbedderConfig
    from tailorlm.models import get_embedder

    return get_embedder(EmbedderConfig())


def test_prepare_index_eval_and_rag_eval_report_through_one_callback(shop, embedder, monkeypatch):
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY", 10)  # 30 tickets: a report every ten, not every 500
    progress = Recorder()

    manifests = {m["id"].split("@")[0]: m for m in pipeline.prepare(shop, on_progress=progress)}
    assert set(manifests) == {"tickets", "docs"}
    tickets = progress.reports("prepare tickets")
    assert tickets[0][1] is None and tickets[-1] == (30, 30) == (manifests["tickets"]["accounting"]["read"],) * 2
    assert len(tickets) >= 4  # the start, every ten records read while the total is unknown, the end
    assert progress.reports("prepare docs")[-1] == (2, 2)

    docs, _ = index_documents(shop)
    built = RagIndex.for_project(shop, embedder=embedder).build(docs, on_progress=progress)
    chunks = progress.reports("embedding chunks")
    assert built["chunks_added"] > 0 and chunks[-1] == (built["chunks_added"],) * 2
    assert all("chunks_per_s" in info for t, *_, info in progress.seen if t == "embedding chunks")

    rung = rung_for_model(shop, "shop:zero_shot", ModelPool(shop))
    report = evaluate(shop, rung, load_suite(shop), ["accuracy"], subject="shop:zero_shot", batch_size=2,
                      on_progress=progress)
    assert progress.reports("shop:zero_shot") == [(2, 5), (4, 5), (5, 5)]  # one report a batch
    assert report["metrics"]["accuracy"]["n"] == 5

    settings = rag_eval.parse_settings(["hybrid"], [32], ["none"])  # not rag.chunk_tokens: its own table is built
    retrieval = rag_eval.evaluate(shop, "retrieval.jsonl", settings, k=2, embedder=embedder, on_progress=progress)
    assert retrieval["n"] == 2
    indexing = progress.reports("indexing with chunk_tokens=32")
    assert indexing[0] == (0, None) and indexing[-1][0] > 0
    assert progress.reports(f"searching: {settings[0]}") == [(0, 2), (1, 2), (2, 2)]

    assert progress.tasks() == ["prepare tickets", "prepare docs", "embedding chunks", "shop:zero_shot",
                                "indexing with chunk_tokens=32", f"searching: {settings[0]}"]
    with display(False) as (on_progress, _console):  # the CLI's display takes every report as it came
        for task, done, total, info in progress.seen:
            on_progress(task, done, total, **info)


def test_the_local_executor_reports_reads_and_tasks(shop):
    progress = Recorder()
    [result] = prepare_with_executor(shop, ["tickets"], executor="local", workers=1, tasks=2,
                                     on_progress=progress)["datasets"]
    assert progress.reports("prepare tickets")[-1] == (30, 30) == (result["accounting"]["read"],) * 2
    assert progress.reports("prepare tickets: tasks") == [(0, 2), (2, 2)]


def test_callers_of_the_old_shapes_still_work(shop, embedder):
    """ladder, loop and api.py still pass eval a `(done, total)` callback, api.index passes the build an
    `(embedded, chunks_so_far, chunking_done)` one, and `tailor rag eval` / rag tune a `(message)` one."""
    docs, _ = index_documents(shop)
    built = []
    result = RagIndex.for_project(shop, embedder=embedder).build(
        docs, on_progress=lambda embedded, made, finished: built.append((embedded, made, finished)))
    assert built[-1] == (result["chunks_added"], result["chunks_added"], True)
    assert not any(finished for *_, finished in built[:-1])

    pairs = []
    rung = rung_for_model(shop, "shop:zero_shot", ModelPool(shop))
    evaluate(shop, rung, load_suite(shop), ["accuracy"], batch_size=4, on_progress=lambda done, total: pairs.append((done, total)))
    assert pairs == [(4, 5), (5, 5)]

    said = []
    settings = rag_eval.parse_settings(["vector", "fts"], [40], ["none"])
    rag_eval.evaluate(shop, "retrieval.jsonl", settings, k=2, embedder=embedder, on_progress=said.append)
    assert said == ["indexing with chunk_tokens=40", f"searching: {settings[0]}", f"searching: {settings[1]}"]
