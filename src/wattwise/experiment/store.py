"""The results store: one SQLite file, one row per trial, each write one transaction.

    with ResultsStore("results/study/results.sqlite", study="study", config_yaml=text) as store:
        for spec in store.pending(expand_grid(config)):       # resume: finished trials skipped
            attempt = store.begin_trial(spec.trial_id, spec)  # status "running", attempts + 1
            try:
                record = run_trial(spec)
            except WattwiseError as err:
                store.fail_trial(spec.trial_id, str(err))
            else:
                store.finish_trial(record)                    # the whole record or nothing

    with ResultsStore("results/study/results.sqlite", read_only=True) as store:   # readers
        frame = store.to_dataframe("ok")

Durability: WAL journal with ``synchronous=FULL``. Every write is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` transaction, so a process killed at any moment leaves the file consistent and every
committed trial in it; FULL also keeps the last commits through a power cut. A trial costs minutes
of compute and one fsync per commit costs milliseconds, so there is nothing to gain from NORMAL.

Several processes may write one store: each opens its own ``ResultsStore``; writers queue on
SQLite's lock for up to ``timeout_s``. A sweep, though, is the only writer of its study: it holds
the study's lock (:mod:`wattwise.experiment.sweep`) and its workers hand records to it. A
finished ``ok`` record is never replaced except by a run begun after it. A store object may also
be shared by threads, and it reconnects in a forked child. WAL needs a local filesystem (not NFS).

Reading only (``read_only=True``): nothing is written, not even SQLite's ``-wal``/``-shm`` files,
so a store in a read-only folder opens too. While no writer has the file open (no ``-wal`` file)
it is read as an immutable file; when a writer is active, or the file changes under a reader,
the reader reads through the writer's WAL (SQLite ``mode=ro``). A store of the previous layout
(schema 1) is read as it is; opening it for writing migrates it in place, in one transaction.

Size: about 570 lines, one class whose connection handling (write transactions, read-only and
immutable reads, reconnects after fork or change) every query relies on; the table layout and
migration live in :mod:`wattwise.experiment.store_schema`.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wattwise.errors import WattwiseError
from wattwise.experiment.record import RATIOS, TrialRecord
from wattwise.experiment.store_schema import (
    COMPUTED_COLUMNS,
    EXPORT_COLUMNS,
    PANDAS_TYPES,
    SCHEMA_STATEMENTS,
    SCHEMA_VERSION,
    STORED_COLUMNS,
    UPSERT,
    computed_values,
    migrate_schema_1,
    row_values,
    select_list,
    where_clause,
)
from wattwise.files import write_bytes_atomic

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

T = TypeVar("T")

#: The results store's file in a study folder.
STORE_FILE = "results.sqlite"
#: The resolved study config next to it.
CONFIG_FILE = "study.yaml"

_SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(WattwiseError):
    """The results store cannot be opened, read or written."""


class ResultsStore:
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
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []
        self._immutable_stat: tuple[int, int] | None = None  # (mtime_ns, size) read as immutable
        self._columns: frozenset[str] = frozenset(STORED_COLUMNS)
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

    def _refuse_newer(self, version: str) -> None:
        if int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer wattwise (store schema {version}, this "
                f"version reads {SCHEMA_VERSION}); upgrade wattwise"
            )

    def _create_schema(self) -> None:
        with self._write() as conn:
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
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together, or nothing does."""
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

    def close(self) -> None:
        """Closes the connection (a later call reopens it)."""
        with self._lock:
            self._reopen()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"ResultsStore({str(self.path)!r}{mode})"

    # --- study metadata ----------------------------------------------------------------------

    def _claim(self, study: str | None, config_yaml: str | None) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
            if study is not None:
                if row is not None and row[0] != study:
                    raise _other_study(self.path, row[0], study)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('study', ?)", (study,))
            if config_yaml is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('config_yaml', ?)", (config_yaml,)
                )

    def set_config_yaml(self, config_yaml: str) -> None:
        """Keeps ``config_yaml`` as the resolved study config (replacing an older one)."""
        self._claim(None, config_yaml)

    def meta(self) -> dict[str, str]:
        """``schema_version``, ``created_unix_s`` and, once set, ``study`` and ``config_yaml``."""
        return dict(self._query("SELECT key, value FROM meta"))  # type: ignore[arg-type]

    @property
    def study(self) -> str | None:
        return self.meta().get("study")

    @property
    def config_yaml(self) -> str | None:
        """The resolved study config the store was last opened with."""
        return self.meta().get("config_yaml")

    # --- writing trials ----------------------------------------------------------------------

    def begin_trial(
        self, trial_id: str, spec: Mapping[str, Any] | Any, *, rerun: bool = False
    ) -> int:
        """Marks a trial ``running`` and counts the attempt, atomically.

        Args:
            trial_id: The trial's id (``TrialSpec.trial_id``).
            spec: The trial's spec (a ``TrialSpec`` or its dict).
            rerun: Allow restarting a trial that already finished ``ok`` (its stored result is
                discarded).

        Returns:
            The attempt number: 1 the first time, then 2, 3...
        """
        spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        with self._write() as conn:
            row = conn.execute(
                "SELECT status, attempts FROM trials WHERE trial_id = ?", (trial_id,)
            ).fetchone()
            if row is not None and row[0] == "ok" and not rerun:
                raise ValueError(
                    f"trial {trial_id} already finished ok; pass rerun=True to redo it"
                )
            attempts = (row[1] if row else 0) + 1
            record = TrialRecord.running(
                trial_id, spec_dict, study=self._study_of(conn, spec_dict), attempts=attempts
            )
            conn.execute(UPSERT, row_values(record))
        return attempts

    def finish_trial(self, record: TrialRecord) -> TrialRecord:
        """Stores a finished (``ok`` or ``failed``) record in one transaction.

        The attempt count is the store's; an empty ``spec`` or ``study`` keeps the stored one and
        a missing ``finished_unix_s`` is set to now. A trial whose stored record is ``ok`` keeps
        it: only a run begun after it (``begin_trial(..., rerun=True)``) may replace it.

        Returns:
            The record as stored.

        Raises:
            StoreError: The trial already finished ``ok`` (another run of it finished first);
                nothing is written.
        """
        if record.status == "running":
            raise ValueError(
                "finish_trial needs an 'ok' or 'failed' record, not 'running' "
                "(begin_trial marks a start)"
            )
        with self._write() as conn:
            row = conn.execute(
                "SELECT attempts, spec_json, study, status FROM trials WHERE trial_id = ?",
                (record.trial_id,),
            ).fetchone()
            if row is not None and row[3] == "ok":
                raise StoreError(
                    f"trial {record.trial_id} already finished ok in {self.path}; another run "
                    "of it (a second sweep of this study?) is not stored over it"
                )
            spec = dict(record.spec) or (json.loads(row[1]) if row else {})
            record = replace(
                record,
                spec=spec,
                study=record.study or (row[2] if row else "") or self._study_of(conn, spec),
                attempts=max(row[0] if row else 0, record.attempts, 1),
                finished_unix_s=record.finished_unix_s or time.time(),
            )
            conn.execute(UPSERT, row_values(record))
        return record

    def fail_trial(
        self, trial_id: str, reason: str, *, spec: Mapping[str, Any] | Any | None = None
    ) -> TrialRecord:
        """Marks a trial ``failed`` with ``reason``; what its record held is kept.

        ``spec`` is needed only for a trial that was never begun.
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT record_json FROM trials WHERE trial_id = ?", (trial_id,)
            ).fetchone()
            if row is not None:
                record = TrialRecord.from_dict(json.loads(row[0]))
                if record.status == "ok":
                    raise ValueError(f"trial {trial_id} finished ok; it cannot be marked failed")
                record = record.failed(reason)
            elif spec is not None:
                spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
                record = TrialRecord(
                    trial_id,
                    study=self._study_of(conn, spec_dict),
                    spec=spec_dict,
                    status="failed",
                    reason=reason,
                    finished_unix_s=time.time(),
                )
            else:
                raise KeyError(f"trial {trial_id} is not in {self.path}; pass its spec")
            conn.execute(UPSERT, row_values(record))
        return record

    @staticmethod
    def _study_of(conn: sqlite3.Connection, spec: Mapping[str, Any]) -> str:
        if spec.get("study"):
            return str(spec["study"])
        row = conn.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
        return row[0] if row else ""

    # --- reading -----------------------------------------------------------------------------

    def get(self, trial_id: str) -> TrialRecord | None:
        """The trial's record, or ``None`` if the store has never seen it."""
        rows = self._query("SELECT record_json FROM trials WHERE trial_id = ?", (trial_id,))
        return TrialRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def status(self, trial_id: str) -> str | None:
        """``ok``, ``failed``, ``running`` or ``None`` (never begun)."""
        rows = self._query("SELECT status FROM trials WHERE trial_id = ?", (trial_id,))
        return rows[0][0] if rows else None

    def pending(self, trials: Iterable[Any], *, retry_failed: bool = False) -> list[Any]:
        """The trials that still have to run, in the given order: never begun, or ``running``
        (an interrupted attempt), and with ``retry_failed`` also ``failed`` ones.

        A ``running`` trial is taken for an interrupted one: call this when no other sweep
        works on the store.

        Args:
            trials: Trial ids, or objects with a ``trial_id`` (``TrialSpec``); returned as given.
            retry_failed: Run failed trials again (by default a failure is a result).
        """
        done = {"ok"} if retry_failed else {"ok", "failed"}
        status = dict(self._query("SELECT trial_id, status FROM trials"))
        return [t for t in trials if status.get(getattr(t, "trial_id", t)) not in done]

    def counts(self) -> dict[str, int]:
        """Number of trials per status."""
        rows = self._query("SELECT status, COUNT(*) FROM trials GROUP BY status")
        return {s: 0 for s in ("ok", "failed", "running")} | dict(rows)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM trials")[0][0])

    def records(self, status: str | None = None, **filters: Any) -> list[TrialRecord]:
        """Records in the order trials were first begun, optionally filtered.

        Args:
            status: ``ok``, ``failed`` or ``running``.
            **filters: Column = value (or a list of values): ``study``, ``dataset``, ``model``,
                ``technique``, ``batch_size``, ``lr``, ``epochs``, ``seed``, ``gpu_memory_gib``.
        """
        where, params = where_clause(status, filters, self._columns)
        rows = self._query(f"SELECT record_json FROM trials{where} ORDER BY rowid", params)
        return [TrialRecord.from_dict(json.loads(r[0])) for r in rows]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        return "; ".join(str(r[0]) for r in self._query("PRAGMA integrity_check"))

    # --- exports -----------------------------------------------------------------------------

    def to_dataframe(self, status: str | None = None, **filters: Any) -> pd.DataFrame:
        """The trials as a ``pandas.DataFrame`` with :data:`EXPORT_COLUMNS`, one row per trial in
        the order they were first begun (filters as :meth:`records`). Integer columns are
        ``Int64`` and text columns ``string``, so missing values stay missing; the ratio columns
        are computed with the record's formulas (:data:`~wattwise.experiment.record.RATIOS`), and
        the :data:`~wattwise.experiment.store_schema.COMPUTED_COLUMNS` from each stored record."""
        import pandas as pd  # imported on use: importing wattwise.experiment stays fast

        where, params = where_clause(status, filters, self._columns)
        columns = select_list(self._columns)
        sql = f"SELECT {columns}, record_json FROM trials{where} ORDER BY rowid"
        types = {name: PANDAS_TYPES[kind] for name, kind in STORED_COLUMNS.items()}
        frame = self._read(lambda conn: pd.read_sql_query(sql, conn, params=params, dtype=types))
        for name, (formula, inputs) in RATIOS.items():
            values = [formula(*v) for v in zip(*(frame[c] for c in inputs), strict=True)]
            frame[name] = pd.Series(values, index=frame.index, dtype="float64")
        rows = [computed_values(TrialRecord.from_dict(json.loads(t))) for t in frame["record_json"]]
        for i, (name, kind) in enumerate(COMPUTED_COLUMNS.items()):
            values = [row[i] for row in rows]
            frame[name] = pd.Series(values, index=frame.index, dtype=PANDAS_TYPES[kind])
        return frame[list(EXPORT_COLUMNS)]

    def export_csv(self, path: str | Path, status: str | None = None, **filters: Any) -> int:
        """Writes :meth:`to_dataframe` to a CSV file, atomically (header first; empty cells for
        missing values).

        Returns:
            The number of rows written.
        """
        frame = self.to_dataframe(status, **filters)
        return _export(path, frame.to_csv(index=False).encode("utf-8"), len(frame))

    def export_parquet(self, path: str | Path, status: str | None = None, **filters: Any) -> int:
        """Writes :meth:`to_dataframe` to a Parquet file (pyarrow), atomically.

        Returns:
            The number of rows written.
        """
        frame = self.to_dataframe(status, **filters)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return _export(path, buffer.getvalue(), len(frame))


def check_study(path: str | Path, study: str) -> None:
    """Refuses a store at ``path`` that belongs to another study, reading only (nothing is
    written, not even a ``-wal`` file); no store there passes.

    Raises:
        StoreError: The store holds another study, or ``path`` is not a results store.
    """
    if not Path(path).exists():
        return
    with ResultsStore(path, read_only=True) as store:
        held = store.study
    if held is not None and held != study:
        raise _other_study(Path(path), held, study)


def _other_study(path: Path, held: str, study: str) -> StoreError:
    return StoreError(f"{path} holds study {held!r}, not {study!r}; use another output folder")


def _export(path: str | Path, data: bytes, rows: int) -> int:
    """Writes an export atomically; returns its number of rows."""
    try:
        write_bytes_atomic(path, data)
    except OSError as err:
        raise StoreError(f"cannot write {path}: {err.strerror or err}") from err
    return rows


def _stat(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_mtime_ns, info.st_size


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
