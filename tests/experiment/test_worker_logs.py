"""Third-party noise of trials run in worker processes (``local-gpus``' pool, Ray tasks) goes to
the study folder's ``third_party.log``, as the driver's own does; wattwise's lines stay on the
terminal, and the driver's one line at the end counts the workers' lines too.

A spawned worker is a fresh interpreter, so a monkeypatch of the test process does not reach it:
the noisy trial is installed in the worker by a ``sitecustomize`` module on its ``PYTHONPATH``,
whose runner's ``run_trial`` is one from a library outside wattwise (a ``UserWarning``, a torch
logger line and a wattwise logger line, then a failed record, so no training runs).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from wattwise.cli._base import third_party_log
from wattwise.config import StudyConfig
from wattwise.experiment import TrialRecord
from wattwise.experiment import executor_ray as ray_module
from wattwise.experiment.executors import _ProcessPool
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.logs import THIRD_PARTY_LOG

#: A library outside wattwise whose ``run_trial`` makes noise, then fails the trial at once.
NOISY_LIBRARY = """
import logging
import warnings

from wattwise.experiment.executor_base import failed_record


def run_trial(spec, **kwargs):
    warnings.warn("To copy construct from a tensor, use sourceTensor.detach()", UserWarning)
    logging.getLogger("torch._dynamo").warning("Graph break from `Tensor.item()`")
    logging.getLogger("wattwise.experiment").warning("wattwise's own line")
    return failed_record(spec, "noisy trial")
"""
#: Started in every Python process that has the folder on its ``PYTHONPATH`` (the workers): the
#: runner those import is the noisy library's (the real one would take seconds to import).
SITECUSTOMIZE = """
import sys
import types

from noisylib import run_trial

runner = types.ModuleType("wattwise.experiment.runner")
runner.run_trial = run_trial
sys.modules[runner.__name__] = runner
"""


@pytest.fixture
def noisy_lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder of the noisy library (importable in this process too)."""
    lib = tmp_path / "lib"
    (lib / "noisylib").mkdir(parents=True)
    (lib / "noisylib" / "__init__.py").write_text(NOISY_LIBRARY)
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, "noisylib", raising=False)
    return lib


@pytest.fixture
def noisy_workers(noisy_lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes started from now on run the noisy ``run_trial``."""
    (noisy_lib / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(noisy_lib))


def _spec(tmp_path: Path) -> TrialSpec:
    return expand_grid(StudyConfig(name="logs", output_dir=str(tmp_path), width=0.25))[0]


def test_pool_workers_send_third_party_lines_to_the_study_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], noisy_workers: None
) -> None:
    study = tmp_path / "study"
    study.mkdir()
    records: list[TrialRecord] = []
    with third_party_log(study), _ProcessPool([{"OMP_NUM_THREADS": "1"}], ["w"]) as pool:
        pool.run(
            [_spec(tmp_path)],
            on_start=lambda spec: None,
            on_done=records.append,
            teacher_dir=study / "teachers",
        )
    err = capfd.readouterr().err
    assert [r.reason for r in records] == ["noisy trial"]  # it ran in the worker
    log = (study / THIRD_PARTY_LOG).read_text()
    assert "To copy construct from a tensor" in log and "UserWarning" in log
    assert "torch._dynamo" in log and "Graph break" in log
    assert "wattwise's own line" not in log
    assert "copy construct" not in err and "Graph break" not in err
    assert "wattwise's own line" in err  # wattwise's lines stay on the terminal
    lines = log.count("\n")
    assert f"third-party warnings: {lines} line(s) in {study / THIRD_PARTY_LOG}" in err


def test_a_ray_task_sends_third_party_lines_to_the_study_log(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    noisy_lib: Path,
) -> None:
    """The task's function as a Ray worker runs it; a study folder the worker cannot reach
    (another machine, no shared file system) leaves the lines where they were."""
    import wattwise.experiment.runner as runner

    monkeypatch.setattr(runner, "run_trial", importlib.import_module("noisylib").run_trial)
    study = tmp_path / "study"
    study.mkdir()
    spec = _spec(tmp_path)
    record = ray_module._ray_trial(spec.to_dict(), str(study / "teachers"), {})
    assert record["reason"] == "noisy trial"
    err = capfd.readouterr().err
    log = (study / THIRD_PARTY_LOG).read_text()
    assert "To copy construct" in log and "Graph break" in log
    assert "copy construct" not in err and "Graph break" not in err
    assert "wattwise's own line" not in log  # to wattwise's handlers (here pytest's)

    elsewhere = tmp_path / "elsewhere"
    record = ray_module._ray_trial(spec.to_dict(), str(elsewhere / "teachers"), {})
    assert record["reason"] == "noisy trial"
    assert "Graph break" in capfd.readouterr().err
    assert not elsewhere.exists()  # the worker creates no study folder of its own


@pytest.mark.slow
def test_ray_workers_send_third_party_lines_to_the_study_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], noisy_lib: Path
) -> None:
    """A local Ray instance whose workers run the noisy trial: the lines are in the study's log,
    not forwarded to the driver's stderr."""
    ray = pytest.importorskip("ray")
    from wattwise.experiment.executors import RayExecutor

    (noisy_lib / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"PYTHONPATH": str(noisy_lib)}
    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"env_vars": env})
    study = tmp_path / "study"
    study.mkdir()
    records: list[TrialRecord] = []
    try:
        executor = RayExecutor()
        executor.run(
            [_spec(tmp_path)],
            on_start=lambda spec: None,
            on_done=records.append,
            teacher_dir=study / "teachers",
        )
    finally:
        ray.shutdown()
    err: Any = capfd.readouterr().err
    assert [r.reason for r in records] == ["noisy trial"]
    log = (study / THIRD_PARTY_LOG).read_text()
    assert "To copy construct" in log and "Graph break" in log
    assert "Graph break" not in err
