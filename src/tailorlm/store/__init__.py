"""The state store: every dataset version, run, model version, report, trace, feedback and alias.

SQLite in `.tailor/tailor.db` (WAL mode, so the server and the CLI can share it) through
SQLAlchemy Core; a PostgreSQL URL in `store.url` works with the same code.

>>> store = Store("sqlite:///.tailor/tailor.db")  # doctest: +SKIP
>>> store.insert("aliases", scope="model", name="support", alias="production", target="support:sft@v1", updated_at=now())  # doctest: +SKIP
"""

import datetime as dt
import json
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
            self.engine = sa.create_engine(url, future=True)
        except Exception as e:  # a malformed URL or a missing driver
            raise StateError(f"cannot open the state database {url!r}: {e}") from e
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.migrate()

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, in order; returns their names."""
        sa = self._sa
        done = []
        try:
            if self.engine.dialect.name == "sqlite":
                # Several processes may open a new project's store at once (the data executors' workers do).
                # The Python driver runs DDL outside any transaction, so two of them could both see no
                # migrations and both create the tables; take SQLite's write lock first, explicitly.
                with self.engine.connect() as raw:
                    conn = raw.execution_options(isolation_level="AUTOCOMMIT")
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        done = self._apply_migrations(conn)
                    except BaseException:
                        conn.exec_driver_sql("ROLLBACK")
                        raise
                    conn.exec_driver_sql("COMMIT")
            else:
                with self.engine.begin() as conn:
                    done = self._apply_migrations(conn)
        except sa.exc.OperationalError as e:
            raise StateError(f"cannot use the state database {self.url}: {e.orig}") from e
        return done

    def _apply_migrations(self, conn) -> list[str]:
        done = []
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        applied = {r[0] for r in conn.exec_driver_sql("SELECT name FROM _migrations")}
        for name, statements in MIGRATIONS:
            if name in applied:
                continue
            for sql in statements:
                conn.exec_driver_sql(sql)
            conn.execute(self._sa.text("INSERT INTO _migrations (name, applied_at) VALUES (:n, :t)"), {"n": name, "t": now()})
            done.append(name)
        return done

    def applied(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.exec_driver_sql("SELECT name FROM _migrations ORDER BY name")]

    def insert(self, table: str, **row) -> None:
        sa = self._sa
        cols = ", ".join(row)
        params = ", ".join(f":{k}" for k in row)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({params})"), _encode(row))

    def select(self, table: str, order_by: str | None = None, **where) -> list[dict]:
        sa = self._sa
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = :{k}" for k in where)
        if order_by:
            sql += f" ORDER BY {order_by}"
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), where)]

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
        """Point an alias at a target, recording the move; returns the previous target."""
        sa = self._sa
        key = {"scope": scope, "name": name, "alias": alias}
        with self.engine.begin() as conn:
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


def _encode(row: dict) -> dict:
    # JSON columns are TEXT, so dicts and lists are stored as JSON.
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
