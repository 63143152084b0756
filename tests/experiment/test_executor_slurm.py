"""The slurm executor (submitit job arrays), run on submitit's ``local`` cluster: the same code
path as on SLURM (a pickled task per trial, started in its own process, its signal handler, its
requeue), without a SLURM cluster. Each local job starts a Python process, so the study tests run
two trials at most."""

from __future__ import annotations

import importlib.util
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from wattwise.config import ExecutorSettings, StudyConfig, load_study_config, resolved_yaml
from wattwise.errors import ConfigError
from wattwise.experiment import ResultsStore, TrialRecord
from wattwise.experiment.executor_slurm import SlurmExecutor, SlurmTask, check_slurm
from wattwise.experiment.executors import create_executor
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.experiment.sweep import run_study

needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("submitit") is None, reason="needs submitit (wattwise[slurm])"
)


def config(tmp_path: Path, **changes: Any) -> StudyConfig:
    values: dict[str, Any] = {
        "name": "arrays",
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


def local(**changes: Any) -> ExecutorSettings:
    """Slurm settings on submitit's local cluster (the code path of SLURM, on this machine)."""
    return ExecutorSettings(kind="slurm", cluster="local", **changes)


def fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sbatch`` and ``srun`` on PATH, never run (what a login node has)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "srun"):
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\nexit 1\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


# --- settings ---------------------------------------------------------------------------------


def test_slurm_settings_are_validated_and_only_for_the_slurm_executor():
    settings = ExecutorSettings(
        kind="slurm",
        partition="gpu",
        account="proj",
        qos="normal",
        cpus_per_task=4,
        mem_gb=16,
        gpus_per_task=1,
        timeout_min=90,
        array_parallelism=8,
        trials_per_task=2,
        max_timeouts=1,
        log_dir="logs",
        setup=("module load cuda",),
    )
    assert (settings.partition, settings.gpus_per_task, settings.trials_per_task) == ("gpu", 1, 2)
    with pytest.raises(ConfigError, match=r"partition: only the 'slurm' executor takes partition"):
        ExecutorSettings(kind="local", partition="gpu")
    with pytest.raises(ConfigError, match=r"array_parallelism: only the 'slurm' executor"):
        ExecutorSettings(kind="ray", array_parallelism=2)
    with pytest.raises(ConfigError, match=r"timeout_min: must be > 0, got 0"):
        ExecutorSettings(kind="slurm", timeout_min=0)
    with pytest.raises(ConfigError, match=r"cluster: got 'pbs'; choose from: slurm, local"):
        ExecutorSettings(kind="slurm", cluster="pbs")


def test_a_slurm_study_round_trips_and_other_studies_gain_no_slurm_keys(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(
        "name: s\nexecutor: {kind: slurm, partition: gpu, gpus_per_task: 1, "
        "array_parallelism: 4, timeout_min: 120}\n"
    )
    loaded = load_study_config(study)
    assert loaded.executor == ExecutorSettings(
        kind="slurm", partition="gpu", gpus_per_task=1, array_parallelism=4, timeout_min=120
    )
    again = tmp_path / "again.yaml"
    again.write_text(resolved_yaml(loaded))
    assert load_study_config(again).executor == loaded.executor
    plain = resolved_yaml(StudyConfig(name="p"))
    assert "partition" not in plain and "array_parallelism" not in plain


# --- refusals ---------------------------------------------------------------------------------


@needs_submitit
def test_without_sbatch_the_slurm_executor_refuses_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    expected = r"^the slurm executor needs SLURM: no sbatch on PATH \(.*cluster: local.*\)$"
    with pytest.raises(ConfigError, match=expected):
        create_executor(ExecutorSettings(kind="slurm"))
    check_slurm(local())  # the local cluster needs no SLURM


def test_without_submitit_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ConfigError, match=r"^the slurm executor needs submitit: pip install "):
        check_slurm(local())
    with pytest.raises(ConfigError, match=r"pip install 'wattwise\[slurm\]'$"):
        create_executor(local())


def test_the_cli_executor_flag_keeps_the_study_slurm_settings():
    from wattwise.cli.experiment import _with_executor

    ours = StudyConfig(name="s", executor=ExecutorSettings(kind="slurm", partition="gpu"))
    assert _with_executor(ours, "slurm", None).executor == ours.executor
    plain = StudyConfig(name="s")
    assert _with_executor(plain, "slurm", None).executor == ExecutorSettings(kind="slurm")
    assert _with_executor(ours, "local", None).executor == ExecutorSettings(kind="local")


