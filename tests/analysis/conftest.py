"""Fixtures of the analysis tests: studies built once per session (plots take seconds)."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def estimated_report(estimated_study: Path) -> Any:
    """``build_report`` of :func:`estimated_study` (built once: plots take seconds)."""
    from wattwise.analysis import build_report

    return build_report(estimated_study, estimated_study / "report")
