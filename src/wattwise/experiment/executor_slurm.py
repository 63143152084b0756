"""SLURM job arrays through submitit: one array task per trial (or per ``trials_per_task``).

    settings = ExecutorSettings(kind="slurm", partition="gpu", gpus_per_task=1, timeout_min=120)
    with create_executor(settings) as executor:
        executor.run(specs, on_start=begin, on_done=finish, teacher_dir=study_dir / "teachers")

The sweep submits its trials as a job array (``sbatch --array=0-N%<array_parallelism>``); each
array task unpickles a :class:`SlurmTask`, runs its trials with
:func:`~wattwise.experiment.runner.run_trial` (no store) and returns their records, which
submitit pickles next to the task's logs in ``<study folder>/<log_dir>/<job id>/``. The sweep
polls the jobs and hands each record to ``on_done``: it stays the one writer of the store.
``on_start`` is called when a task leaves SLURM's queue (a trial waiting in the queue is not
``running``; its task runs it whatever ``on_start`` returns: a second sweep of the same study
duplicates work, and its records of trials stored first by the other are dropped);
``on_epoch`` is never called (a task reports only its records; the records keep their
predictions). The study folder (records, teachers, data) must be on a file system that
the compute nodes share with the node the sweep runs on.

Requeue: when SLURM signals a task (``USR2``, ``signal_delay_s`` before its time limit, and on
preemption where the cluster sends it), submitit's handler calls :meth:`SlurmTask.checkpoint`,
pickles the task as it is (the records of its finished trials included) and requeues it. The
trial that was running starts again and its training continues after the last epoch it saved in
``<study folder>/checkpoints/`` (:mod:`wattwise.train.resume`, at most every
``checkpoint_every_s``; ``details["train"]["resumed"]``); its record counts the starts
(``details["slurm"]["attempts"]``). A
task that timed out ``max_timeouts`` times is not requeued: its running trial fails with the
reason, the trials it had not started fail too.

A task that ends without its records (killed, out of memory, cancelled) fails its trials with
the reason and the log's path (the records of trials it finished before a checkpoint are kept);
the other tasks go on. ``cluster: local`` runs the same code path with submitit's local
executor (a process per task, its signal handler and its requeue), for testing without SLURM.

Importing this module is cheap (no submitit, no torch): array tasks unpickle it when they start.
It does not import :mod:`wattwise.experiment.executors`, which imports it (``create_executor``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wattwise.config import ExecutorSettings
from wattwise.energy.sharing import parallel_env
from wattwise.errors import ConfigError
from wattwise.experiment.executor_base import Closing, failed_record
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec

#: Defaults of the ``executor`` keys a study leaves out (``None``).
DEFAULT_TIMEOUT_MIN = 60
DEFAULT_ARRAY_PARALLELISM = 16
DEFAULT_MAX_TIMEOUTS = 3
DEFAULT_LOG_DIR = "slurm"
#: Seconds between two looks at the jobs: a result file is checked each time, SLURM's state
#: (``sacct``) at most as often as submitit's watcher allows.
POLL_S = {"slurm": 5.0, "local": 0.2}
#: How long a finished job's result file may take to appear (a shared file system lags).
RESULT_WAIT_S = {"slurm": 15.0, "local": 0.0}
#: SLURM states of a job that has not started (yet, or again).
_WAITING = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "UNKNOWN"}
)
_INSTALL = "pip install 'wattwise[slurm]'"


def check_slurm(settings: ExecutorSettings) -> Any:
    """submitit, once it is known that ``settings`` can run here (returned, imported).

    Raises:
        ConfigError: One line: submitit is not installed, or the ``slurm`` cluster has no
            ``sbatch`` (or ``srun``) on PATH.
    """
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"the slurm executor needs submitit: {_INSTALL}") from None
    if (settings.cluster or "slurm") == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise ConfigError(
                f"the slurm executor needs SLURM: no {missing[0]} on PATH (run the "
                "sweep where jobs are submitted; executor.cluster: local runs the same code "
                "path on this machine, for testing)"
            )
    return submitit


class SlurmTask:
    """What one array task runs: its trials (spec dicts) in order, returning their record
    dicts; submitit's ``Checkpointable`` protocol (:meth:`checkpoint`) requeues it with what it
    finished.

    Args:
        teacher_dir: Where trained teachers are saved and looked up (the study's).
        env: Added to the task's environment before anything runs
            (:func:`~wattwise.energy.sharing.parallel_env`).

    Attributes:
        attempt: How many times this task has started (1, then 2 after a requeue...).
        records: Trial id -> record dict of each trial it finished, kept across requeues.
        starts: Trial id -> how many times the trial was started.
        batch: The trials of the current call.
    """

    def __init__(self, teacher_dir: str | None, env: Mapping[str, str]) -> None:
        self.teacher_dir = teacher_dir
        self.env = dict(env)
        self.attempt = 0
        self.records: dict[str, dict[str, Any]] = {}
        self.starts: dict[str, int] = {}
        self.batch: list[TrialSpec] = []
        self.stopping = False
        self._cache: dict[tuple[Any, ...], Any] = {}

    def __call__(self, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        self.attempt += 1
        self.stopping = False
        os.environ.update(self.env)
        self.batch = [TrialSpec.from_dict(spec) for spec in specs]
        for spec in self.batch:
            if spec.trial_id in self.records:  # finished before a requeue
                continue
            if self.stopping:  # timed out, not requeued: the job ends at its time limit
                record = failed_record(
                    spec, "its SLURM task timed out too many times before the trial started"
                )
            else:
                self.starts[spec.trial_id] = self.starts.get(spec.trial_id, 0) + 1
                record = self.run_one(spec)
            self.records[spec.trial_id] = self._tagged(record).to_dict()
        return [self.records[spec.trial_id] for spec in self.batch]

    def run_one(self, spec: TrialSpec) -> TrialRecord:
        """One trial, in this process, with the task's data cache."""
        from wattwise.experiment.runner import run_trial

        return run_trial(spec, data_cache=self._cache, teacher_dir=self.teacher_dir)

    def checkpoint(self, specs: Sequence[Mapping[str, Any]]) -> Any:
        """Called by submitit's signal handler (time limit, preemption): the task to requeue,
        this one as it is, with the same trials (the data cache is not pickled)."""
        from submitit.core.utils import DelayedSubmission

        self.stopping = True  # read only if submitit does not requeue (see __call__)
        return DelayedSubmission(self, specs)

    def _tagged(self, record: TrialRecord) -> TrialRecord:
        job_id, cluster = None, None
        with contextlib.suppress(Exception):  # outside a submitit job there is none
            import submitit

            environment = submitit.JobEnvironment()
            job_id, cluster = environment.job_id, environment.cluster
        slurm = {
            "job_id": job_id,
            "cluster": cluster,
            "attempts": self.starts.get(record.trial_id, 0),
            "task_attempt": self.attempt,
        }
        return replace(record, details={**record.details, "slurm": slurm})

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}  # datasets and teachers: loaded again after a requeue
        return state


