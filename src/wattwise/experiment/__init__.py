"""Experiments at scale: trial records, the results store (SQLite, or PostgreSQL shared by many
workers), the trial runner, sweeps and executors.

    from wattwise.experiment import ResultsStore, TrialRecord, VariantRecord, run_study, run_trial

Importing this package is cheap (no torch): the runner, sweep, executors and demo are imported
when one of their names is first used. See docs/experiments.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wattwise.experiment.record import (
    METRICS,
    STATUSES,
    MemoryCap,
    TrialRecord,
    TrialStatus,
    VariantRecord,
    json_safe,
)
from wattwise.experiment.store import (
    CONFIG_FILE,
    STORE_FILE,
    ResultsStore,
    Store,
    StoreError,
    open_store,
)
from wattwise.experiment.store_schema import EXPORT_COLUMNS, FILTERS, SCHEMA_VERSION

_LAZY = {
    "run_trial": "wattwise.experiment.runner",
    "failure_reason": "wattwise.experiment.runner",
    "TrialFailure": "wattwise.experiment.runner",
    "run_study": "wattwise.experiment.sweep",
    "StudySummary": "wattwise.experiment.summary",
    "StudyInterrupted": "wattwise.experiment.sweep",
    "describe_trial": "wattwise.experiment.summary",
    "Executor": "wattwise.experiment.executors",
    "LocalExecutor": "wattwise.experiment.executors",
    "LocalGpuExecutor": "wattwise.experiment.executors",
    "RayExecutor": "wattwise.experiment.executor_ray",
    "create_executor": "wattwise.experiment.executors",
    "run_demo": "wattwise.experiment.demo",
    "PostgresStore": "wattwise.experiment.store_postgres",
    "demo_config": "wattwise.experiment.demo",
}

if TYPE_CHECKING:  # pragma: no cover
    from wattwise.experiment.demo import demo_config, run_demo
    from wattwise.experiment.executor_ray import RayExecutor
    from wattwise.experiment.executors import (
        Executor,
        LocalExecutor,
        LocalGpuExecutor,
        create_executor,
    )
    from wattwise.experiment.runner import TrialFailure, failure_reason, run_trial
    from wattwise.experiment.store_postgres import PostgresStore
    from wattwise.experiment.summary import StudySummary, describe_trial
    from wattwise.experiment.sweep import StudyInterrupted, run_study

__all__ = [
    "CONFIG_FILE",
    "EXPORT_COLUMNS",
    "FILTERS",
    "METRICS",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_FILE",
    "Executor",
    "LocalExecutor",
    "LocalGpuExecutor",
    "MemoryCap",
    "PostgresStore",
    "RayExecutor",
    "ResultsStore",
    "Store",
    "StoreError",
    "StudyInterrupted",
    "StudySummary",
    "TrialFailure",
    "TrialRecord",
    "TrialStatus",
    "VariantRecord",
    "create_executor",
    "demo_config",
    "describe_trial",
    "failure_reason",
    "json_safe",
    "open_store",
    "run_demo",
    "run_study",
    "run_trial",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise.experiment' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
