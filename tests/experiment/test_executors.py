"""Executors: local, worker processes pinned by environment (the local-gpus mechanism), Ray."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.experiment.test_sweep_prediction import Predictions, _check_live
from tests.experiment.test_sweep_prediction import config as prediction_config
from wattwise.config import ExecutorSettings, StudyConfig
from wattwise.energy.sharing import ENV_OWN_DEVICES, ENV_PARALLEL_TRIALS
from wattwise.errors import ConfigError
from wattwise.experiment import ResultsStore, TrialRecord
from wattwise.experiment import executors as executors_module
from wattwise.experiment.executor_ray import _ray_trial
from wattwise.experiment.executors import (
    LocalExecutor,
    LocalGpuExecutor,
    RayExecutor,
    _ProcessPool,
    create_executor,
)
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.experiment.sweep import run_study
from wattwise.train.loop import EpochRecord


def config(tmp_path: Any, **changes: Any) -> StudyConfig:
    values: dict[str, Any] = {
        "name": "exec",
        "output_dir": str(tmp_path),
        "width": 0.25,
        "batch_sizes": [64],
        "learning_rates": [0.05, 0.1],
        "epochs": [1],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0.05, "inference_batch_size": 32},
    }
    values.update(changes)
    return StudyConfig(**values)


class Calls:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.records: list[TrialRecord] = []

    def start(self, spec: TrialSpec) -> None:
        self.events.append(("start", spec.trial_id))

    def done(self, record: TrialRecord) -> None:
        self.events.append(("done", record.trial_id))
        self.records.append(record)


def test_local_executor_runs_in_order_and_keeps_its_cache(tmp_path):
    specs = expand_grid(config(tmp_path))
    calls = Calls()
    with LocalExecutor() as executor:
        executor.run(specs, on_start=calls.start, on_done=calls.done)
        assert [e for e, _ in calls.events] == ["start", "done", "start", "done"]
        assert [r.status for r in calls.records] == ["ok", "ok"]
        assert any(key[0] == "data" for key in executor.cache)  # loaded once, reused
    assert executor.cache == {}  # closed


def test_create_executor_follows_the_settings():
    assert isinstance(create_executor(None), LocalExecutor)
    assert isinstance(create_executor(ExecutorSettings(kind="local")), LocalExecutor)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_local_gpus_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^no GPU visible for the local-gpus executor$"):
        LocalGpuExecutor()
    with pytest.raises(ConfigError, match="no GPU visible"):
        create_executor(ExecutorSettings(kind="local-gpus", gpus=(0,)))


def test_local_gpus_pins_one_worker_per_gpu(monkeypatch):
    monkeypatch.setattr(executors_module, "visible_gpus", lambda: ["3", "5"])
    executor = LocalGpuExecutor()
    assert executor.slots == 2
    # Each worker has a GPU of its own; the CPU packages and DRAM are shared by both.
    shared = {ENV_PARALLEL_TRIALS: "2", ENV_OWN_DEVICES: "gpu"}
    assert executor.envs == [
        {"CUDA_VISIBLE_DEVICES": "3", **shared},
        {"CUDA_VISIBLE_DEVICES": "5", **shared},
    ]
    assert LocalGpuExecutor([1]).envs == [{"CUDA_VISIBLE_DEVICES": "5"}]  # alone
    with pytest.raises(ConfigError, match=r"GPU 2 is not visible \(visible: 0..1\)"):
        LocalGpuExecutor([2])


def test_visible_gpus_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    assert executors_module.visible_gpus() == ["4", "7"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert executors_module.visible_gpus() == ["0", "1"]


def test_parallel_workers_are_told_that_they_share_the_machine():
    """Device-wide energy (RAPL, a GPU all workers see) of parallel trials is marked shared."""
    pool = _ProcessPool([{"OMP_NUM_THREADS": "1"}] * 3, ["a", "b", "c"])
    assert pool.envs == [{"OMP_NUM_THREADS": "1", ENV_PARALLEL_TRIALS: "3"}] * 3
    assert _ProcessPool([{"OMP_NUM_THREADS": "1"}], ["only"]).envs == [{"OMP_NUM_THREADS": "1"}]


class _KillFirst(_ProcessPool):
    """A pool whose first trial's worker is killed (SIGKILL) right after it is handed out."""

    def run(self, specs: Any, *, on_start: Any, on_done: Any, **kwargs: Any) -> None:
        def start(spec: TrialSpec) -> None:
            on_start(spec)
            if spec is specs[0]:
                pid = self._workers[0].process.pid
                threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()

        super().run(specs, on_start=start, on_done=on_done, **kwargs)


