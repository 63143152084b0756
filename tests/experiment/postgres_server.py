"""A throwaway PostgreSQL server for the tests of the PostgreSQL results store.

``postgres_server`` (session-scoped) runs ``initdb`` into a temporary folder, starts ``postgres``
on a free port of 127.0.0.1 (its unix socket in the same folder, so that nothing outside it is
touched), and stops it and removes the folder at the end of the session: about 2 s, once. Each
test takes a database with no store in it from :meth:`PostgresServer.database` (the tests run
one at a time). The server trusts local connections (no password) and skips durability
(``fsync=off``): it lives for one test session.

``initdb`` refuses to run as root: as root, the server runs as the ``postgres`` user (else
``nobody``) through ``runuser``. Where no server can be started (no binaries, no such user) the
tests that need one are skipped with the reason, unless ``WATTWISE_REQUIRE_POSTGRES=1`` (set by
``.ci/run``): then they fail.

Use it from a test module with ``from tests.experiment.postgres_server import postgres_server``
(the fixture) and ask for ``postgres_server`` in a fixture or test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Where Debian's PostgreSQL binaries are, newest first (``PATH`` is searched before them).
BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
#: The environment variable that turns "cannot start a server" into a failure (CI).
REQUIRE = "WATTWISE_REQUIRE_POSTGRES"
#: The superuser initdb creates (local connections are trusted).
USER = "wattwise"

#: The database the tests use, and the schemas a store and its search create in it.
DATABASE = "wattwise_test"
SCHEMAS = ("wattwise", "wattwise_optuna")


@dataclass(frozen=True)
class PostgresServer:
    """A running server: its folder, port, and the URL of its ``postgres`` database."""

    folder: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """The URL of the test database with no store in it: the schemas of an earlier test's
        store and search are dropped (15 ms, where ``CREATE DATABASE`` takes 0.2-1 s)."""
        import psycopg

        with psycopg.connect(self.url(DATABASE), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {', '.join(SCHEMAS)} CASCADE")
        return self.url(DATABASE)


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    return None


def _unavailable(reason: str) -> None:
    """Skips the test (fails it under ``WATTWISE_REQUIRE_POSTGRES=1``)."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but no PostgreSQL server can be started: {reason}")
    pytest.skip(f"no PostgreSQL server can be started: {reason}")


def _runner() -> tuple[list[str], int | None]:
    """The command prefix that runs the server's programs, and the uid that must own its folder:
    nothing and ``None`` for an ordinary user; ``runuser -u postgres --`` for root."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    if runuser is None:
        _unavailable("running as root (initdb refuses root) and runuser is missing")
    for name in ("postgres", "nobody"):
        try:
            return [str(runuser), "-u", name, "--"], pwd.getpwnam(name).pw_uid
        except KeyError:
            continue
    _unavailable("running as root (initdb refuses root) and no postgres or nobody user")
    raise AssertionError  # unreachable: _unavailable raises


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        tail = (log.read_text(errors="replace") if log and log.exists() else "") or done.stderr
        _unavailable(f"{what} failed: {' '.join(tail.split())[-400:]}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session (skipped where none can start)."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'wattwise[postgres]')")
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        _unavailable("initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    assert initdb is not None and pg_ctl is not None
    prefix, owner = _runner()
    folder = Path(tempfile.mkdtemp(prefix="wattwise-pg-"))  # short: a socket path is <108 bytes
    data, log = folder / "data", folder / "server.log"
    if owner is not None:
        os.chown(folder, owner, -1)
    try:
        _run([*prefix, initdb, "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
              "--no-sync", "--no-instructions"], "initdb")  # fmt: skip
        port = _free_port()
        options = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        _run([*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options,
              "start"], "starting postgres", log)  # fmt: skip
        try:
            server = PostgresServer(folder, port)
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            yield server
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, check=False)  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
