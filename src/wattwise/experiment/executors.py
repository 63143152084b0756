"""Where trials run: this process, one worker process per local GPU, a Ray cluster, or SLURM
job arrays (:mod:`wattwise.experiment.executor_ray`, :mod:`wattwise.experiment.executor_slurm`).

    executor = create_executor(config.executor)       # from the study's ``executor`` section
    with executor:
        executor.run(specs, on_start=begin, on_done=finish, teacher_dir=study_dir / "teachers")

Every executor runs :func:`wattwise.experiment.runner.run_trial` without a store and hands each
finished :class:`TrialRecord` to ``on_done`` in the driver process, which writes the store:
workers never touch it. ``on_start(spec)`` is called in the driver just before a trial is handed
to a worker (the sweep claims it and marks it ``running`` there); when it returns ``False``
(another sweep of the study holds the trial) the trial is skipped. ``on_epoch(spec,
epoch_record)``, when given, is called in the driver with each finished epoch of a running
trial's own training (not the recipe steps' fine-tuning: see ``run_trial``), as it happens,
where the executor can report it live: ``local`` and ``local-gpus`` do (a worker sends each
epoch's record over its pipe), and so does ``ray`` (each task puts its epochs on a Ray queue
that the driver reads between waits); ``slurm`` does not (its jobs report only their records;
a record still keeps the predictions, ``details["prediction"]``).

Executors that run several trials at once on a machine say so in every worker's environment
(:func:`wattwise.energy.sharing.parallel_env`), so that device-wide energy (RAPL, a GPU that the
workers share) is marked ``shared`` in each trial's measurements.

Importing this module is cheap (no torch, no Ray): workers import the runner when they start.

The protocol and the failed record are in :mod:`.executor_base`; Ray in :mod:`.executor_ray`.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattwise.config import ExecutorSettings
from wattwise.energy.sharing import parallel_env
from wattwise.errors import ConfigError
from wattwise.experiment.executor_base import (
    Closing,
    Executor,
    OnDone,
    OnEpoch,
    OnStart,
    failed_record,
)
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec

if TYPE_CHECKING:
    from wattwise.experiment.executor_ray import RayExecutor

__all__ = ["Executor", "LocalExecutor", "LocalGpuExecutor", "RayExecutor", "create_executor"]
__all__ += ["failed_record", "visible_gpus"]


def __getattr__(name: str) -> Any:
    """``RayExecutor`` from here too (its module imports Ray's glue only when used)."""
    if name == "RayExecutor":
        from wattwise.experiment.executor_ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_executor(settings: ExecutorSettings | None = None) -> Executor:
    """The executor a study's ``executor`` section describes.

    Raises:
        ConfigError: ``local-gpus`` without a visible GPU, ``ray`` without Ray installed,
            ``slurm`` without submitit or without SLURM (:mod:`.executor_slurm`).
    """
    settings = settings or ExecutorSettings()
    if settings.kind == "local-gpus":
        return LocalGpuExecutor(settings.gpus)
    if settings.kind == "ray":
        from wattwise.experiment.executor_ray import RayExecutor

        return RayExecutor(settings.address)
    if settings.kind == "slurm":
        from wattwise.experiment.executor_slurm import SlurmExecutor

        return SlurmExecutor(settings)
    return LocalExecutor()


# --- local, sequential ------------------------------------------------------------------------


class LocalExecutor(Closing):
    """One trial at a time, in this process (the default).

    Datasets and trained teachers stay in ``cache`` between trials (and between ``run`` calls)
    until :meth:`close`.
    """

    name = "local"
    slots = 1

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, ...], Any] = {}

    def run(
        self,
        specs: Sequence[TrialSpec],
        *,
        on_start: OnStart,
        on_done: OnDone,
        teacher_dir: str | Path | None = None,
        on_epoch: OnEpoch | None = None,
    ) -> None:
        from wattwise.experiment.runner import run_trial

        for spec in specs:
            if on_start(spec) is False:  # another sweep holds it
                continue
            told = None if on_epoch is None else functools.partial(on_epoch, spec)
            on_done(run_trial(spec, data_cache=self.cache, teacher_dir=teacher_dir, on_epoch=told))

    def close(self) -> None:
        self.cache.clear()


# --- local worker processes -------------------------------------------------------------------


def _worker_main(env: Mapping[str, str], conn: Connection, teacher_dir: str | None) -> None:
    """A worker process: applies ``env`` before torch is imported, then runs trials it is sent
    (spec dicts) until it receives ``None``. For each trial it sends ``("epoch", epoch record
    dict)`` for every epoch of the trial's training as it ends, then ``("record", record
    dict)``.

    Third-party warnings and log lines go to the study folder's ``third_party.log``, as the
    driver's do (:func:`wattwise.logs.route_worker_third_party`); wattwise's stay on stderr."""
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides; it terminates workers
    from wattwise.logs import route_worker_third_party

    with route_worker_third_party(teacher_dir):  # after env: it imports torch
        _serve(conn, teacher_dir)


def _serve(conn: Connection, teacher_dir: str | None) -> None:
    """The worker's loop (see :func:`_worker_main`)."""
    from wattwise.experiment.runner import run_trial

    cache: dict[tuple[Any, ...], Any] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        spec = TrialSpec.from_dict(message)

        def send_epoch(epoch: Any) -> None:
            conn.send(("epoch", epoch.to_dict()))

        try:
            record = run_trial(spec, data_cache=cache, teacher_dir=teacher_dir, on_epoch=send_epoch)
        except Exception as err:  # run_trial records failures; this is a last resort
            record = failed_record(spec, f"{type(err).__name__}: {err}")
        conn.send(("record", record.to_dict()))


