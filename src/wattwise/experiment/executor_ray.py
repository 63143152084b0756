"""The Ray executor: one task per trial on a Ray cluster (``address``) or a local Ray instance.

Each task runs :func:`wattwise.experiment.runner.run_trial` and returns its record to the driver,
which writes the store (workers never touch it). A task whose worker died (killed, out of memory,
its node lost) is stored ``failed`` with Ray's reason in one line; Ray does not rerun it
(:data:`RAY_MAX_RETRIES`): ``--retry-failed`` does, counting the attempt. Verified on a two-node
cluster on one machine: docs/experiments.md, "Ray clusters".

Epochs are reported live when the driver asks for them (``on_epoch``): each task puts every
finished epoch of its trial's training on a Ray queue (:class:`ray.util.queue.Queue`, an actor
the executor creates on first use and kills on close), and the driver, waiting on its tasks in
short turns (:data:`EPOCH_POLL_S`), hands what the queue holds to ``on_epoch`` between turns and
before a finished trial's record. An epoch that cannot be sent (the queue's actor died) is left
out: the trial goes on, and its record keeps every epoch and prediction all the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wattwise.energy.sharing import parallel_env
from wattwise.errors import ConfigError
from wattwise.experiment.executor_base import Closing, OnDone, OnEpoch, OnStart, failed_record
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec

_log = logging.getLogger(__name__)


def _ray_trial(
    spec_dict: dict[str, Any],
    teacher_dir: str | None,
    env: Mapping[str, str],
    epochs: Any = None,
) -> dict[str, Any]:
    """A Ray task: one trial in a Ray worker, run with ``env`` added to its environment;
    returns the record as a dict (no store). With ``epochs`` (the executor's queue) it puts
    ``(trial_id, epoch record dict)`` there as each epoch of the trial's training ends; one
    that cannot be put is left out, the trial goes on. Its third-party warnings and log lines
    go to the study folder's ``third_party.log`` where the worker sees that folder (this
    machine, a shared file system), else to stderr as before
    (:func:`wattwise.logs.route_worker_third_party`)."""
    os.environ.update(env)
    from wattwise.experiment.runner import run_trial
    from wattwise.logs import route_worker_third_party

    spec = TrialSpec.from_dict(spec_dict)

    def send_epoch(epoch: Any) -> None:
        with contextlib.suppress(Exception):  # a lost epoch never fails the trial
            epochs.put((spec.trial_id, epoch.to_dict()))

    told = None if epochs is None else send_epoch
    with route_worker_third_party(teacher_dir):
        return run_trial(spec, teacher_dir=teacher_dir, on_epoch=told).to_dict()


def _import_ray() -> Any:
    try:
        import ray
        import ray.util.queue  # the epoch queue (RayExecutor._epoch_queue)
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'wattwise[ray]'") from None
    return ray


#: Ray does not run a trial again when its worker or node dies (Ray's own default would, up to
#: three times, behind the store's back): the trial is recorded ``failed`` with the reason, and
#: ``--retry-failed`` runs it again with its attempt counted, as with the other executors.
RAY_MAX_RETRIES = 0

#: How long the driver waits on its tasks at a time, seconds, when it reports epochs: between
#: waits it hands the epochs that arrived to ``on_epoch``.
EPOCH_POLL_S = 0.25


def _lines(error: object) -> list[str]:
    return [line.strip() for line in str(error or "").splitlines() if line.strip()] or [""]


def _task_error(ray: Any, err: Exception) -> str:
    """The reason of a trial whose Ray task failed: an error the trial raised (``RayTaskError``)
    by its traceback's last line, the exception; Ray's own (``WorkerCrashedError``: the worker
    was killed or crashed; ``NodeDiedError``; ``OutOfMemoryError``) by its first (then advice)."""
    raised = isinstance(err, getattr(ray.exceptions, "RayTaskError", ()))
    return f"ray task failed: {type(err).__name__}: {_lines(err)[-1 if raised else 0]}"


def _connect_error(err: BaseException) -> str:
    """Why ``ray.init`` failed: its ``Failed to connect to Ray cluster at ...`` is raised from an
    error that ends with the last attempt's traceback, whose last line says why."""
    told, why = _lines(err)[0], _lines(err.__cause__)[-1]
    if "AuthenticationError" in why or "InvalidAuthToken" in why:
        return (
            "the cluster uses token authentication and refused this process: set "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN) to the cluster's "
            "token before starting the sweep"
        )
    return f"{told} ({why})" if why and why != told else told