# --- what reaches sbatch ----------------------------------------------------------------------


@needs_submitit
def test_the_settings_reach_the_sbatch_script(tmp_path, monkeypatch):
    fake_sbatch(tmp_path, monkeypatch)
    settings = ExecutorSettings(
        kind="slurm",
        partition="gpu",
        account="proj",
        qos="high",
        cpus_per_task=4,
        mem_gb=16,
        gpus_per_task=1,
        timeout_min=90,
        array_parallelism=3,
        setup=("module load cuda",),
    )
    executor = SlurmExecutor(settings, folder=tmp_path / "study")
    assert (executor.name, executor.slots) == ("slurm", 3)
    inner = executor.submitit_executor("arrays")
    assert inner.cluster == "slurm"
    assert inner.folder == (tmp_path / "study" / "slurm" / "%j").absolute()
    script = inner._executor._make_submission_file_text("python -m x", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        "#SBATCH --qos=high",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16GB",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --time=90",
        "#SBATCH --job-name=wattwise-arrays",
        "module load cuda",
    ):
        assert line in script
    assert inner._executor.parameters["array_parallelism"] == 3
    assert inner._executor.max_num_timeout == 3  # the default of max_timeouts


@needs_submitit
def test_the_defaults_ask_for_an_hour_and_no_gpu(tmp_path, monkeypatch):
    fake_sbatch(tmp_path, monkeypatch)
    executor = SlurmExecutor(ExecutorSettings(kind="slurm"), folder=tmp_path)
    script = executor.submitit_executor("s")._executor._make_submission_file_text("x", "u")
    assert "#SBATCH --time=60" in script and "gpus" not in script and "--partition" not in script
    assert executor.slots == 16 and executor.trials_per_task == 1


# --- requeue, in this process -----------------------------------------------------------------


class _Interrupted(BaseException):
    """Stands for the job's end after its checkpoint (the signal handler exits the process)."""


class _Counting(SlurmTask):
    """Records its trials without training; the second trial of the first attempt is where the
    job is "preempted": the checkpoint is taken and pickled as submitit's handler does."""

    saved: bytes = b""

    def run_one(self, spec: TrialSpec) -> TrialRecord:
        if self.attempt == 1 and spec.lr == 0.1:
            delayed = self.checkpoint([s.to_dict() for s in self.batch])
            type(self).saved = pickle.dumps(delayed)
            raise _Interrupted
        return TrialRecord(trial_id=spec.trial_id, study=spec.study, spec=spec.to_dict())


@needs_submitit
def test_a_checkpoint_keeps_the_finished_trials_and_counts_the_attempts(tmp_path):
    specs = expand_grid(config(tmp_path))
    task = _Counting(None, {})
    task._cache[("data",)] = "large"  # a dataset: not part of the checkpoint
    with pytest.raises(_Interrupted):
        task([s.to_dict() for s in specs])
    requeued = pickle.loads(_Counting.saved)
    assert requeued.function._cache == {}
    records = [TrialRecord.from_dict(d) for d in requeued.result()]
    assert [r.trial_id for r in records] == [s.trial_id for s in specs]
    assert [r.details["slurm"]["attempts"] for r in records] == [1, 2]  # the first was kept
    assert requeued.function.attempt == 2


class _TimedOut(SlurmTask):
    """The first trial is where submitit gives up: the checkpoint is taken, then its
    ``UncompletedJobError`` fails the running trial (``run_trial`` records it)."""

    def run_one(self, spec: TrialSpec) -> TrialRecord:
        self.checkpoint([s.to_dict() for s in self.batch])
        record = TrialRecord(trial_id=spec.trial_id, study=spec.study, spec=spec.to_dict())
        return record.failed("UncompletedJobError: Job not requeued because: timed-out too many")


@needs_submitit
def test_a_task_that_is_not_requeued_fails_the_trials_it_had_not_started(tmp_path):
    specs = expand_grid(config(tmp_path))
    records = [TrialRecord.from_dict(d) for d in _TimedOut(None, {})([s.to_dict() for s in specs])]
    assert [r.status for r in records] == ["failed", "failed"]
    assert records[0].reason.startswith("UncompletedJobError: Job not requeued")
    assert records[1].reason == "its SLURM task timed out too many times before the trial started"
    assert [r.details["slurm"]["attempts"] for r in records] == [1, 0]


class _FinishedJob:
    """A finished submitit job whose result raises ``error``."""

    job_id = "7_1"
    state = "FAILED"

    def __init__(self, error: Exception, folder: Path) -> None:
        from submitit.core.utils import JobPaths

        self.error = error
        self.paths = JobPaths(folder, job_id=self.job_id)

    def result(self) -> Any:
        raise self.error

    def submission(self) -> Any:
        raise AssertionError("never submitted")


