"""Experiments at scale: trial records and the SQLite results store.

    from wattwise.experiment import ResultsStore, TrialRecord

Importing this package is cheap (no torch). See docs/experiments.md.
"""

from __future__ import annotations

from wattwise.experiment.record import METRICS, STATUSES, TrialRecord, TrialStatus, json_safe
from wattwise.experiment.store import (
    EXPORT_COLUMNS,
    FILTERS,
    SCHEMA_VERSION,
    ResultsStore,
    StoreError,
)

__all__ = [
    "EXPORT_COLUMNS",
    "FILTERS",
    "METRICS",
    "SCHEMA_VERSION",
    "STATUSES",
    "ResultsStore",
    "StoreError",
    "TrialRecord",
    "TrialStatus",
    "json_safe",
]
