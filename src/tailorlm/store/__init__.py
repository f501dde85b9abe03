"""The state store: every dataset version, run, model version, report, trace, feedback and alias.

SQLite in `.tailor/tailor.db` (WAL mode, so the server and the CLI can share it) through
SQLAlchemy Core. A team points `store.url` at PostgreSQL (`postgresql://user@host/db`, the
`postgres` extra) and runs the same code: migrations take an advisory lock, so processes opening
one database at once apply them once. tests/test_store.py runs on both.

>>> store = Store("sqlite:///.tailor/tailor.db")  # doctest: +SKIP
>>> store.insert("aliases", scope="model", name="support", alias="production", target="support:sft@v1", updated_at=now())  # doctest: +SKIP
"""

import contextlib
import datetime as dt
import json
import re
import uuid

from tailorlm.errors import StateError
from tailorlm.store.migrations import MIGRATIONS


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class Store:
    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        self._sa = sa
        try:
            self.engine = sa.create_engine(_driver_url(url), future=True, **_engine_options(url))
        except ModuleNotFoundError as e:  # the URL's driver
            raise StateError(f"the state database {url!r} needs {e.name}: pip install 'tailorlm[postgres]'"
                             if url.startswith("postgres") else f"cannot open the state database {url!r}: {e}") from e
        except Exception as e:  # a malformed URL
            raise StateError(f"cannot open the state database {url!r}: {e}") from e
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.migrate()

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, in order; returns their names."""
        try:
            with self.serialised(MIGRATION_LOCK) as conn:
                return self._apply_migrations(conn)
        except self._sa.exc.DBAPIError as e:  # unreachable server, locked file, a migration that fails
            raise StateError(f"cannot use the state database {self.url}: {e.orig}") from e

    @contextlib.contextmanager
    def serialised(self, key: int):
        """A transaction that no other `serialised(key)` transaction on this database interleaves with,
        from any process: for reads followed by writes that depend on them.

        Several processes may open a new project's store at once (the data executors' workers do), or move
        one alias at once (the server and the loop). SQLite: the write lock, taken first (BEGIN IMMEDIATE;
        the Python driver would otherwise read outside any transaction). PostgreSQL: a transaction-scoped
        advisory lock on `key` (two sessions creating one table both pass IF NOT EXISTS, and one then fails).
        """
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as raw:
                conn = raw.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
            return
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")
            yield conn

    def _apply_migrations(self, conn) -> list[str]:
        done = []
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        applied = {r[0] for r in conn.exec_driver_sql("SELECT name FROM _migrations")}
        for name, statements in MIGRATIONS:
            if name in applied:
                continue
            for sql in statements:
                conn.exec_driver_sql(self._dialect_sql(sql))
            conn.execute(self._sa.text("INSERT INTO _migrations (name, applied_at) VALUES (:n, :t)"), {"n": name, "t": now()})
            done.append(name)
        return done

    def _dialect_sql(self, sql: str) -> str:
        if self.engine.dialect.name == "postgresql":
            return re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)  # REAL is a 4-byte float on PostgreSQL
        return sql

    def applied(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.exec_driver_sql("SELECT name FROM _migrations ORDER BY name")]

    def insert(self, table: str, **row) -> None:
        sa = self._sa
        cols = ", ".join(row)
        params = ", ".join(f":{k}" for k in row)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({params})"), _encode(row))

    def insert_numbered(self, table: str, column: str, group: dict, make_row) -> dict:
        """Insert `make_row(n)`, n being one more than the largest `column` among the rows matching `group`
        (1 for the first); returns the row. Processes numbering the same group at once get distinct numbers.

        >>> store.insert_numbered("model_versions", "version", {"name": "support"}, lambda v: {...})  # doctest: +SKIP
        """
        sa = self._sa
        where = " AND ".join(f"{k} = :{k}" for k in group)
        with self.serialised(VERSION_LOCK) as conn:
            top = conn.execute(sa.text(f"SELECT MAX({column}) FROM {table} WHERE {where}"), group).scalar()
            row = make_row((top or 0) + 1)
            conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"),
                         _encode(row))
        return row

    def select(self, table: str, order_by: str | None = None, **where) -> list[dict]:
        sa = self._sa
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = :{k}" for k in where)
        if order_by:
            sql += f" ORDER BY {order_by}"
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), where)]

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar()

    def newest(self, table: str, column: str):
        """The largest value of `column` in `table` (None when it is empty): when it last gained a row."""
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT MAX({column}) FROM {table}").scalar()

    def upsert_metric(self, run_id: str, step: int, name: str, value: float) -> None:
        """Record a run metric; a step logged again after a resume replaces the earlier value."""
        sa = self._sa
        key = {"r": run_id, "s": step, "n": name}
        with self.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM run_metrics WHERE run_id = :r AND step = :s AND name = :n"), key)
            conn.execute(sa.text("INSERT INTO run_metrics (run_id, step, name, value) VALUES (:r, :s, :n, :v)"),
                         {**key, "v": value})

    def update(self, table: str, key: dict, **values) -> None:
        sa = self._sa
        sets = ", ".join(f"{k} = :v_{k}" for k in values)
        where = " AND ".join(f"{k} = :k_{k}" for k in key)
        params = {**{f"v_{k}": v for k, v in _encode(values).items()}, **{f"k_{k}": v for k, v in key.items()}}
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {table} SET {sets} WHERE {where}"), params)

    def set_alias(self, scope: str, name: str, alias: str, target: str, reason: str | None = None) -> str | None:
        """Point an alias at a target, recording the move; returns the previous target. Moves of one alias
        from several processes at once are serialised, so each records the target it really replaced."""
        sa = self._sa
        key = {"scope": scope, "name": name, "alias": alias}
        with self.serialised(ALIAS_LOCK) as conn:
            prev = conn.execute(
                sa.text("SELECT target FROM aliases WHERE scope = :scope AND name = :name AND alias = :alias"), key
            ).scalar()
            if prev is None:
                conn.execute(sa.text("INSERT INTO aliases (scope, name, alias, target, updated_at) "
                                     "VALUES (:scope, :name, :alias, :target, :t)"), {**key, "target": target, "t": now()})
            else:
                conn.execute(sa.text("UPDATE aliases SET target = :target, updated_at = :t "
                                     "WHERE scope = :scope AND name = :name AND alias = :alias"),
                             {**key, "target": target, "t": now()})
            conn.execute(sa.text("INSERT INTO alias_history (id, scope, name, alias, target, previous, reason, at) "
                                 "VALUES (:id, :scope, :name, :alias, :target, :prev, :reason, :t)"),
                         {**key, "id": new_id(), "target": target, "prev": prev, "reason": reason, "t": now()})
        return prev

    def get_alias(self, scope: str, name: str, alias: str) -> str | None:
        rows = self.select("aliases", scope=scope, name=name, alias=alias)
        return rows[0]["target"] if rows else None


# Keys of Store.serialised: any constants, the same in every Tailor process.
MIGRATION_LOCK, ALIAS_LOCK, VERSION_LOCK = 7243617, 7243618, 7243619


def _driver_url(url: str) -> str:
    """`postgresql://` means psycopg2 to SQLAlchemy; Tailor's postgres extra installs psycopg 3."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _engine_options(url: str) -> dict:
    if url.startswith("postgres"):
        # A dropped connection (server restart, idle timeout on a managed database) is replaced, not raised.
        return {"pool_pre_ping": True}
    return {}


def _encode(row: dict) -> dict:
    # JSON columns are TEXT, so dicts and lists are stored as JSON.
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    import sqlite3
    import time

    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    # Switching a new file to WAL needs its exclusive lock, and SQLite answers "database is locked" at once
    # instead of waiting in the busy handler; several processes opening a new store together meet that
    # (the six-process migration test did, in CI). The mode persists in the file, so one switch is enough.
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 99:
                raise
            time.sleep(0.05)
    cur.close()