@needs_submitit
def test_a_task_without_records_fails_its_trials_with_the_reason(tmp_path):
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from wattwise.experiment.executor_slurm import _Submitted

    specs = expand_grid(config(tmp_path))
    executor = SlurmExecutor(local(), folder=tmp_path)
    trace = "Traceback (most recent call last):\n  ...\nRuntimeError: no space left"
    raised = FailedJobError(
        f"Job (task=0) failed during processing with trace:\n{'-' * 22}\n{trace}\n{'-' * 22}\n"
        "You can check full logs with 'job.stderr(0)'"
    )
    records = executor._collect(_Submitted(_FinishedJob(raised, tmp_path), list(specs)))
    assert [r.reason for r in records] == ["SLURM task 7_1 failed: RuntimeError: no space left"] * 2
    lost = UncompletedJobError("Job 7_1 (task: 0) with path x\nhas not produced any output")
    (record,) = executor._collect(_Submitted(_FinishedJob(lost, tmp_path), specs[:1]))
    assert record.status == "failed" and record.trial_id == specs[0].trial_id
    assert record.reason.startswith("SLURM task 7_1 ended without a result (state FAILED); its log")


# --- on the local cluster ---------------------------------------------------------------------


@needs_submitit
def test_a_study_through_local_jobs_requeues_a_preempted_trial_and_fails_a_dead_one(tmp_path):
    """Two trials, one task each, in parallel: the first is preempted (SLURM's signal, USR2)
    after its training saved epoch 1, requeued by submitit, and continues with epoch 2; the
    second's process is killed (SIGKILL): it is failed with the reason and the first goes on.
    The sweep stores each trial once."""

    class Scripted(SlurmTask):  # pickled by value into the jobs
        def run_one(self, spec: TrialSpec) -> TrialRecord:
            if spec.lr == 0.1:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.attempt == 1:  # preempted once the training state of epoch 1 is saved
                from wattwise.train.resume import ResumeFile

                save = ResumeFile.save

                def save_then_preempt(resume: ResumeFile, state: dict[str, Any]) -> None:
                    save(resume, state)
                    os.kill(os.getpid(), signal.SIGUSR2)  # the handler checkpoints, requeues

                ResumeFile.save = save_then_preempt  # type: ignore[method-assign]
            return super().run_one(spec)

    study = config(tmp_path, epochs=[2], checkpoint_every_s=0)
    preempted, killed = expand_grid(study)
    executor = SlurmExecutor(local(array_parallelism=2), task_class=Scripted)
    summary = run_study(study, executor=executor)
    assert (summary.ok, summary.failed, summary.ran) == (1, 1, 2)
    with ResultsStore(summary.store_path) as store:
        records = store.records()
        assert sorted(r.trial_id for r in records) == sorted([preempted.trial_id, killed.trial_id])
        ok, failed = store.get(preempted.trial_id), store.get(killed.trial_id)
    assert ok.status == "ok" and ok.attempts == 1 and ok.phases["train"]["total_energy_j"] > 0
    assert ok.details["slurm"]["attempts"] == 2 and ok.details["slurm"]["cluster"] == "local"
    # the requeued attempt continued the training: epoch 1 was not trained again
    assert ok.details["train"]["resumed"] == {"from_epoch": 1, "attempts": 2}
    assert [e["epoch"] for e in ok.history] == [1, 2]
    suspect = ok.phases["train"]["suspect"]  # its energy: a lower bound, labelled
    assert suspect and all("resumed after epoch 1" in s for s in suspect)
    assert not list((summary.study_dir / "checkpoints").glob("*"))  # nothing left to resume
    assert failed.status == "failed"
    assert failed.reason.startswith("SLURM task ") and "ended without a result" in failed.reason
    logs = summary.study_dir / "slurm"
    assert list(logs.glob("*/*_log.out"))  # submitit's logs, in the study folder


@pytest.mark.slow
@needs_submitit
def test_a_batch_of_trials_runs_in_one_local_job(tmp_path):
    study = config(tmp_path)
    executor = SlurmExecutor(local(trials_per_task=2))
    summary = run_study(study, executor=executor)
    assert (summary.ok, summary.failed, summary.ran) == (2, 0, 2)
    with ResultsStore(summary.store_path) as store:
        jobs = {r.details["slurm"]["job_id"] for r in store.records()}
    assert len(jobs) == 1
