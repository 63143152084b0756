"""Fixtures of the experiment tests: the session's PostgreSQL server
(:mod:`tests.experiment.postgres_server`), defined here once so that every module shares one,
and the store contract's ``location`` and ``store`` (each test runs on both backends)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.experiment.postgres_server import postgres_server
from wattwise.experiment.store import open_store

__all__ = ["location", "postgres_server", "store"]


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a new, empty store goes: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_server").database())
    return tmp_path / "run" / "results.sqlite"


@pytest.fixture
def store(location: str | Path) -> Iterator[Any]:
    """An empty store of study ``demo`` at :func:`location`."""
    with open_store(location, study="demo") as s:
        yield s
