"""What every results store is: :class:`Store`, its rules and queries written once, for the
SQLite file (:class:`~wattwise.experiment.store.ResultsStore`) and the PostgreSQL database
(:class:`~wattwise.experiment.store_postgres.PostgresStore`); see :mod:`wattwise.experiment.store`.
A backend only connects, runs a transaction and locks.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattwise.errors import WattwiseError
from wattwise.experiment.leases import LEASE_S, live
from wattwise.experiment.record import RATIOS, TrialRecord
from wattwise.experiment.store_schema import (
    COMPUTED_COLUMNS,
    EXPORT_COLUMNS,
    LEASE_UPSERT,
    META_UPSERT,
    PANDAS_TYPES,
    SCHEMA_VERSION,
    STORED_COLUMNS,
    UPSERT,
    computed_values,
    row_values,
    select_list,
    where_clause,
)
from wattwise.files import write_bytes_atomic

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: The URL schemes of a PostgreSQL store (what libpq accepts).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: The write-lock key of the study's metadata (a trial's is its id).
META = "meta"


class StoreError(WattwiseError):
    """The results store cannot be opened, read or written."""


class TrialAlreadyDone(StoreError):
    """A record for a trial that another run of it stored ``ok`` first (nothing is written)."""


class Store:
    """A study's results: what every backend does, in SQL they all run.

    A backend provides the connection: :meth:`_write` (one transaction, locked), :meth:`_query`
    (one read), :meth:`_table_columns` and :meth:`close`; ``location`` (what messages name: a
    path, or a URL with its password masked) and ``read_only``. Everything else is here once, so
    that SQLite and PostgreSQL stores keep the same rules.
    """

    location: str
    read_only: bool
    #: The SQL that orders trials as they were first begun.
    _order = "rowid"
    #: What a study that finds another study's store should use instead.
    _elsewhere = "output folder"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._columns: frozenset[str] = frozenset(STORED_COLUMNS)

    # --- what a backend provides -------------------------------------------------------------

    def _write(self, key: str | None = None) -> AbstractContextManager[Any]:
        """One write transaction, yielding a connection whose ``execute(sql, params)`` takes
        this module's SQL: everything inside commits together, or nothing does. ``key`` is what
        it writes (a trial id, or :data:`META`): a backend that locks less than the whole store
        locks it for the transaction, so that two claims of one trial run one after the other.
        """
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read."""
        raise NotImplementedError

    def _table_columns(self) -> list[str]:
        """The columns of the ``trials`` table."""
        raise NotImplementedError

    def close(self) -> None:
        """Closes the connection (a later call reopens it)."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refuse_newer(self, version: str) -> None:
        if int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.location} was written by a newer wattwise (store schema {version}, this "
                f"version reads {SCHEMA_VERSION}); upgrade wattwise"
            )

    # --- study metadata ----------------------------------------------------------------------

    def _claim(self, study: str | None, config_yaml: str | None) -> None:
        with self._write(META) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
            if study is not None:
                if row is not None and row[0] != study:
                    raise _other_study(self.location, row[0], study, self._elsewhere)
                conn.execute(META_UPSERT, ("study", study))
            if config_yaml is not None:
                conn.execute(META_UPSERT, ("config_yaml", config_yaml))

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
        with self._write(trial_id) as conn:
            row = conn.execute(
                "SELECT status, attempts FROM trials WHERE trial_id = ?", (trial_id,)
            ).fetchone()
            if row is not None and row[0] == "ok" and not rerun:
                raise ValueError(
                    f"trial {trial_id} already finished ok; pass rerun=True to redo it"
                )
            return self._begin(conn, trial_id, spec_dict, row)

    def claim_trial(
        self,
        trial_id: str,
        spec: Mapping[str, Any] | Any,
        *,
        owner: str,
        lease_s: float = LEASE_S,
        rerun: bool = False,
    ) -> int | None:
        """:meth:`begin_trial` for one of several sweeps that share the store: marks the trial
        ``running`` under ``owner``'s claim (a lease of ``lease_s`` seconds, renewed by
        :meth:`renew_leases`), atomically — unless another sweep's claim on it is live, or it
        finished ``ok`` (and not ``rerun``): then nothing is written and it returns ``None``.

        A claim is live until it expires, is released (the trial finished, the sweep ended) or,
        taken on this host, its sweep's process is gone: a sweep killed here is resumed at once.

        Returns:
            The attempt number, or ``None`` when the trial is another sweep's (or done).
        """
        spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        with self._write(trial_id) as conn:
            row = conn.execute(
                "SELECT status, attempts FROM trials WHERE trial_id = ?", (trial_id,)
            ).fetchone()
            lease = conn.execute(
                "SELECT owner, expires_unix_s FROM leases WHERE trial_id = ?", (trial_id,)
            ).fetchone()
            now = time.time()
            if row is not None and row[0] == "ok" and not rerun:
                return None
            held = lease is not None and live(lease[0], float(lease[1]), owner, now)
            if row is not None and row[0] == "running" and held:
                return None
            conn.execute(LEASE_UPSERT, (trial_id, owner, now + lease_s))
            return self._begin(conn, trial_id, spec_dict, row)

    def _begin(
        self, conn: Any, trial_id: str, spec_dict: dict[str, Any], row: tuple[Any, ...] | None
    ) -> int:
        attempts = (row[1] if row else 0) + 1
        record = TrialRecord.running(
            trial_id, spec_dict, study=self._study_of(conn, spec_dict), attempts=attempts
        )
        conn.execute(UPSERT, row_values(record))
        return attempts

    def renew_leases(self, owner: str, trial_ids: Iterable[str], lease_s: float = LEASE_S) -> None:
        """Extends ``owner``'s claims on ``trial_ids`` to ``lease_s`` seconds from now."""
        ids = list(trial_ids)
        if not ids:
            return
        with self._write() as conn:
            until = time.time() + lease_s
            for trial_id in ids:
                conn.execute(
                    "UPDATE leases SET expires_unix_s = ? WHERE trial_id = ? AND owner = ?",
                    (until, trial_id, owner),
                )

    def release_leases(self, owner: str) -> None:
        """Drops every claim ``owner`` holds (its sweep ended): its trials that are still
        ``running`` may be taken by the next sweep at once."""
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE owner = ?", (owner,))

    def held_elsewhere(self, owner: str | None = None) -> set[str]:
        """The ``running`` trials that another sweep than ``owner`` holds a live claim on."""
        query = (
            "SELECT l.trial_id, l.owner, l.expires_unix_s FROM leases l "
            "JOIN trials t ON t.trial_id = l.trial_id WHERE t.status = 'running'"
        )
        try:
            rows = self._query(query)
        except StoreError:
            if not self.read_only:
                raise
            return set()  # a read-only view of a store no sweep of this version wrote to
        now = time.time()
        return {tid for tid, holder, until in rows if live(holder, float(until), owner, now)}

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
        with self._write(record.trial_id) as conn:
            row = conn.execute(
                "SELECT attempts, spec_json, study, status FROM trials WHERE trial_id = ?",
                (record.trial_id,),
            ).fetchone()
            if row is not None and row[3] == "ok":
                raise TrialAlreadyDone(
                    f"trial {record.trial_id} already finished ok in {self.location}; another run "
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
            conn.execute("DELETE FROM leases WHERE trial_id = ?", (record.trial_id,))
        return record

    def fail_trial(
        self, trial_id: str, reason: str, *, spec: Mapping[str, Any] | Any | None = None
    ) -> TrialRecord:
        """Marks a trial ``failed`` with ``reason``; what its record held is kept.

        ``spec`` is needed only for a trial that was never begun.
        """
        with self._write(trial_id) as conn:
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
                raise KeyError(f"trial {trial_id} is not in {self.location}; pass its spec")
            conn.execute(UPSERT, row_values(record))
            conn.execute("DELETE FROM leases WHERE trial_id = ?", (trial_id,))
        return record

    @staticmethod
    def _study_of(conn: Any, spec: Mapping[str, Any]) -> str:
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

    def pending(
        self, trials: Iterable[Any], *, retry_failed: bool = False, owner: str | None = None
    ) -> list[Any]:
        """The trials that still have to run, in the given order: never begun, or ``running``
        (an interrupted attempt) unless another sweep than ``owner`` holds a live claim on it
        (:meth:`claim_trial`), and with ``retry_failed`` also ``failed`` ones.

        Args:
            trials: Trial ids, or objects with a ``trial_id`` (``TrialSpec``); returned as given.
            retry_failed: Run failed trials again (by default a failure is a result).
            owner: The asking sweep (:func:`lease_owner`); its own claims do not count.
        """
        done = {"ok"} if retry_failed else {"ok", "failed"}
        status = dict(self._query("SELECT trial_id, status FROM trials"))
        held = self.held_elsewhere(owner)
        return [
            t
            for t in trials
            if status.get(getattr(t, "trial_id", t)) not in done
            and getattr(t, "trial_id", t) not in held
        ]

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
        rows = self._query(f"SELECT record_json FROM trials{where} ORDER BY {self._order}", params)
        return [TrialRecord.from_dict(json.loads(r[0])) for r in rows]

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
        sql = f"SELECT {columns}, record_json FROM trials{where} ORDER BY {self._order}"
        names = [*STORED_COLUMNS, "record_json"]
        frame = pd.DataFrame.from_records(self._query(sql, params), columns=names)
        types = {name: PANDAS_TYPES[kind] for name, kind in STORED_COLUMNS.items()}
        frame = frame.astype(types | {"record_json": "object"})
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


def is_postgres_url(location: object) -> bool:
    """``location`` names a PostgreSQL store (a ``postgresql://`` or ``postgres://`` URL)."""
    return isinstance(location, str) and location.lower().startswith(POSTGRES_SCHEMES)


def _other_study(location: str, held: str, study: str, elsewhere: str) -> StoreError:
    return StoreError(f"{location} holds study {held!r}, not {study!r}; use another {elsewhere}")


def _export(path: str | Path, data: bytes, rows: int) -> int:
    """Writes an export atomically; returns its number of rows."""
    try:
        write_bytes_atomic(path, data)
    except OSError as err:
        raise StoreError(f"cannot write {path}: {err.strerror or err}") from err
    return rows