@dataclass
class _Submitted:
    job: Any
    specs: list[TrialSpec]
    started: bool = False


class SlurmExecutor(Closing):
    """Trials as SLURM array tasks (see the module).

    Args:
        settings: The study's ``executor`` section (``kind: slurm``).
        folder: The study folder, where the logs go (default: the parent of the
            ``teacher_dir`` the sweep passes to :meth:`run`, ``<study folder>/teachers``).
        task_class: What each array task runs (a :class:`SlurmTask`).

    Raises:
        ConfigError: submitit is not installed, or SLURM is not there (see
            :func:`check_slurm`).
    """

    name = "slurm"

    def __init__(
        self,
        settings: ExecutorSettings,
        *,
        folder: str | Path | None = None,
        task_class: type[SlurmTask] = SlurmTask,
    ) -> None:
        self._submitit = check_slurm(settings)
        self.settings = settings
        self.cluster: str = settings.cluster or "slurm"
        self.folder = None if folder is None else Path(folder)
        self.task_class = task_class
        self.slots = settings.array_parallelism or DEFAULT_ARRAY_PARALLELISM
        self.trials_per_task = settings.trials_per_task or 1
        #: What each task adds to its environment: up to ``slots`` trials may share a node.
        self.worker_env = parallel_env(self.slots, own_gpu=bool(settings.gpus_per_task))
        self._inflight: list[_Submitted] = []

    def submitit_executor(self, study: str, folder: str | Path | None = None) -> Any:
        """submitit's ``AutoExecutor`` for the study's jobs, logging to
        ``<folder>/<log_dir>/<job id>/`` (``folder`` default: the executor's)."""
        root = folder if folder is not None else self.folder
        if root is None:
            raise ConfigError("the slurm executor needs the study folder for its logs")
        s = self.settings
        logs = Path(root).absolute() / (s.log_dir or DEFAULT_LOG_DIR) / "%j"
        timeouts = s.max_timeouts if s.max_timeouts is not None else DEFAULT_MAX_TIMEOUTS
        executor = self._submitit.AutoExecutor(
            folder=logs, cluster=self.cluster, **{f"{self.cluster}_max_num_timeout": timeouts}
        )
        generic: dict[str, Any] = {
            "name": f"wattwise-{study}",
            "timeout_min": s.timeout_min or DEFAULT_TIMEOUT_MIN,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": s.cpus_per_task,
            "mem_gb": s.mem_gb,
            "gpus_per_node": s.gpus_per_task or None,
        }
        specific = {
            "slurm_partition": s.partition,
            "slurm_account": s.account,
            "slurm_qos": s.qos,
            "slurm_array_parallelism": self.slots,
            f"{self.cluster}_setup": list(s.setup) if s.setup else None,
        }
        given = {k: v for k, v in {**generic, **specific}.items() if v is not None}
        executor.update_parameters(**given)
        return executor

    def run(
        self,
        specs: Sequence[TrialSpec],
        *,
        on_start: Callable[[TrialSpec], None],
        on_done: Callable[[TrialRecord], None],
        teacher_dir: str | Path | None = None,
        on_epoch: Callable[[TrialSpec, Any], None] | None = None,
    ) -> None:
        del on_epoch  # a task reports only its records (see the module)
        if not specs:
            return
        folder = self.folder or (None if teacher_dir is None else Path(teacher_dir).parent)
        executor = self.submitit_executor(specs[0].study, folder)
        where = None if teacher_dir is None else str(Path(teacher_dir).absolute())
        task = self.task_class(where, self.worker_env)
        n = self.trials_per_task
        queue = deque(list(specs[i : i + n]) for i in range(0, len(specs), n))
        inflight = self._inflight
        try:
            while queue or inflight:
                # SLURM throttles an array itself; the local cluster would start every task
                room = len(queue) if self.cluster == "slurm" else self.slots - len(inflight)
                if queue and room > 0:
                    batches = [queue.popleft() for _ in range(min(room, len(queue)))]
                    inflight.extend(self._submit(executor, task, batches))
                for item in list(inflight):
                    done = item.job.done()
                    if not item.started and (done or _left_the_queue(item.job)):
                        item.started = True
                        for spec in item.specs:
                            on_start(spec)
                    if done:
                        inflight.remove(item)
                        for record in self._collect(item):
                            on_done(record)
                if inflight:
                    time.sleep(POLL_S[self.cluster])
        except BaseException:
            self._cancel()
            raise

    def _submit(
        self, executor: Any, task: SlurmTask, batches: list[list[TrialSpec]]
    ) -> list[_Submitted]:
        try:
            jobs = executor.map_array(task, [[s.to_dict() for s in batch] for batch in batches])
        except Exception as err:  # sbatch refused it (partition, account, array size...)
            line = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
            raise ConfigError(
                f"cannot submit the {self.cluster} job array: {type(err).__name__}: {line}"
            ) from err
        for job in jobs:
            job._results_timeout_s = RESULT_WAIT_S[self.cluster]
        return [_Submitted(job, batch) for job, batch in zip(jobs, batches, strict=True)]

    def _collect(self, item: _Submitted) -> list[TrialRecord]:
        """The records of a finished task's trials; failed records for those it did not
        report."""
        job = item.job
        try:
            found = {d["trial_id"]: TrialRecord.from_dict(d) for d in job.result()}
            reason = f"SLURM task {job.job_id} returned no record of the trial"
        except Exception as err:
            reason = _failure(job, err)
            found = _checkpointed(job)
        return [found.get(s.trial_id) or failed_record(s, reason) for s in item.specs]

    def _cancel(self) -> None:
        for item in self._inflight:
            with contextlib.suppress(Exception):
                item.job.cancel(check=False)
        self._inflight.clear()

    def close(self) -> None:
        """Cancels the tasks still in flight (none once :meth:`run` returned)."""
        self._cancel()