class _Worker:
    def __init__(self, env: Mapping[str, str], label: str, teacher_dir: str | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.label = label
        self.process = context.Process(
            target=_worker_main, args=(dict(env), child, teacher_dir), daemon=True
        )
        self.process.start()
        child.close()
        self.spec: TrialSpec | None = None

    def stop(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout_s)
        if self.process.is_alive():  # pragma: no cover - a worker stuck in native code
            self.process.kill()
            self.process.join()
        self.conn.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():  # pragma: no cover
            self.process.kill()
            self.process.join()
        self.conn.close()


class _ProcessPool(Closing):
    """One long-lived worker process per slot; slot ``i`` runs with the environment ``envs[i]``
    (plus, with several slots, :func:`~wattwise.energy.sharing.parallel_env`).

    A worker that dies (killed, segfault) fails its trial with the exit code and is replaced.

    Args:
        envs: The environment of each slot's worker.
        labels: Each worker's name in failure reasons.
        own_gpu: Each worker has a GPU of its own (its GPU energy is not shared).
    """

    name = "processes"

    def __init__(
        self,
        envs: Sequence[Mapping[str, str]],
        labels: Sequence[str],
        *,
        own_gpu: bool = False,
    ) -> None:
        if not envs:
            raise ConfigError("a worker pool needs at least one worker")
        shared = parallel_env(len(envs), own_gpu=own_gpu)
        self.envs = [{**shared, **env} for env in envs]
        self.labels = list(labels)
        self.slots = len(self.envs)
        self._workers: list[_Worker] = []
        self._teacher_dir: str | None = None

    def _start(self, teacher_dir: str | None) -> None:
        if self._workers and teacher_dir == self._teacher_dir:
            return
        self.close()
        self._teacher_dir = teacher_dir
        self._workers = [
            _Worker(env, label, teacher_dir)
            for env, label in zip(self.envs, self.labels, strict=True)
        ]

    def run(
        self,
        specs: Sequence[TrialSpec],
        *,
        on_start: OnStart,
        on_done: OnDone,
        teacher_dir: str | Path | None = None,
        on_epoch: OnEpoch | None = None,
    ) -> None:
        if not specs:
            return
        self._start(None if teacher_dir is None else str(teacher_dir))
        queue = deque(specs)
        try:
            while queue or any(w.spec is not None for w in self._workers):
                for worker in self._workers:
                    while worker.spec is None and queue:
                        spec = queue.popleft()
                        if on_start(spec) is False:  # another sweep holds it
                            continue
                        worker.spec = spec
                        try:
                            worker.conn.send(spec.to_dict())
                        except OSError:  # the worker is gone: its sentinel reports it
                            worker.process.kill()
                busy = [w for w in self._workers if w.spec is not None]
                if not busy:  # every trial left was another sweep's
                    continue
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for index, worker in enumerate(list(self._workers)):
                    if worker.spec is None:
                        continue
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._collect(index, worker, on_done, on_epoch)
        except BaseException:
            self._terminate()
            raise

    def _collect(
        self, index: int, worker: _Worker, on_done: OnDone, on_epoch: OnEpoch | None
    ) -> None:
        """Reads what ``worker`` sent: epochs go to ``on_epoch``; its record, or its death,
        ends its trial."""
        spec = worker.spec
        assert spec is not None
        record: TrialRecord | None = None
        epochs: list[dict[str, Any]] = []
        with contextlib.suppress(EOFError, OSError):
            while record is None and worker.conn.poll():
                kind, payload = worker.conn.recv()
                if kind == "record":
                    record = TrialRecord.from_dict(payload)
                else:
                    epochs.append(payload)
        if on_epoch is not None and epochs:
            from wattwise.train.loop import EpochRecord

            for payload in epochs:
                on_epoch(spec, EpochRecord(**payload))
        if record is None and worker.process.is_alive():
            return  # woken by an epoch or a partial message; wait for the record
        worker.spec = None
        if record is None:  # the worker died with the trial
            worker.process.join(5)
            code = worker.process.exitcode
            record = failed_record(
                spec, f"worker {worker.label} died (exit code {code}) while running the trial"
            )
            worker.kill()
            self._workers[index] = _Worker(self.envs[index], self.labels[index], self._teacher_dir)
        on_done(record)

    def _terminate(self) -> None:
        for worker in self._workers:
            worker.kill()
        self._workers = []

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries of the children.

    ``CUDA_VISIBLE_DEVICES`` of this process is honoured (its entries are passed on as they
    are); otherwise the devices are numbered 0..N-1.
    """
    import torch

    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        return entries[:count]
    return [str(i) for i in range(count)]


class LocalGpuExecutor(_ProcessPool):
    """One trial per local GPU at a time: a worker process per GPU, pinned with
    ``CUDA_VISIBLE_DEVICES`` (inside it the GPU is ``cuda:0``).

    Args:
        gpus: Indices of the visible GPUs to use (default all).

    Raises:
        ConfigError: No GPU is visible, or an index is out of range.
    """

    name = "local-gpus"

    def __init__(self, gpus: Sequence[int] | None = None) -> None:
        visible = visible_gpus()
        if not visible:
            raise ConfigError("no GPU visible for the local-gpus executor")
        chosen = list(range(len(visible))) if gpus is None else list(gpus)
        for index in chosen:
            if not 0 <= index < len(visible):
                raise ConfigError(
                    f"executor.gpus: GPU {index} is not visible (visible: 0..{len(visible) - 1})"
                )
        super().__init__(
            [{"CUDA_VISIBLE_DEVICES": visible[i]} for i in chosen],
            [f"GPU {i}" for i in chosen],
            own_gpu=True,
        )
