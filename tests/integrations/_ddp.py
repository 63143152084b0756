"""Running a two-rank training script for the DDP tests: in its own process group, killed whole
on a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

import pytest


def run_ranks(
    command: Sequence[str], what: str, timeout_s: float, env: Mapping[str, str] | None = None
) -> str:
    """Runs ``command`` (which starts the ranks); returns what it printed. On a hang the whole
    process group is killed and the test fails with the end of the output."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    environment.pop("WATTWISE_PARALLEL_TRIALS", None)
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        start_new_session=True,
    )
    try:
        printed, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        printed, _ = proc.communicate()
        pytest.fail(f"the {what} hung for {timeout_s} s:\n{printed[-3000:]}")
    assert proc.returncode == 0, printed[-3000:]
    return printed
