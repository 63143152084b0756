"""The Ray executor: one task per trial on a Ray cluster (``address``) or a local Ray instance.

Each task runs :func:`wattwise.experiment.runner.run_trial` and returns its record to the driver,
which writes the store (workers never touch it). A task whose worker died (killed, out of memory,
its node lost) is stored ``failed`` with Ray's reason in one line; Ray does not rerun it
(:data:`RAY_MAX_RETRIES`): ``--retry-failed`` does, counting the attempt. Epochs are not reported
live (the record keeps the predictions, ``details["prediction"]``). Verified on a two-node
cluster on one machine: docs/experiments.md, "Ray clusters".
"""

from __future__ import annotations

import contextlib
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


def _ray_trial(
    spec_dict: dict[str, Any], teacher_dir: str | None, env: Mapping[str, str]
) -> dict[str, Any]:
    """A Ray task: one trial in a Ray worker, run with ``env`` added to its environment;
    returns the record as a dict (no store). Its third-party warnings and log lines go to the
    study folder's ``third_party.log`` where the worker sees that folder (this machine, a
    shared file system), else to stderr as before
    (:func:`wattwise.logs.route_worker_third_party`)."""
    os.environ.update(env)
    from wattwise.experiment.runner import run_trial
    from wattwise.logs import route_worker_third_party

    spec = TrialSpec.from_dict(spec_dict)
    with route_worker_third_party(teacher_dir):
        return run_trial(spec, teacher_dir=teacher_dir).to_dict()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'wattwise[ray]'") from None
    return ray


#: Ray does not run a trial again when its worker or node dies (Ray's own default would, up to
#: three times, behind the store's back): the trial is recorded ``failed`` with the reason, and
#: ``--retry-failed`` runs it again with its attempt counted, as with the other executors.
RAY_MAX_RETRIES = 0


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
    CPU (``num_cpus=1``). Records come back to the driver, which writes the store; epochs do not
    (``on_epoch`` is not called: no live predictions, the records keep theirs).

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

    def run(
        self,
        specs: Sequence[TrialSpec],
        *,
        on_start: OnStart,
        on_done: OnDone,
        teacher_dir: str | Path | None = None,
        on_epoch: OnEpoch | None = None,
    ) -> None:
        del on_epoch  # a task reports only its record (see the class)
        ray = self._ray
        queue = deque(specs)
        inflight: dict[Any, TrialSpec] = {}
        where = None if teacher_dir is None else str(Path(teacher_dir).absolute())  # any cwd
        try:
            while queue or inflight:
                while queue and len(inflight) < self.slots:
                    spec = queue.popleft()
                    if on_start(spec) is False:  # another sweep holds it
                        continue
                    inflight[self._task.remote(spec.to_dict(), where, self.worker_env)] = spec
                if not inflight:  # every trial left was another sweep's
                    continue
                done, _ = ray.wait(list(inflight), num_returns=1)
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
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False
