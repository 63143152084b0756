"""The results store: one row per trial, each write one transaction; a SQLite file by default,
or a PostgreSQL database that many workers share.

    with open_store("results/study/results.sqlite", study="study", config_yaml=text) as store:
        for spec in store.pending(expand_grid(config)):       # resume: finished trials skipped
            attempt = store.begin_trial(spec.trial_id, spec)  # status "running", attempts + 1
            try:
                record = run_trial(spec)
            except WattwiseError as err:
                store.fail_trial(spec.trial_id, str(err))
            else:
                store.finish_trial(record)                    # the whole record or nothing

    with open_store("results/study/results.sqlite", read_only=True) as store:   # readers
        frame = store.to_dataframe("ok")

:func:`open_store` opens either backend: a ``postgresql://`` URL (a study's ``store:``) opens a
:class:`~wattwise.experiment.store_postgres.PostgresStore`, anything else a
:class:`ResultsStore` file. Both are a :class:`Store`: the same tables
(:mod:`wattwise.experiment.store_schema`), the same queries and the same semantics, written once
here; a backend only connects, runs a transaction and locks.

Durability: WAL journal with ``synchronous=FULL``. Every write is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` transaction, so a process killed at any moment leaves the file consistent and every
committed trial in it; FULL also keeps the last commits through a power cut. A trial costs minutes
of compute and one fsync per commit costs milliseconds, so there is nothing to gain from NORMAL.

Several processes may write one store: each opens its own store; writers queue on the store's
lock for up to ``timeout_s`` (SQLite's lock on the file; PostgreSQL's lock on the trial). A
sweep, though, is the only writer of its study folder: it holds the study's lock
(:mod:`wattwise.experiment.sweep`) and its workers hand records to it. A trial's claim
(:meth:`Store.begin_trial`) counts every attempt, however many processes claim it at once, and a
finished ``ok`` record is never replaced except by a run begun after it. A store object may also
be shared by threads, and it reconnects in a forked child. WAL needs a local filesystem (not NFS).

Reading only (``read_only=True``): nothing is written, not even SQLite's ``-wal``/``-shm`` files,
so a store in a read-only folder opens too. While no writer has the file open (no ``-wal`` file)
it is read as an immutable file; when a writer is active, or the file changes under a reader,
the reader reads through the writer's WAL (SQLite ``mode=ro``). A store of the previous layout
(schema 1) is read as it is; opening it for writing migrates it in place, in one transaction.

The rules and queries both backends share are :class:`Store`'s
(:mod:`wattwise.experiment.store_base`), the table layout and migration live in
:mod:`wattwise.experiment.store_schema`, PostgreSQL's connection in
:mod:`wattwise.experiment.store_postgres`; this module is SQLite's connection handling (write
transactions, read-only and immutable reads, reconnects after fork or change) and the factory.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from wattwise.experiment.store_base import (  # Store, StoreError...: also this module's names
    META,
    POSTGRES_SCHEMES,
    Store,
    StoreError,
    TrialAlreadyDone,
    _other_study,
    is_postgres_url,
)
from wattwise.experiment.store_schema import (
    SCHEMA_STATEMENTS,
    SCHEMA_VERSION,
    migrate_schema_1,
)

T = TypeVar("T")

__all__ = [
    "CONFIG_FILE",
    "META",
    "POSTGRES_SCHEMES",
    "STORE_FILE",
    "ResultsStore",
    "Store",
    "StoreError",
    "TrialAlreadyDone",
    "check_study",
    "is_postgres_url",
    "open_store",
    "shown",
    "store_exists",
    "study_store",
]

#: The results store's file in a study folder.
STORE_FILE = "results.sqlite"
#: The resolved study config next to it.
CONFIG_FILE = "study.yaml"
_SQLITE_MAGIC = b"SQLite format 3\x00"


class ResultsStore(Store):
    """A study's results in one SQLite file (created with its folder if missing).

    Args:
        path: The database file, e.g. ``results/<study>/results.sqlite``.
        study: The study this store belongs to; recorded on first use, and a different name later
            is refused (one store per study).
        config_yaml: The resolved study config to keep in the store (replaces an older one).
        timeout_s: How long a write waits for another process's write to finish.
        read_only: Only read: the file must be a results store already; nothing is written to it
            or its folder (no schema, no migration, no WAL files), and every write method raises
            :class:`StoreError`.

    Raises:
        StoreError: The file cannot be created, is not a results store, was written by a newer
            wattwise, or belongs to another study; with ``read_only``, also a missing file.
        ValueError: ``read_only`` with ``study`` or ``config_yaml``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        study: str | None = None,
        config_yaml: str | None = None,
        timeout_s: float = 30.0,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.location = str(self.path)
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []
        self._immutable_stat: tuple[int, int] | None = None  # (mtime_ns, size) read as immutable
        if read_only:
            if study is not None or config_yaml is not None:
                raise ValueError("a read-only store takes no study or config_yaml to record")
            self._check_file()
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(
                    f"cannot create {self.path.parent}: {err.strerror or err}"
                ) from err
        self._connection()
        if study is not None or config_yaml is not None:
            self._claim(study, config_yaml)

    # --- connection, transactions ------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:  # forked: never touch the parent's connection in the child
            self._inherited.append(self._conn)
        self._pid = os.getpid()
        try:
            if self.read_only:
                self._conn = self._connect_read_only()
                self._check_layout(self._conn)
            else:
                conn = sqlite3.connect(
                    self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
                )
                self._conn = conn
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(
                        f"results store {self.path}: SQLite cannot use a write-ahead log here "
                        f"(journal mode {mode!r}); put the results on a local filesystem"
                    )
                conn.execute("PRAGMA synchronous=FULL")
                self._create_schema()
        except BaseException as err:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            if isinstance(err, sqlite3.DatabaseError):
                raise StoreError(
                    f"{self.path} is not a usable wattwise results store: {_one_line(err)}"
                ) from err
            raise
        return self._conn

    def _check_file(self) -> None:
        """A read-only open needs an existing SQLite file (SQLite would report it vaguely)."""
        try:
            with open(self.path, "rb") as file:
                magic = file.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            raise StoreError(f"{self.path}: no such results store") from None
        except OSError as err:
            raise StoreError(f"cannot read {self.path}: {err.strerror or err}") from err
        if magic != _SQLITE_MAGIC:
            raise StoreError(f"{self.path} is not a wattwise results store (not a SQLite file)")

    def _connect_read_only(self) -> sqlite3.Connection:
        """``mode=ro`` through the WAL while a writer has the file open (its ``-wal`` exists),
        else ``immutable=1``: no lock and no ``-shm``/``-wal`` file is created."""
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        self._immutable_stat = None
        if not Path(f"{self.path}-wal").exists():
            self._immutable_stat = _stat(self.path)
            uri += "&immutable=1"
        return sqlite3.connect(
            uri, uri=True, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )

    def _check_layout(self, conn: sqlite3.Connection) -> None:
        """Refuses a SQLite file that is not a results store, or one of a newer layout."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if not {"trials", "meta"} <= tables:
            raise StoreError(f"{self.path} is not a wattwise results store (no trials table)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise StoreError(f"{self.path} is not a wattwise results store (no schema version)")
        self._refuse_newer(row[0])
        self._columns = frozenset(r[1] for r in conn.execute("PRAGMA table_info(trials)"))

    def _create_schema(self) -> None:
        with self._write(META) as conn:
            for statement in SCHEMA_STATEMENTS:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                conn.execute("INSERT INTO meta VALUES ('created_unix_s', ?)", (repr(time.time()),))
                return
            self._refuse_newer(row[0])
            if int(row[0]) < SCHEMA_VERSION:
                migrate_schema_1(conn)

    @contextmanager
    def _write(self, key: str | None = None) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: SQLite locks the whole file, whatever ``key``."""
        if self.read_only:
            raise StoreError(f"results store {self.path} is open read-only")
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:
                raise StoreError(
                    f"results store {self.path} stayed locked by another writer for "
                    f"{self.timeout_s:g} s ({err})"
                ) from err
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as err:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error):
                    raise StoreError(f"cannot write results store {self.path}: {err}") from err
                raise

    def _read(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """``read(connection)``; an immutable read-only view that a writer has since changed
        (or started a WAL for) is reopened through the WAL and read again."""
        with self._lock:
            try:
                result = read(self._connection())
                if self._immutable_stat is not None and self._changed():
                    self._reopen()
                    result = read(self._connection())
                return result
            except sqlite3.Error as err:
                raise StoreError(
                    f"cannot read results store {self.path}: {_one_line(err)}"
                ) from err

    def _changed(self) -> bool:
        return Path(f"{self.path}-wal").exists() or _stat(self.path) != self._immutable_stat

    def _reopen(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda conn: conn.execute(sql, params).fetchall())

    def _table_columns(self) -> list[str]:
        return [str(r[1]) for r in self._query("PRAGMA table_info(trials)")]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        return "; ".join(str(r[0]) for r in self._query("PRAGMA integrity_check"))

    def close(self) -> None:
        """Closes the connection (a later call reopens it)."""
        with self._lock:
            self._reopen()

    def __enter__(self) -> ResultsStore:
        return self

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"ResultsStore({str(self.path)!r}{mode})"


def open_store(
    location: str | Path,
    *,
    study: str | None = None,
    config_yaml: str | None = None,
    timeout_s: float = 30.0,
    read_only: bool = False,
) -> Store:
    """The results store at ``location``: a ``postgresql://`` (or ``postgres://``) URL opens a
    :class:`~wattwise.experiment.store_postgres.PostgresStore`, anything else is a SQLite file
    (:class:`ResultsStore`). The arguments are :class:`ResultsStore`'s.

    Raises:
        StoreError: As :class:`ResultsStore`; for a URL also an unreachable server, or psycopg
            missing (``pip install 'wattwise[postgres]'``).
    """
    options: dict[str, Any] = dict(
        study=study, config_yaml=config_yaml, timeout_s=timeout_s, read_only=read_only
    )
    if is_postgres_url(location):
        from wattwise.experiment.store_postgres import PostgresStore

        return PostgresStore(str(location), **options)
    return ResultsStore(location, **options)


def store_exists(location: str | Path) -> bool:
    """A store is at ``location`` (reading only: a SQLite file there, or a database that holds
    the store's tables); it may still belong to another study."""
    if is_postgres_url(location):
        from wattwise.experiment.store_postgres import PostgresStore

        return PostgresStore.exists(str(location))
    return Path(location).exists()


def shown(location: str | Path) -> str:
    """``location`` as messages show it: a URL with its password masked."""
    if is_postgres_url(location):
        from wattwise.experiment.store_postgres import masked_url

        return masked_url(str(location))
    return str(location)


def study_store(folder: str | Path) -> str | None:
    """The PostgreSQL store that the ``study.yaml`` of a study folder names (its ``store:``,
    recorded without a password), or ``None``: no such file, or no such key."""
    import yaml

    try:
        data = yaml.safe_load(Path(folder, CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    store = data.get("store") if isinstance(data, dict) else None
    return store if is_postgres_url(store) else None


def check_study(location: str | Path, study: str) -> None:
    """Refuses a store at ``location`` that belongs to another study, reading only (nothing is
    written, not even a ``-wal`` file); no store there passes.

    Raises:
        StoreError: The store holds another study, or ``location`` is not a results store.
    """
    if not store_exists(location):
        return
    with open_store(location, read_only=True) as store:
        held = store.study
        if held is not None and held != study:
            raise _other_study(store.location, held, study, store._elsewhere)


def _stat(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_mtime_ns, info.st_size


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
