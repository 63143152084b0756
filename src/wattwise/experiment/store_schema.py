"""The results store's table layout: columns, SQL, one row per record, filters, migration.

The stores (:class:`~wattwise.experiment.store.ResultsStore` for SQLite,
:class:`~wattwise.experiment.store_postgres.PostgresStore`) own the connection and the transactions;
this module says what a row holds, in SQL both run (``?`` placeholders; the PostgreSQL store passes
its own column types to :func:`create_trials`). Schema 2 stores primitives only: the ratio columns
of exports are computed from them (:data:`~wattwise.experiment.record.RATIOS`), and a schema-1 store
(stored ratios, ``throughput_images_per_s``, variants in ``details``) is migrated by
:func:`migrate_schema_1`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from wattwise.experiment.record import METRICS, RATIOS, TrialRecord

#: Version of the table layout; a store written by a newer layout is refused. 2: the ratios are
#: no longer stored, ``throughput_images_per_s`` is ``images_per_s``, ``gpu_memory_gb`` is
#: ``gpu_memory_gib``, variants are typed.
SCHEMA_VERSION = 2

#: Columns of schema 1 that have another name now (read-only opens of old stores select them).
SCHEMA_1_NAMES = {"images_per_s": "throughput_images_per_s", "gpu_memory_gib": "gpu_memory_gb"}

#: Spec fields copied into their own columns, for querying.
SPEC_COLUMNS: dict[str, str] = {
    "dataset": "TEXT",
    "model": "TEXT",
    "technique": "TEXT",
    "batch_size": "INTEGER",
    "lr": "REAL",
    "epochs": "INTEGER",
    "seed": "INTEGER",
    "gpu_memory_gib": "REAL",
}

_INTEGER_METRICS = ("peak_rss_bytes", "peak_cuda_allocated_bytes", "peak_cuda_reserved_bytes")
_INTEGER_METRICS += ("params", "macs", "model_bytes")

#: Export columns computed from each stored record on export (not stored twice): its energy by
#: phase category, and its final variant's saving against the eager baseline with the interval,
#: significance and the noise flag (empty where no comparison was recorded).
COMPUTED_COLUMNS: dict[str, str] = {
    "technique_energy_j": "REAL",
    "measurement_energy_j": "REAL",
    "total_energy_j": "REAL",
    "saving": "REAL",
    "saving_low": "REAL",
    "saving_high": "REAL",
    "saving_significant": "BOOLEAN",
    "noisy": "BOOLEAN",
    "device_id": "TEXT",
    # the per-trial columns of the report's trial table (its study-level columns, CO2e, teacher
    # shares, accuracy intervals, are in report/tables/, wattwise.analysis.tables)
    "training_energy_j": "REAL",
    "teacher_energy_j": "REAL",
    "saving_vs_best_fp32": "REAL",
    "saving_vs_best_fp32_low": "REAL",
    "saving_vs_best_fp32_high": "REAL",
    "best_fp32": "TEXT",
    "verdict": "TEXT",
}


def computed_values(record: TrialRecord) -> tuple[Any, ...]:
    """The :data:`COMPUTED_COLUMNS` of ``record``, in order."""
    final = record.final_variant
    names = ("saving", "saving_low", "saving_high", "saving_significant")
    saving = [getattr(final, n) if final else None for n in names]
    noisy = record.noisy or any(v.noisy for v in record.variants)
    energies = (record.technique_energy_j, record.measurement_energy_j, record.total_energy_j)
    names = ("saving_vs_best_fp32", "saving_vs_best_fp32_low", "saving_vs_best_fp32_high")
    fp32 = [getattr(final, n) if final else None for n in (*names, "best_fp32", "verdict")]
    device = (record.environment or {}).get("device_id")
    own = (record.training_energy_j, record.teacher_energy_j)
    return (*energies, *saving, noisy, device, *own, *fp32)


#: Columns of exports (CSV, Parquet, DataFrame), in order, with their types. The ratio columns
#: (:data:`~wattwise.experiment.record.RATIOS`) and :data:`COMPUTED_COLUMNS` are computed on
#: export, not stored.
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
    **COMPUTED_COLUMNS,
}
#: The scalar columns the ``trials`` table stores.
STORED_COLUMNS = {
    name: kind
    for name, kind in EXPORT_COLUMNS.items()
    if name not in RATIOS and name not in COMPUTED_COLUMNS
}
PANDAS_TYPES = {"TEXT": "string", "INTEGER": "Int64", "REAL": "float64", "BOOLEAN": "boolean"}

#: Keyword filters of :meth:`ResultsStore.records` (and the exports), besides ``status``.
FILTERS = ("study", *SPEC_COLUMNS)


def create_trials(types: Mapping[str, str] | None = None, extra: str = "") -> str:
    """``CREATE TABLE trials``: :data:`STORED_COLUMNS` with their types (``types`` maps a
    SQLite type to another database's, e.g. ``REAL`` to ``DOUBLE PRECISION``), the JSON columns,
    and ``extra`` column definitions (PostgreSQL's insertion order, SQLite's ``rowid``)."""
    types = types or {}
    return (
        "CREATE TABLE IF NOT EXISTS trials ("
        "trial_id TEXT PRIMARY KEY, "
        + ", ".join(
            f"{name} {types.get(kind, kind)}" for name, kind in list(STORED_COLUMNS.items())[1:]
        )
        + ", spec_json TEXT NOT NULL, record_json TEXT NOT NULL"
        + (f", {extra}" if extra else "")
        + ", CHECK (status IN ('ok', 'failed', 'running')))"
    )


CREATE_TRIALS = create_trials()
CREATE_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
CREATE_INDEXES = [
    "CREATE INDEX IF NOT EXISTS trials_status ON trials (status)",
    "CREATE INDEX IF NOT EXISTS trials_point ON trials (dataset, model, technique)",
]
#: Which sweep runs a ``running`` trial, and until when its claim holds without renewal
#: (:meth:`~wattwise.experiment.store_base.Store.claim_trial`). Added without a schema version
#: change: a store without it gains it when opened for writing; readers never need it.
CREATE_LEASES = (
    "CREATE TABLE IF NOT EXISTS leases (trial_id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
    "expires_unix_s DOUBLE PRECISION NOT NULL)"
)
SCHEMA_STATEMENTS = [CREATE_META, CREATE_TRIALS, *CREATE_INDEXES, CREATE_LEASES]
LEASE_UPSERT = (
    "INSERT INTO leases (trial_id, owner, expires_unix_s) VALUES (?, ?, ?) "
    "ON CONFLICT (trial_id) DO UPDATE SET owner = excluded.owner, "
    "expires_unix_s = excluded.expires_unix_s"
)
#: Sets one ``meta`` entry (key, value).
META_UPSERT = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
TABLE_COLUMNS = [*STORED_COLUMNS, "spec_json", "record_json"]
UPSERT = (
    f"INSERT INTO trials ({', '.join(TABLE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TABLE_COLUMNS)}) "
    "ON CONFLICT (trial_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in TABLE_COLUMNS[1:])
)


def select_list(columns: frozenset[str]) -> str:
    """The SQL that selects :data:`STORED_COLUMNS` from a ``trials`` table with ``columns``: a
    store of schema 1 (opened read-only, so not migrated) has some under their old names."""
    names = []
    for name in STORED_COLUMNS:
        column = column_of(name, columns)
        names.append(f"{column} AS {name}" if column != name else name)
    return ", ".join(names)


def column_of(name: str, columns: frozenset[str]) -> str:
    """The column that holds :data:`STORED_COLUMNS` entry ``name`` in a ``trials`` table with
    ``columns``: its schema-1 name in a store of schema 1 (opened read-only, so not migrated)."""
    old = SCHEMA_1_NAMES.get(name)
    return old if name not in columns and old in columns else name


def migrate_schema_1(conn: sqlite3.Connection) -> None:
    """Rewrites a schema-1 ``trials`` table in the current layout, inside the caller's
    transaction: every record is read with ``TrialRecord.from_dict`` (which migrates it) and
    stored again, in the same order."""
    conn.execute("ALTER TABLE trials RENAME TO trials_schema_1")
    conn.execute(CREATE_TRIALS)
    rows = conn.execute("SELECT record_json FROM trials_schema_1 ORDER BY rowid").fetchall()
    for (text,) in rows:
        conn.execute(UPSERT, row_values(TrialRecord.from_dict(json.loads(text))))
    conn.execute("DROP TABLE trials_schema_1")  # and its indexes
    for statement in CREATE_INDEXES:
        conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def row_values(record: TrialRecord) -> tuple[Any, ...]:
    """The values of :data:`TABLE_COLUMNS` (what :data:`UPSERT` takes) for ``record``."""
    values = record.to_dict()
    spec = values["spec"]
    flat = {name: values.get(name) for name in STORED_COLUMNS if name not in SPEC_COLUMNS}
    flat |= {name: spec.get(name) for name in SPEC_COLUMNS}
    flat["spec_json"] = _json(spec)
    flat["record_json"] = _json(values)
    return tuple(flat[name] for name in TABLE_COLUMNS)


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def where_clause(
    status: str | None, filters: Mapping[str, Any], columns: frozenset[str] = frozenset()
) -> tuple[str, list[Any]]:
    """`` WHERE ...`` and its parameters for a status and :data:`FILTERS` (each a value, a list
    of values, or ``None`` for NULL); ``("", [])`` without any. ``columns``: those of the
    ``trials`` table, when it may be of schema 1 (see :func:`column_of`).

    Raises:
        ValueError: An unknown filter.
    """
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown filter {unknown[0]!r}; filters: {', '.join(FILTERS)}")
    terms: list[str] = []
    params: list[Any] = []
    items = [("status", status)] if status is not None else []
    for key, value in [*items, *filters.items()]:
        name = column_of(key, columns)
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        clauses = [f"{name} IS NULL" for v in values if v is None]
        present = [v for v in values if v is not None]
        if present:
            clauses.append(f"{name} IN ({', '.join('?' for _ in present)})")
            params.extend(present)
        terms.append("(" + " OR ".join(clauses or ["1 = 0"]) + ")")
    return (" WHERE " + " AND ".join(terms) if terms else ""), params