def test_worker_processes_run_trials_and_a_dead_worker_fails_only_its_trial(tmp_path):
    """The local-gpus mechanism on CPU: two pinned workers (here with no GPU visible); the
    driver writes every record; a killed worker fails its trial and is replaced."""
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    study = config(tmp_path, seeds=[0, 1])
    first = expand_grid(study)[0]
    with _KillFirst([env, env], ["cpu 0", "cpu 1"]) as pool:
        summary = run_study(study, executor=pool)
    assert (summary.ok, summary.failed, summary.ran) == (3, 1, 4)
    with ResultsStore(summary.store_path) as store:
        failed = store.get(first.trial_id)
        assert failed.status == "failed"
        assert failed.reason == "worker cpu 0 died (exit code -9) while running the trial"
        for record in store.records("ok"):
            assert record.environment["cuda_visible_devices"] == ""  # ran in a pinned worker
            assert record.attempts == 1 and record.phases


def test_ray_missing_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'wattwise\[ray\]'"):
        RayExecutor()


def test_an_epoch_a_ray_task_cannot_send_does_not_fail_its_trial(tmp_path):
    """The task's epoch queue is gone (its actor died): the trial runs on and returns its record."""

    class Gone:
        def put(self, item: Any) -> None:
            raise ConnectionError("the queue's actor died")

    (spec,) = expand_grid(config(tmp_path, learning_rates=[0.05], epochs=[2]))
    done = TrialRecord.from_dict(_ray_trial(spec.to_dict(), None, {}, Gone()))
    assert done.status == "ok" and len(done.history) == 2


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One local Ray instance (two CPUs) for this module's Ray tests: it takes ~15 s to start."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error")
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_executor_on_a_local_instance(local_ray, tmp_path):
    ray = local_ray
    executor = RayExecutor()
    assert executor.slots == 2 and executor._options == {"num_cpus": 1}
    assert executor.worker_env == {ENV_PARALLEL_TRIALS: "2"}  # what each task applies
    summary = run_study(config(tmp_path), executor=executor)
    assert (summary.ok, summary.failed, summary.ran) == (2, 0, 2)
    with ResultsStore(summary.store_path) as store:  # written by the driver
        assert [r.status for r in store.records()] == ["ok", "ok"]
        assert all(r.phases["train"]["total_energy_j"] > 0 for r in store.records())
    executor.close()  # not started by the executor: left running
    assert ray.is_initialized()


def test_ray_tasks_report_each_epoch_to_the_driver_as_it_ends(local_ray, tmp_path):
    """Every epoch of each task's training reaches ``on_epoch`` in the driver, in order and
    before its trial's record, exactly as the record keeps it; closing the executor kills its
    epoch queue's actor."""
    specs = expand_grid(config(tmp_path, epochs=[2]))
    seen: list[tuple[str, str, Any]] = []
    records: list[TrialRecord] = []

    def done(record: TrialRecord) -> None:
        seen.append(("done", record.trial_id, None))
        records.append(record)

    executor = RayExecutor()
    executor.run(
        specs,
        on_start=lambda spec: None,
        on_done=done,
        on_epoch=lambda spec, epoch: seen.append(("epoch", spec.trial_id, epoch)),
    )
    assert sorted(r.trial_id for r in records) == sorted(s.trial_id for s in specs)
    for record in records:
        mine = [(kind, epoch) for kind, trial, epoch in seen if trial == record.trial_id]
        assert [kind for kind, _ in mine] == ["epoch", "epoch", "done"]
        epochs = [epoch for kind, epoch in mine if kind == "epoch"]
        assert all(isinstance(epoch, EpochRecord) for epoch in epochs)
        assert [epoch.to_dict() for epoch in epochs] == list(record.history)
    actor = executor._epochs.actor  # the queue's
    executor.close()
    with pytest.raises(local_ray.exceptions.RayActorError):
        local_ray.get(actor.qsize.remote())  # killed


def test_a_ray_study_predicts_its_running_trials_live(local_ray, tmp_path):
    """A sweep on the Ray executor tells its reporter each running trial's prediction after
    its first epoch, as it does with worker processes (test_sweep_prediction)."""
    study = prediction_config(tmp_path, epochs=[2], learning_rates=[0.05, 0.1])
    reporter = Predictions()
    with RayExecutor() as executor:
        summary = run_study(study, executor=executor, reporter=reporter)
    assert (summary.ok, summary.failed) == (2, 0)
    for spec in expand_grid(study):
        _check_live(reporter, spec.trial_id, 2)
