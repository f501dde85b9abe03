"""The state store: migrations, rows, aliases and concurrent writers, each on a real SQLite file and on
a real PostgreSQL server (tests/pg_fixtures.py starts one; its cases skip, saying why, where none is installed)."""

import sqlite3

import pytest

from tailorlm.store import Store, now
from tailorlm.store.migrations import MIGRATIONS
from tests.pg_fixtures import *  # noqa: F403

TABLES = {"dataset_versions", "runs", "run_metrics", "model_versions", "reports", "aliases", "alias_history",
          "traces", "feedback", "_migrations"}


def table_names(url: str) -> set[str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_create_every_table_once(store_url, tmp_path):
    store = Store(store_url)
    assert store.applied() == [name for name, _ in MIGRATIONS]
    again = Store(store_url)
    assert again.migrate() == []  # nothing left to apply
    assert again.migrate() == [] and again.applied() == store.applied()  # idempotent, however often
    assert TABLES <= table_names(store_url)
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_interrupted_migration_leaves_nothing_half_applied(store_url, monkeypatch):
    """A migration whose second statement fails leaves no trace of its first, so the next open retries it."""
    from tailorlm.errors import StateError

    bad = ("999_broken", ["CREATE TABLE half_done (id TEXT PRIMARY KEY)", "CREATE TABLE runs (id TEXT)"])
    monkeypatch.setattr("tailorlm.store.MIGRATIONS", [*MIGRATIONS, bad])

    with pytest.raises(StateError, match="runs"):
        Store(store_url)
    assert "half_done" not in table_names(store_url) and "_migrations" not in table_names(store_url)
    monkeypatch.setattr("tailorlm.store.MIGRATIONS", MIGRATIONS)
    assert Store(store_url).applied() == [name for name, _ in MIGRATIONS]


def test_reals_are_doubles_on_both(store_url):
    store = Store(store_url)
    store.insert("runs", id="r1", method="sft", status="running", config={}, output_dir="runs/r1", created_at=now())
    store.upsert_metric("r1", 1, "loss", 1.2345678901234567)
    assert store.select("run_metrics", run_id="r1")[0]["value"] == 1.2345678901234567


def exit_codes_of_six_at_once(target, arg, timeout: float) -> list[int]:
    """Run `target((arg, barrier))` in 6 forked processes that wait on one barrier, so they start the
    racy part at the same moment; their exit codes."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    procs = [ctx.Process(target=target, args=((arg, barrier),)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout)
    return [proc.exitcode for proc in procs]


def _open_store_at(args) -> list[str]:
    url, barrier = args
    barrier.wait()  # every process opens the new database at the same moment
    return Store(url).migrate()


def test_processes_opening_a_new_store_at_once_migrate_it_exactly_once(new_store_url):
    for _ in range(3):  # a race: give it several chances to show
        url = new_store_url()
        assert exit_codes_of_six_at_once(_open_store_at, url, timeout=60) == [0] * 6
        assert Store(url).applied() == [name for name, _ in MIGRATIONS]


def _write_a_lot(args) -> None:
    """One of several writers: its own runs and metrics, model versions of one shared name, moves of
    one shared alias."""
    (url, tag), barrier = args
    from tailorlm.train.registry import register
    from types import SimpleNamespace

    store = Store(url)
    project = SimpleNamespace(store=store)
    barrier.wait()
    for i in range(25):
        run = f"{tag}-{i}"
        store.insert("runs", id=run, method="sft", status="running", config={"i": i}, output_dir=f"runs/{run}",
                     created_at=now())
        store.upsert_metric(run, 1, "loss", float(i))
        store.upsert_metric(run, 1, "loss", float(i) + 0.5)  # logged again after a resume: replaced
        register(project, "shared", "sft", "base", run, None)
        store.set_alias("model", "shared", "production", run, reason=tag)


def test_processes_writing_at_once_lose_nothing(new_store_url):
    """Six processes insert, upsert, number model versions and move one alias at the same moment."""
    url = new_store_url()
    Store(url)
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    procs = [ctx.Process(target=_write_a_lot, args=(((url, f"w{k}"), barrier),)) for k in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0] * 6
    store = Store(url)
    assert len(store.select("runs")) == 150
    metrics = store.select("run_metrics")
    assert len(metrics) == 150 and {m["value"] % 1 for m in metrics} == {0.5}
    versions = sorted(r["version"] for r in store.select("model_versions", name="shared"))
    assert versions == list(range(1, 151))  # numbered without a gap or a repeat
    # Each alias move records the target it really replaced: the moves form one unbroken chain.
    moves = [h for h in store.select("alias_history") if h["alias"] == "production"]
    assert len(moves) == 150
    previous = [m["previous"] for m in moves]
    assert previous.count(None) == 1
    assert sorted(p for p in previous if p) == sorted(m["target"] for m in moves if m["target"] != store.get_alias(
        "model", "shared", "production"))
    latest = [h for h in store.select("alias_history") if h["alias"] == "latest"]
    assert {h["target"] for h in latest} == {f"shared:sft@v{v}" for v in range(1, 151)}


def _serve_traffic(args) -> None:
    """What `tailor serve` writes: a trace per answer, feedback on some."""
    root, barrier = args
    from tailorlm.project import Project
    from tailorlm.serve.traces import Traces, add_feedback

    project = Project.load(root)
    traces = Traces(project, redact=False)
    barrier.wait()
    for i in range(40):
        request = {"model": "p", "messages": [{"role": "user", "content": f"question {i}"}]}
        response = {"choices": [{"message": {"role": "assistant", "content": f"answer {i}"}}]}
        traces.record(f"chatcmpl-{i}", "p", request, response, 200, 0.01, 5, 3, endpoint="chat")
        if i % 2 == 0:
            add_feedback(project, f"chatcmpl-{i}", thumbs="down", correction=f"better answer {i}", redact=False)


def _loop_turns(args) -> None:
    """What `tailor loop` does around training: read the feedback, move production and roll it back."""
    root, barrier = args
    from tailorlm.loop.curate import collect
    from tailorlm.loop.run import promote, rollback
    from tailorlm.project import Project

    project = Project.load(root)
    barrier.wait()
    for i in range(20):
        collect(project)
        promote(project, f"p:sft@v{1 + i % 2}", reason="gate passed")
        if i % 5 == 4:
            rollback(project)


def test_the_server_and_the_loop_write_at_once(store_url, tmp_path):
    from tailorlm.loop.curate import collect
    from tailorlm.project import Project
    from tailorlm.train.registry import register

    root = tmp_path / "p"
    root.mkdir()
    (root / "tailor.yaml").write_text(f"name: p\ntask: {{description: Test.}}\nstore: {{url: '{store_url}'}}\n")
    project = Project.load(root)
    assert project.store.url == store_url
    for _ in range(2):
        register(project, "p", "sft", "base", None, None)
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=fn, args=((root, barrier),)) for fn in (_serve_traffic, _loop_turns)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    project = Project.load(root)
    assert len(project.store.select("traces")) == 40
    sft, prefs, counts = collect(project)
    assert counts["feedback"] == 40 and len(sft) == 20  # a correction and a thumbs-down on each of 20
    moves = [h for h in project.store.select("alias_history") if h["alias"] == "production"]
    assert len(moves) == 24  # 20 promotions and 4 rollbacks


def _probe_state(args) -> None:
    root, barrier = args
    from tailorlm.project import Project

    project = Project.load(root)
    barrier.wait()
    for _ in range(300):
        project.ensure_state()


def test_processes_checking_the_state_folder_at_once_do_not_trip_on_each_other(tmp_path):
    from tailorlm.project import Project

    root = tmp_path / "p"
    root.mkdir()
    (root / "tailor.yaml").write_text("name: p\ntask: {description: Test.}\n")
    Project.load(root)  # the config parses
    assert exit_codes_of_six_at_once(_probe_state, root, timeout=120) == [0] * 6
    assert not [p.name for p in (root / ".tailor").iterdir() if p.name.startswith(".write-test")]  # no probe left


def test_migration_names_are_numbered_in_order():
    names = [name for name, _ in MIGRATIONS]
    assert names == sorted(names)
    assert all(name[:3].isdigit() for name in names)


def test_rows_round_trip_and_json_columns_are_encoded(store_url):
    store = Store(store_url)
    store.insert("runs", id="r1", method="sft", status="running", dataset_version="support@abc123",
                 config={"lr": 2e-4}, output_dir="runs/r1", created_at=now())
    store.insert("run_metrics", run_id="r1", step=1, name="loss", value=2.5)
    [run] = store.select("runs", id="r1")
    assert run["config"] == '{"lr": 0.0002}'
    assert store.select("run_metrics", run_id="r1")[0]["value"] == 2.5


def test_foreign_keys_are_enforced(store_url):
    import sqlalchemy

    store = Store(store_url)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        store.insert("feedback", id="f1", trace_id="no-such-trace", kind="thumbs", value="up", created_at=now())


def test_alias_moves_are_recorded(store_url):
    store = Store(store_url)
    assert store.set_alias("model", "support", "production", "support:sft@v1") is None
    assert store.set_alias("model", "support", "production", "support:sft@v2", reason="promoted") == "support:sft@v1"
    assert store.get_alias("model", "support", "production") == "support:sft@v2"
    history = store.select("alias_history", order_by="at")
    assert [(h["target"], h["previous"]) for h in history] == [("support:sft@v1", None), ("support:sft@v2", "support:sft@v1")]
