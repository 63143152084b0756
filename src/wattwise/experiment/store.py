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

Durability: WAL journal with ``synchronous=FULL``. Every write is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` transaction, so a process killed at any moment leaves the file consistent and every
committed trial in it; FULL also keeps the last commits through a power cut. A trial costs minutes
of compute and one fsync per commit costs milliseconds, so there is nothing to gain from NORMAL.

Several processes may write one store (a local multi-GPU executor): each opens its own
``ResultsStore``; writers queue on SQLite's lock for up to ``timeout_s``. A store object may also
be shared by threads, and it reconnects in a forked child. WAL needs a local filesystem (not NFS).
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from wattwise.errors import WattwiseError
from wattwise.experiment.record import METRICS, TrialRecord

#: Version of the table layout; a store written by a newer layout is refused.
SCHEMA_VERSION = 1

#: Spec fields copied into their own columns, for querying.
SPEC_COLUMNS: dict[str, str] = {
    "dataset": "TEXT",
    "model": "TEXT",
    "technique": "TEXT",
    "batch_size": "INTEGER",
    "lr": "REAL",
    "epochs": "INTEGER",
    "seed": "INTEGER",
    "gpu_memory_gb": "REAL",
}

_INTEGER_METRICS = ("peak_rss_bytes", "peak_cuda_allocated_bytes", "peak_cuda_reserved_bytes")
_INTEGER_METRICS += ("params", "macs", "model_bytes")

#: Columns of exports (CSV, Parquet, DataFrame), in order, with their SQLite types.
EXPORT_COLUMNS: dict[str, str] = {
    "trial_id": "TEXT",
    "study": "TEXT",
    "status": "TEXT",
    "reason": "TEXT",
    "attempts": "INTEGER",
    **SPEC_COLUMNS,
    **{m: "INTEGER" if m in _INTEGER_METRICS else "REAL" for m in METRICS},
    "train_energy_provenance": "TEXT",
    "inference_energy_provenance": "TEXT",
    "started_unix_s": "REAL",
    "finished_unix_s": "REAL",
}

#: Keyword filters of :meth:`ResultsStore.records` (and the exports), besides ``status``.
FILTERS = ("study", *SPEC_COLUMNS)

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS trials ("
    "trial_id TEXT PRIMARY KEY, "
    + ", ".join(f"{name} {kind}" for name, kind in list(EXPORT_COLUMNS.items())[1:])
    + ", spec_json TEXT NOT NULL, record_json TEXT NOT NULL"
    + ", CHECK (status IN ('ok', 'failed', 'running')))",
    "CREATE INDEX IF NOT EXISTS trials_status ON trials (status)",
    "CREATE INDEX IF NOT EXISTS trials_point ON trials (dataset, model, technique)",
]
_TABLE_COLUMNS = [*EXPORT_COLUMNS, "spec_json", "record_json"]
_UPSERT = (
    f"INSERT INTO trials ({', '.join(_TABLE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _TABLE_COLUMNS)}) "
    "ON CONFLICT (trial_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _TABLE_COLUMNS[1:])
)


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

    Raises:
        StoreError: The file cannot be created, is not a results store, was written by a newer
            wattwise, or belongs to another study.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        study: str | None = None,
        config_yaml: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create {self.path.parent}: {err.strerror or err}") from err
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
            conn = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
            )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"results store {self.path}: SQLite cannot use a write-ahead log here "
                    f"(journal mode {mode!r}); put the results on a local filesystem"
                )
            conn.execute("PRAGMA synchronous=FULL")
            self._conn = conn
            self._create_schema()
        except BaseException as err:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            if isinstance(err, sqlite3.DatabaseError):
                raise StoreError(
                    f"{self.path} is not a usable wattwise results store: {err}"
                ) from err
            raise
        return conn

    def _create_schema(self) -> None:
        with self._write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                conn.execute("INSERT INTO meta VALUES ('created_unix_s', ?)", (repr(time.time()),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer wattwise (store schema {row[0]}, this "
                    f"version reads {SCHEMA_VERSION}); upgrade wattwise"
                )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together, or nothing does."""
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

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.Error as err:
                raise StoreError(f"cannot read results store {self.path}: {err}") from err

    def close(self) -> None:
        """Closes the connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    # --- study metadata ----------------------------------------------------------------------

    def _claim(self, study: str | None, config_yaml: str | None) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
            if study is not None:
                if row is not None and row[0] != study:
                    raise StoreError(
                        f"{self.path} holds study {row[0]!r}, not {study!r}; "
                        "use another output folder"
                    )
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('study', ?)", (study,))
            if config_yaml is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('config_yaml', ?)", (config_yaml,)
                )

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
            conn.execute(_UPSERT, _row(record))
        return attempts

    def finish_trial(self, record: TrialRecord) -> TrialRecord:
        """Stores a finished (``ok`` or ``failed``) record in one transaction.

        The attempt count is the store's; an empty ``spec`` or ``study`` keeps the stored one and
        a missing ``finished_unix_s`` is set to now.

        Returns:
            The record as stored.
        """
        if record.status == "running":
            raise ValueError(
                "finish_trial needs an 'ok' or 'failed' record, not 'running' "
                "(begin_trial marks a start)"
            )
        with self._write() as conn:
            row = conn.execute(
                "SELECT attempts, spec_json, study FROM trials WHERE trial_id = ?",
                (record.trial_id,),
            ).fetchone()
            spec = dict(record.spec) or (json.loads(row[1]) if row else {})
            record = replace(
                record,
                spec=spec,
                study=record.study or (row[2] if row else "") or self._study_of(conn, spec),
                attempts=max(row[0] if row else 0, record.attempts, 1),
                finished_unix_s=record.finished_unix_s or time.time(),
            )
            conn.execute(_UPSERT, _row(record))
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
            conn.execute(_UPSERT, _row(record))
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
                ``technique``, ``batch_size``, ``lr``, ``epochs``, ``seed``, ``gpu_memory_gb``.
        """
        where, params = _where(status, filters)
        rows = self._query(f"SELECT record_json FROM trials{where} ORDER BY rowid", params)
        return [TrialRecord.from_dict(json.loads(r[0])) for r in rows]

    def rows(self, status: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Flat rows with :data:`EXPORT_COLUMNS` (what CSV, Parquet and DataFrames hold)."""
        where, params = _where(status, filters)
        sql = f"SELECT {', '.join(EXPORT_COLUMNS)} FROM trials{where} ORDER BY rowid"
        return [dict(zip(EXPORT_COLUMNS, r, strict=True)) for r in self._query(sql, params)]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        return "; ".join(str(r[0]) for r in self._query("PRAGMA integrity_check"))

    # --- exports -----------------------------------------------------------------------------

    def to_dataframe(self, status: str | None = None, **filters: Any) -> Any:
        """The rows as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise WattwiseError(
                "to_dataframe needs pandas: pip install pandas (or use export_csv)"
            ) from err
        return pd.DataFrame(self.rows(status, **filters), columns=list(EXPORT_COLUMNS))

    def export_csv(self, path: str | Path, status: str | None = None, **filters: Any) -> int:
        """Writes the rows to a CSV file (header first; empty cells for missing values).

        Returns:
            The number of rows written.
        """
        rows = self.rows(status, **filters)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="", encoding="utf-8") as file:
                writer = csv.DictWriter(file, fieldnames=list(EXPORT_COLUMNS))
                writer.writeheader()
                writer.writerows(rows)
        except OSError as err:
            raise WattwiseError(f"cannot write {path}: {err.strerror or err}") from err
        return len(rows)

    def export_parquet(self, path: str | Path, status: str | None = None, **filters: Any) -> int:
        """Writes the rows to a Parquet file (needs pyarrow).

        Returns:
            The number of rows written.
        """
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as err:
            raise WattwiseError(
                "export_parquet needs pyarrow: pip install pyarrow (or use export_csv)"
            ) from err
        types = {"TEXT": pa.string(), "INTEGER": pa.int64(), "REAL": pa.float64()}
        schema = pa.schema([(name, types[kind]) for name, kind in EXPORT_COLUMNS.items()])
        rows = self.rows(status, **filters)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(path))
        except OSError as err:
            raise WattwiseError(f"cannot write {path}: {err}") from err
        return len(rows)


def _row(record: TrialRecord) -> tuple[Any, ...]:
    values = record.to_dict()
    spec = values["spec"]
    flat = {name: values.get(name) for name in EXPORT_COLUMNS if name not in SPEC_COLUMNS}
    flat |= {name: spec.get(name) for name in SPEC_COLUMNS}
    flat["spec_json"] = _json(spec)
    flat["record_json"] = _json(values)
    return tuple(flat[name] for name in _TABLE_COLUMNS)


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _where(status: str | None, filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown filter {unknown[0]!r}; filters: {', '.join(FILTERS)}")
    terms: list[str] = []
    params: list[Any] = []
    items = [("status", status)] if status is not None else []
    for name, value in [*items, *filters.items()]:
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        clauses = [f"{name} IS NULL" for v in values if v is None]
        present = [v for v in values if v is not None]
        if present:
            clauses.append(f"{name} IN ({', '.join('?' for _ in present)})")
            params.extend(present)
        terms.append("(" + " OR ".join(clauses or ["0"]) + ")")
    return (" WHERE " + " AND ".join(terms) if terms else ""), params
