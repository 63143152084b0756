"""Fixtures shared by the whole suite.

Test helpers that are not fixtures live in modules of the ``tests`` package and are imported by
their full name (``from tests.analysis.analysis_fixtures import grid_records``): the suite runs
with ``--import-mode=importlib``, which puts no test folder on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One PyTorch intra-op thread in every test, restored afterwards.

    The tests run tiny models on small batches, where a second thread gains nothing, and on a
    machine whose cores other processes share, PyTorch's default threads stall each other: steps
    run 10-100x slower (measured with benchmarks/loader_throughput.py).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