def _left_the_queue(job: Any) -> bool:
    with contextlib.suppress(Exception):
        state = str(job.state).split()
        return bool(state) and state[0] not in _WAITING
    return False


def _failure(job: Any, err: Exception) -> str:
    """Why a task left no records, in one line."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    if isinstance(err, FailedJobError):  # the task raised: the last line of its traceback
        parts = str(err).split("-" * 22)
        trace = parts[1] if len(parts) > 2 else str(err)
        lines = [line.strip() for line in trace.splitlines() if line.strip()]
        return f"SLURM task {job.job_id} failed: {lines[-1] if lines else type(err).__name__}"
    if isinstance(err, UncompletedJobError):  # killed, out of memory, cancelled, node failure
        return (
            f"SLURM task {job.job_id} ended without a result (state {_state(job)}); "
            f"its log: {job.paths.stderr}"
        )
    text = str(err).strip().splitlines()
    return f"SLURM task {job.job_id} failed: {type(err).__name__}: {text[0] if text else ''}"


def _state(job: Any) -> str:
    with contextlib.suppress(Exception):
        return str(job.state)
    return "unknown"


def _checkpointed(job: Any) -> dict[str, TrialRecord]:
    """The records a task had finished when it was last checkpointed (none if it never was)."""
    with contextlib.suppress(Exception):
        task = job.submission().function
        if isinstance(task, SlurmTask):
            return {k: TrialRecord.from_dict(v) for k, v in task.records.items()}
    return {}
