"""Fixtures of the analysis tests: studies built once per session (plots take seconds)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.analysis_fixtures import XSS_STUDY, grid_records, write_study


@pytest.fixture(scope="session")
def estimated_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid with estimated energy only, two failed trials and a hostile study name."""
    records = grid_records()
    records = [replace(r, study=XSS_STUDY, spec={**r.spec, "study": XSS_STUDY}) for r in records]
    return write_study(tmp_path_factory.mktemp("estimated") / "study", records, study=XSS_STUDY)


def study_snapshot(folder: Path) -> tuple[bytes, int, list[str]]:
    """The store's bytes and mtime and the study folder's listing (``report/`` left out)."""
    store = folder / "results.sqlite"
    names = sorted(n for n in os.listdir(folder) if n != "report")
    return store.read_bytes(), store.stat().st_mtime_ns, names


#: :func:`study_snapshot` of :func:`estimated_study` before and after its report was built.
_SNAPSHOTS: dict[str, tuple[bytes, int, list[str]]] = {}


@pytest.fixture(scope="session")
def estimated_report(estimated_study: Path) -> Any:
    """``build_report`` of :func:`estimated_study` (built once: plots take seconds)."""
    from wattwise.analysis import build_report

    _SNAPSHOTS["before"] = study_snapshot(estimated_study)
    report = build_report(estimated_study, estimated_study / "report")
    _SNAPSHOTS["after"] = study_snapshot(estimated_study)
    return report


@pytest.fixture(scope="session")
def estimated_report_snapshots(estimated_report: Any) -> dict[str, Any]:
    """The study folder before and after :func:`estimated_report` was built."""
    return _SNAPSHOTS


@pytest.fixture(scope="session")
def estimated_data(estimated_study: Path) -> Any:
    """``report_data`` of :func:`estimated_study`, computed once (the statistics take seconds)."""
    from wattwise.analysis.report import load_study, report_data

    return report_data(load_study(estimated_study))
