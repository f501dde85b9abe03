"""A real PostgreSQL server for the store tests: Debian's `postgresql` binaries, one server per test session.

`initdb` writes a throwaway cluster under pytest's temporary folder and `pg_ctl` starts it on a free
loopback port with trust authentication; each test gets a database of its own (CREATE DATABASE is a
file copy, ~50 ms). PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
user (Debian's package creates it) through `runuser`.

Where no PostgreSQL binary is installed, the PostgreSQL cases are skipped, saying so; install it with
`apt-get install -y postgresql` (CI does). Import with `from tests.pg_fixtures import *  # noqa: F403`.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

__all__ = ["pg_server", "store_url", "new_store_url", "pg_url"]

NO_PG = "no PostgreSQL server binary (initdb/pg_ctl) on this machine: apt-get install -y postgresql"


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl live: PATH, then Debian's versioned folders (not on PATH by default)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "pg_ctl").exists() and Path(folder, "initdb").exists():
            return Path(folder)
    return None


class PgServer:
    def __init__(self, root: Path):
        from tests.conftest import free_port

        self.bindir = pg_bindir()
        self.data, self.sockets = root / "data", root / "sock"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr or proc.stdout}")

    def start(self) -> "PgServer":
        for folder in (self.data, self.sockets):
            folder.mkdir(parents=True)
            if self.as_user:
                shutil.chown(folder, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                  "--encoding=UTF8", "--no-sync")
        # fsync off: a test cluster need not survive a power cut, and it spares the shared disk.
        opts = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.data / "log"),
                  "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server():
    if pg_bindir() is None:
        pytest.skip(NO_PG)
    pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install -e '.[postgres]'")
    # Not under pytest's own folder: that is private to this user (0700), and the server may run as postgres.
    root = Path(tempfile.mkdtemp(prefix="tailor-pg-"))
    root.chmod(0o755)
    try:
        server = PgServer(root).start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty PostgreSQL database's URL (postgresql://..., as a user writes it in tailor.yaml)."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store_url(request, tmp_path):
    """A function returning a new, empty store's URL: the test runs once on SQLite files, once on
    PostgreSQL databases."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / f'tailor-{uuid.uuid4().hex[:8]}.db'}"
    return request.getfixturevalue("pg_server").new_database


@pytest.fixture
def store_url(new_store_url) -> str:
    """A new, empty store's URL, once on a SQLite file and once on a PostgreSQL database."""
    return new_store_url()