class RayExecutor(Closing):
    """Trials as Ray tasks: one per GPU (``num_gpus=1``) when the cluster has GPUs, else one per
    CPU (``num_cpus=1``). Records come back to the driver, which writes the store; with
    ``on_epoch``, each epoch of a task's training comes back as it ends (see the module).

    Args:
        address: A Ray cluster (``ray://host:10001``, ``auto``); default: the Ray instance this
            process already started, else a new local one (stopped again by :meth:`close`).

    Raises:
        ConfigError: Ray is not installed (``pip install 'wattwise[ray]'``) or cannot connect.
    """

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        ray = _import_ray()
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            try:
                if address is None:
                    ray.init(include_dashboard=False, logging_level="warning")
                else:
                    ray.init(address=address, logging_level="warning")
            except Exception as err:
                where = address or "a local Ray instance"
                raise ConfigError(f"cannot start or reach {where}: {_connect_error(err)}") from err
            self._owns = True
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        self.slots = max(1, self.gpus if self.gpus else cpus)
        self._options = {"num_gpus": 1} if self.gpus else {"num_cpus": 1}
        #: What each task adds to its environment: up to ``slots`` trials share a machine (at
        #: most; on a cluster fewer share each node), each with a GPU of its own in GPU mode.
        self.worker_env = parallel_env(self.slots, own_gpu=bool(self.gpus))
        self._task = ray.remote(_ray_trial).options(max_retries=RAY_MAX_RETRIES, **self._options)
        self._epochs: Any = None  # the epoch queue, made on first use (see the module)
        self._tried_epochs = False  # once per executor, made or not

    def _epoch_queue(self) -> Any:
        """The queue the tasks put their epochs on: a Ray actor that holds no CPU, so that it
        takes no trial's slot; ``None`` where it cannot be made (then no epochs are reported
        live: the trials run as before and their records keep them)."""
        if not self._tried_epochs:
            self._tried_epochs = True
            try:
                self._epochs = self._ray.util.queue.Queue(actor_options={"num_cpus": 0})
            except Exception as err:
                _log.warning("no live epochs from the Ray tasks: cannot make their queue: %s", err)
        return self._epochs

    def _hand_epochs(self, inflight: Mapping[Any, TrialSpec], on_epoch: OnEpoch | None) -> None:
        """Gives ``on_epoch`` every epoch on the queue, in order, of the trials in ``inflight``
        (an epoch of any other trial, left by an interrupted run, is dropped). A queue that
        cannot be read leaves the epochs out."""
        if self._epochs is None:
            return
        arrived: list[Any] = []
        with contextlib.suppress(Exception):  # its actor died: the records keep the epochs
            count = self._epochs.size()
            arrived = self._epochs.get_nowait_batch(count) if count else []
        if on_epoch is None or not arrived:
            return
        from wattwise.train.loop import EpochRecord

        running = {spec.trial_id: spec for spec in inflight.values()}
        for trial_id, payload in arrived:
            if trial_id in running:
                on_epoch(running[trial_id], EpochRecord(**payload))

    def run(
        self,
        specs: Sequence[TrialSpec],
        *,
        on_start: OnStart,
        on_done: OnDone,
        teacher_dir: str | Path | None = None,
        on_epoch: OnEpoch | None = None,
    ) -> None:
        ray = self._ray
        queue = deque(specs)
        inflight: dict[Any, TrialSpec] = {}
        where = None if teacher_dir is None else str(Path(teacher_dir).absolute())  # any cwd
        epochs = None if on_epoch is None else self._epoch_queue()
        extra: tuple[Any, ...] = () if epochs is None else (epochs,)
        self._hand_epochs(inflight, None)  # drops what an interrupted run left
        try:
            while queue or inflight:
                while queue and len(inflight) < self.slots:
                    spec = queue.popleft()
                    if on_start(spec) is False:  # another sweep holds it
                        continue
                    ref = self._task.remote(spec.to_dict(), where, self.worker_env, *extra)
                    inflight[ref] = spec
                if not inflight:  # every trial left was another sweep's
                    continue
                if epochs is None:
                    done, _ = ray.wait(list(inflight), num_returns=1)
                else:  # a finished task put its epochs before it returned: all are here
                    done, _ = ray.wait(list(inflight), num_returns=1, timeout=EPOCH_POLL_S)
                    self._hand_epochs(inflight, on_epoch)
                for ref in done:
                    spec = inflight.pop(ref)
                    try:
                        record = TrialRecord.from_dict(ray.get(ref))
                    except Exception as err:  # the worker or its node died, the trial raised
                        record = failed_record(spec, _task_error(ray, err))
                    on_done(record)
        except BaseException:
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self._epochs is not None and self._ray.is_initialized():  # else it is gone already
            with contextlib.suppress(Exception):
                self._epochs.shutdown(force=True)
        self._epochs = None
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False
