"""The ray executor on a real two-node Ray cluster, and what it does when a worker dies.

The fast tests give the executor a Ray of this process (:class:`FakeRay`: Ray's own exception
classes, no cluster) and check what a dead worker, a Ray error and a refused connection become.
The slow test starts a Ray head and a second raylet on this machine (``ray start``, one CPU each,
a GPU each where CUDA is there), runs a three-trial study across them through the study's
``executor: {kind: ray, address: ...}`` section, SIGKILLs the Ray worker process of the first
trial that has loaded torch (mid-trial), and checks what the store holds: the killed trial
``failed`` with its reason, every other trial stored exactly once and intact, the workers never
opening the store; then ``--retry-failed`` runs the killed trial again on the same cluster.
It also checks that the cluster refuses a driver without its token, in one line.

The cluster is its own: its temporary dir, its ports, its token (``RAY_AUTH_MODE=token`` with a
token file in the temporary dir, so that ``~/.ray`` is neither read nor written). It is stopped
by process id (the processes whose command line names its temporary dir, and their children),
never with ``ray stop``, which stops every Ray process of the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from wattwise.config import StudyConfig
from wattwise.energy.sharing import ENV_OWN_DEVICES, ENV_PARALLEL_TRIALS
from wattwise.errors import ConfigError
from wattwise.experiment import ResultsStore, TrialRecord
from wattwise.experiment import executor_ray as executors_module
from wattwise.experiment.executors import RayExecutor, create_executor
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.experiment.sweep import run_study

RAY_CLI = Path(sys.executable).with_name("ray")
#: What a Ray worker's process title is while it runs a trial (``ray::<function name>``).
TRIAL_TITLE = "ray::_ray_trial"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path, address: str, **changes: Any) -> StudyConfig:
    values: dict[str, Any] = {
        "name": "cluster",
        "output_dir": str(tmp_path),
        "width": 0.25,
        "batch_sizes": [64],
        "learning_rates": [0.05, 0.1, 0.2],
        "epochs": [2],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0.05, "inference_batch_size": 32},
        "executor": {"kind": "ray", "address": address},
    }
    values.update(changes)
    return StudyConfig(**values)


# --- fast: a Ray of this process ---------------------------------------------------------------


class FakeRay:
    """The part of Ray's API that :class:`RayExecutor` uses, in this process: a task "runs" when
    it is submitted and returns an ``ok`` record, or raises ``fail[lr]`` (a Ray exception) from
    ``get``; ``init`` raises ``init_error`` when there is one."""

    def __init__(
        self,
        resources: dict[str, float],
        fail: dict[float, BaseException] | None = None,
        init_error: BaseException | None = None,
    ) -> None:
        import ray.exceptions

        self.exceptions = ray.exceptions  # Ray's own classes
        self.resources = resources
        self.fail = dict(fail or {})
        self.init_error = init_error
        self.initialized = False
        self.init_calls: list[dict[str, Any]] = []
        self.task_options: dict[str, Any] = {}
        self.envs: list[dict[str, str]] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.init_calls.append(kwargs)
        if self.init_error is not None:
            raise self.init_error
        self.initialized = True

    def shutdown(self) -> None:
        self.initialized = False

    def cluster_resources(self) -> dict[str, float]:
        return dict(self.resources)

    def remote(self, function: Any) -> _FakeTask:
        return _FakeTask(self)

    def wait(self, refs: list[Any], num_returns: int = 1) -> tuple[list[Any], list[Any]]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: _Ref) -> Any:
        if isinstance(ref.result, BaseException):
            raise ref.result
        return ref.result

    def cancel(self, ref: Any, force: bool = False) -> None:
        pass


@dataclass(eq=False)  # a key, by identity, as Ray's refs are
class _Ref:
    result: Any


@dataclass
class _FakeTask:
    ray: FakeRay

    def options(self, **options: Any) -> _FakeTask:
        self.ray.task_options = options
        return self

    def remote(self, spec_dict: dict[str, Any], teacher_dir: Any, env: dict[str, str]) -> _Ref:
        self.ray.envs.append(env)
        spec = TrialSpec.from_dict(spec_dict)
        error = self.ray.fail.get(spec.train.lr)
        if error is not None:
            return _Ref(error)
        record = TrialRecord(spec.trial_id, spec.study, spec.to_dict(), accuracy=0.5)
        return _Ref(record.to_dict())


def _use(monkeypatch: pytest.MonkeyPatch, fake: FakeRay) -> FakeRay:
    monkeypatch.setattr(executors_module, "_import_ray", lambda: fake)
    return fake


def test_a_killed_ray_worker_fails_its_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    exceptions = pytest.importorskip("ray.exceptions")
    fake = _use(monkeypatch, FakeRay({"CPU": 2}, fail={0.1: exceptions.WorkerCrashedError()}))
    config = _config(tmp_path, "10.0.0.1:6379")
    summary = run_study(config)  # the executor comes from the study's section
    assert fake.init_calls[0]["address"] == "10.0.0.1:6379"
    assert fake.task_options == {"num_cpus": 1, "max_retries": 0}  # Ray does not rerun it
    assert not fake.initialized  # the executor connected, so it disconnected
    assert (summary.ok, summary.failed, summary.ran) == (2, 1, 3)
    with ResultsStore(summary.store_path) as store:
        records = {r.trial_id: r for r in store.records()}
    assert len(records) == 3
    (failed,) = [r for r in records.values() if r.status == "failed"]
    assert TrialSpec.from_dict(failed.spec).train.lr == 0.1 and failed.attempts == 1
    assert failed.reason == (
        "ray task failed: WorkerCrashedError: The worker died unexpectedly while executing this "
        "task. Check python-core-worker-*.log files for more information."
    )

    fake.fail.clear()  # the worker is back: --retry-failed runs that trial only
    again = run_study(config, retry_failed=True)
    assert (again.ok, again.failed, again.ran, again.skipped) == (3, 0, 1, 2)
    with ResultsStore(again.store_path) as store:
        after = {r.trial_id: r for r in store.records()}
    assert after[failed.trial_id].status == "ok" and after[failed.trial_id].attempts == 2
    assert all(after[i] == r for i, r in records.items() if r.status == "ok")  # untouched


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (  # the memory monitor: its first line says what happened, the last how to tune it
            lambda e: e.OutOfMemoryError(
                "Task was killed due to the node running low on memory.\n"
                "Memory on the node (IP: 10.0.0.2, ID: ab12) was 30.1GB used / 31.0GB limit\n"
                "To adjust the kill threshold, set RAY_memory_usage_threshold."
            ),
            "ray task failed: OutOfMemoryError: Task was killed due to the node running low on "
            "memory.",
        ),
        (
            lambda e: e.NodeDiedError("The node 10.0.0.3 died.\nCheck raylet.out."),
            "ray task failed: NodeDiedError: The node 10.0.0.3 died.",
        ),
        (  # an error the trial raised: the last line of its traceback
            lambda e: e.RayTaskError(
                "_ray_trial",
                "Traceback (most recent call last):\n  File x\nValueError: no such data",
                ValueError("no such data"),
            ).as_instanceof_cause(),
            "ray task failed: RayTaskError(ValueError): ValueError: no such data",
        ),
    ],
    ids=["out-of-memory", "node-died", "the-trial-raised"],
)
def test_a_ray_error_is_the_reason_of_a_failed_trial(tmp_path, monkeypatch, make, reason):
    exceptions = pytest.importorskip("ray.exceptions")
    _use(monkeypatch, FakeRay({"CPU": 1}, fail={0.05: make(exceptions)}))
    executor = RayExecutor("10.0.0.1:6379")
    specs = [s for s in expand_grid(_config(tmp_path, "x")) if s.train.lr in (0.05, 0.1)]
    got: list[TrialRecord] = []
    executor.run(specs, on_start=lambda spec: None, on_done=got.append)
    assert [(r.trial_id, r.status) for r in got] == [
        (specs[0].trial_id, "failed"),
        (specs[1].trial_id, "ok"),
    ]
    assert got[0].reason == reason


def _refused(last_error: str) -> ConnectionError:
    """What ``ray.init`` raises when it cannot connect (Ray 2.60): a ConnectionError from a
    RuntimeError whose text ends with the traceback of the last attempt."""
    try:
        raise RuntimeError(
            "Failed to connect to GCS. Last connection error: Traceback (most recent call "
            f'last):\n  File "python/ray/includes/common.pxi", line 119\n{last_error}\n'
        )
    except RuntimeError as err:
        try:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from err
        except ConnectionError as refused:
            return refused


@pytest.mark.parametrize(
    ("last_error", "told"),
    [
        (
            "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication "
            "token is missing or incorrect. Note: RAY_AUTH_MODE is currently 'disabled'",
            "the cluster uses token authentication and refused this process: set "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN) to the cluster's "
            "token before starting the sweep",
        ),
        (
            "ray.exceptions.RpcError: failed to connect to all addresses",
            "Failed to connect to Ray cluster at 10.0.0.1:6379 "
            "(ray.exceptions.RpcError: failed to connect to all addresses)",
        ),
    ],
    ids=["token", "other"],
)
def test_a_refused_connection_is_a_config_error_that_says_why(monkeypatch, last_error, told):
    pytest.importorskip("ray")
    _use(monkeypatch, FakeRay({"CPU": 1}, init_error=_refused(last_error)))
    with pytest.raises(ConfigError) as caught:
        RayExecutor("10.0.0.1:6379")
    assert str(caught.value) == f"cannot start or reach 10.0.0.1:6379: {told}"


def test_ray_trials_ask_for_a_gpu_each_on_a_cluster_with_gpus(monkeypatch):
    pytest.importorskip("ray")
    fake = _use(monkeypatch, FakeRay({"CPU": 16, "GPU": 2}))
    executor = RayExecutor("auto")
    assert (executor.slots, executor.gpus) == (2, 2)
    assert fake.task_options == {"num_gpus": 1, "max_retries": 0}
    assert executor.worker_env == {ENV_PARALLEL_TRIALS: "2", ENV_OWN_DEVICES: "gpu"}


class LocalRayCluster:
    """A Ray head and ``ray start --address`` nodes on this machine, under ``root``."""

    def __init__(self, root: Path, *, ip: str, gpus: int) -> None:
        self.root = root
        self.gpus = gpus
        self.port = _free_port()
        # this machine's address, as Ray finds it (a driver's "127.0.0.1" is turned into it)
        self.ip = ip
        self.address = f"{ip}:{self.port}"
        token = root / "auth_token"
        token.write_text(secrets.token_hex(32))
        #: The environment of the cluster's processes and of the driver (this process).
        self.env = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.raylets: list[int] = []

    def _ray_start(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
        env.update(self.env)
        common = [
            f"--node-ip-address={self.ip}",
            "--num-cpus=1",
            f"--num-gpus={self.gpus}",
            f"--object-store-memory={80 * 1024**2}",
            f"--dashboard-agent-listen-port={_free_port()}",
            "--disable-usage-stats",
        ]
        before = set(self._raylet_pids())
        done = subprocess.run(
            [str(RAY_CLI), "start", *args, *common],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"ray start {args[0]} failed:\n{(done.stdout + done.stderr)[-3000:]}"
            )
        new = set(self._raylet_pids()) - before
        assert len(new) == 1, f"expected one new raylet, found {sorted(new)}"
        self.raylets.extend(new)

    def start(self, nodes: int) -> None:
        """The head, then ``nodes - 1`` nodes that join it."""
        self._ray_start(
            "--head",
            f"--port={self.port}",
            f"--temp-dir={self.root}",
            "--include-dashboard=false",
            f"--dashboard-port={_free_port()}",
        )
        for _ in range(nodes - 1):
            self._ray_start(f"--address={self.address}")

    def _own(self) -> list[psutil.Process]:
        """The cluster's processes: those whose command line names ``root``."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(str(self.root) in part for part in proc.info["cmdline"] or ()):
                    found.append(proc)
        return found

    def _raylet_pids(self) -> list[int]:
        return [p.pid for p in self._own() if p.name() == "raylet"]

    def trial_workers(self) -> dict[int, int]:
        """The Ray workers running a trial now: ``{pid: pid of its node's raylet}``."""
        found: dict[int, int] = {}
        for raylet in self.raylets:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(raylet).children():
                    with contextlib.suppress(psutil.Error):
                        if (child.cmdline() or [""])[0].startswith(TRIAL_TITLE):
                            found[child.pid] = raylet
        return found

    def stop(self) -> None:
        """Ends the cluster's processes (and their children) by id: SIGTERM, then SIGKILL."""
        procs: dict[int, psutil.Process] = {}
        for proc in self._own():
            procs[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    procs[child.pid] = child
        for proc in procs.values():
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(list(procs.values()), timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)


@contextlib.contextmanager
def _driver_env(env: dict[str, str]) -> Iterator[None]:
    """``env`` in this process (the driver) while the block runs; Ray, which reads its token
    settings once, is told before and after (its own tests' helper)."""
    from ray._private.authentication_test_utils import reset_auth_token_state

    saved = {name: os.environ.get(name) for name in [*env, "RAY_AUTH_TOKEN"]}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(env)
    reset_auth_token_state()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_auth_token_state()


@pytest.fixture
def ray_cluster() -> Iterator[LocalRayCluster]:
    """Two Ray nodes on this machine, stopped afterwards however the test ends."""
    ray = pytest.importorskip("ray")
    if sys.platform != "linux":
        pytest.skip("the cluster is found and stopped through Linux process tables")
    import torch

    root = Path(tempfile.mkdtemp(prefix="wwray-", dir="/tmp"))  # short: Ray's socket paths
    ip = ray.util.get_node_ip_address()
    cluster = LocalRayCluster(root, ip=ip, gpus=1 if torch.cuda.is_available() else 0)
    try:
        with _driver_env(cluster.env):
            try:
                cluster.start(nodes=2)
                yield cluster
            finally:
                with contextlib.suppress(Exception):
                    ray.shutdown()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Killer:
    """Watches the cluster's trial workers from a thread: which raylet ran each, whether one
    opened the store, and SIGKILLs the first that has loaded torch (it is mid-trial)."""

    cluster: LocalRayCluster
    store_path: Path
    seen: dict[int, int] = field(default_factory=dict)
    most_at_once: int = 0
    killed: int | None = None
    store_openers: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def _has_torch(self, pid: int) -> bool:
        with contextlib.suppress(OSError):
            return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
        return False

    def watch(self) -> None:
        while not self.stop.is_set():
            now = self.cluster.trial_workers()
            self.seen.update(now)
            self.most_at_once = max(self.most_at_once, len(now))
            for pid in now:
                with contextlib.suppress(psutil.Error):
                    files = psutil.Process(pid).open_files()
                    if any(f.path.startswith(str(self.store_path)) for f in files):
                        self.store_openers.add(pid)
            if self.killed is None:
                for pid in now:
                    if self._has_torch(pid):
                        os.kill(pid, signal.SIGKILL)
                        self.killed = pid
                        break
            time.sleep(0.1)


@pytest.mark.slow
def test_a_study_across_two_ray_nodes_survives_a_killed_worker(ray_cluster, tmp_path):
    started = time.perf_counter()
    config = _config(tmp_path, ray_cluster.address)
    without_token = {"RAY_AUTH_MODE": "disabled", "RAY_gcs_server_port_wait_time_s": "1"}
    with _driver_env(without_token), pytest.raises(ConfigError) as refused:
        RayExecutor(ray_cluster.address)
    assert "the cluster uses token authentication and refused this process" in str(refused.value)
    executor = create_executor(config.executor)  # what run_study would create from the section
    assert isinstance(executor, RayExecutor)
    try:
        assert executor.slots == 2  # one trial per node
        want = {"num_gpus": 1} if ray_cluster.gpus else {"num_cpus": 1}
        assert executor._options == want
        killer = Killer(ray_cluster, tmp_path / "cluster" / "results.sqlite")
        watcher = threading.Thread(target=killer.watch, daemon=True)
        watcher.start()
        try:
            summary = run_study(config, executor=executor)
        finally:
            killer.stop.set()
            watcher.join(10)
        assert killer.killed is not None, "no trial worker was seen running"
        assert set(killer.seen.values()) == set(ray_cluster.raylets)  # trials ran on both nodes
        assert killer.most_at_once == 2
        assert not killer.store_openers  # the workers never open the store: the driver writes
        assert (summary.ok, summary.failed, summary.running, summary.ran) == (2, 1, 0, 3)
        with ResultsStore(summary.store_path) as store:
            records = store.records()
        ids = [r.trial_id for r in records]
        assert len(ids) == len(set(ids)) == 3
        failed = [r for r in records if r.status == "failed"]
        assert len(failed) == 1 and failed[0].attempts == 1
        assert (failed[0].reason or "").startswith(
            "ray task failed: WorkerCrashedError: The worker died unexpectedly while executing"
        )
        first = {r.trial_id: r for r in records if r.status == "ok"}
        for record in first.values():
            assert record.attempts == 1 and record.accuracy is not None
            assert record.phases["train"]["total_energy_j"] > 0

        again = run_study(config, executor=executor, retry_failed=True)
        assert (again.ok, again.failed, again.ran, again.skipped) == (3, 0, 1, 2)
        with ResultsStore(again.store_path) as store:
            after = {r.trial_id: r for r in store.records()}
        assert sorted(after) == sorted(ids)
        assert after[failed[0].trial_id].attempts == 2
        assert all(after[i] == record for i, record in first.items())  # stored once, untouched
    finally:
        executor.close()
    print(f"two-node Ray study: {time.perf_counter() - started:.1f} s")
