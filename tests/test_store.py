"""The state store: migrations, WAL mode, rows and aliases, on a real SQLite file."""

import sqlite3

import pytest

from tailorlm.store import Store, now
from tailorlm.store.migrations import MIGRATIONS

TABLES = {"dataset_versions", "runs", "run_metrics", "model_versions", "reports", "aliases", "alias_history",
          "traces", "feedback", "_migrations"}


def test_migrations_create_every_table_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'tailor.db'}"
    store = Store(url)
    assert store.applied() == [name for name, _ in MIGRATIONS]
    again = Store(url)
    assert again.migrate() == []  # nothing left to apply
    with sqlite3.connect(tmp_path / "tailor.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert TABLES <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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


def test_processes_opening_a_new_store_at_once_migrate_it_exactly_once(tmp_path):
    for attempt in range(3):  # a race: give it several chances to show
        url = f"sqlite:///{tmp_path / f'tailor{attempt}.db'}"
        assert exit_codes_of_six_at_once(_open_store_at, url, timeout=60) == [0] * 6
        assert Store(url).applied() == [name for name, _ in MIGRATIONS]


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


def test_rows_round_trip_and_json_columns_are_encoded(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'tailor.db'}")
    store.insert("runs", id="r1", method="sft", status="running", dataset_version="support@abc123",
                 config={"lr": 2e-4}, output_dir="runs/r1", created_at=now())
    store.insert("run_metrics", run_id="r1", step=1, name="loss", value=2.5)
    [run] = store.select("runs", id="r1")
    assert run["config"] == '{"lr": 0.0002}'
    assert store.select("run_metrics", run_id="r1")[0]["value"] == 2.5


def test_foreign_keys_are_enforced(tmp_path):
    import sqlalchemy

    store = Store(f"sqlite:///{tmp_path / 'tailor.db'}")
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        store.insert("feedback", id="f1", trace_id="no-such-trace", kind="thumbs", value="up", created_at=now())


def test_alias_moves_are_recorded(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'tailor.db'}")
    assert store.set_alias("model", "support", "production", "support:sft@v1") is None
    assert store.set_alias("model", "support", "production", "support:sft@v2", reason="promoted") == "support:sft@v1"
    assert store.get_alias("model", "support", "production") == "support:sft@v2"
    history = store.select("alias_history", order_by="at")
    assert [(h["target"], h["previous"]) for h in history] == [("support:sft@v1", None), ("support:sft@v2", "support:sft@v1")]
