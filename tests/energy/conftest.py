"""Shared fakes for the energy tests: a powercap sysfs tree, NVML, nvidia-smi, simple meters.

Nothing here needs special hardware: RAPL is a directory tree in ``tmp_path``, NVML is an object
with the functions ``pynvml`` exports, ``nvidia-smi`` is a shell script first on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from wattwise.energy.base import Availability, Provenance, Reading

#: Environment variables that change what the meters see; every test starts without them.
_ENV = (
    "WATTWISE_POWERCAP_ROOT",
    "WATTWISE_CPU_TDP_W",
    "WATTWISE_CPU_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "WATTWISE_PARALLEL_TRIALS",
    "WATTWISE_OWN_DEVICES",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def busy(seconds: float) -> float:
    """Burn this thread's CPU for ``seconds`` of process CPU time; returns the CPU time used."""
    start = time.process_time()
    x = 0
    while time.process_time() - start < seconds:
        for i in range(1000):
            x += i * i
    return time.process_time() - start


@pytest.fixture
def burn() -> Callable[[float], float]:
    return busy


# --- RAPL -----------------------------------------------------------------------------------
class FakePowercap:
    """A ``/sys/class/powercap`` look-alike: flat ``intel-rapl:*`` zone directories."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # The control-type directory that real sysfs has next to the zones (no ``name`` file).
        (root / "intel-rapl").mkdir(exist_ok=True)
        (root / "intel-rapl" / "enabled").write_text("1\n")

    def add_zone(
        self,
        zone: str,
        name: str,
        energy_uj: int = 0,
        max_energy_range_uj: int = 262143328850,
        *,
        max_power_uw: int | None = None,
    ) -> Path:
        """A zone; ``max_power_uw`` writes its ``constraint_0_max_power_uw`` (else absent)."""
        path = self.root / zone
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        if max_power_uw is not None:
            (path / "constraint_0_name").write_text("long_term\n")
            (path / "constraint_0_max_power_uw").write_text(f"{max_power_uw}\n")
        self.set_energy(zone, energy_uj)
        return path

    def set_energy(self, zone: str, energy_uj: int) -> None:
        """Write a counter atomically (a concurrent reader never sees a half-written file)."""
        target = self.root / zone / "energy_uj"
        tmp = target.with_name("energy_uj.tmp")
        tmp.write_text(f"{energy_uj}\n")
        os.replace(tmp, target)

    def add_energy(self, zone: str, delta_uj: int) -> None:
        current = int((self.root / zone / "energy_uj").read_text())
        self.set_energy(zone, current + delta_uj)

    def one_socket(self, *, dram: bool = True) -> FakePowercap:
        """package-0 with core and uncore (nested) and, optionally, dram."""
        self.add_zone("intel-rapl:0", "package-0", 1_000_000)
        self.add_zone("intel-rapl:0:0", "core", 500_000)
        self.add_zone("intel-rapl:0:1", "uncore", 100_000)
        if dram:
            self.add_zone("intel-rapl:0:2", "dram", 200_000)
        return self

    def two_sockets(self, *, psys: bool = True) -> FakePowercap:
        """Two packages each with core + dram, and a psys zone (the usual server layout)."""
        self.add_zone("intel-rapl:0", "package-0", 10_000_000)
        self.add_zone("intel-rapl:0:0", "core", 5_000_000)
        self.add_zone("intel-rapl:0:1", "dram", 2_000_000)
        self.add_zone("intel-rapl:1", "package-1", 20_000_000)
        self.add_zone("intel-rapl:1:0", "core", 6_000_000)
        self.add_zone("intel-rapl:1:1", "dram", 3_000_000)
        if psys:
            self.add_zone("intel-rapl:2", "psys", 90_000_000)
        return self


@pytest.fixture
def powercap(tmp_path: Path) -> FakePowercap:
    return FakePowercap(tmp_path / "powercap")


# --- NVML -----------------------------------------------------------------------------------
class FakeNvmlError(Exception):
    """Stands in for ``pynvml.NVMLError``: ``value`` is the NVML return code, as in pynvml."""

    def __init__(self, message: str, value: int = 999):
        super().__init__(message)
        self.value = value


#: NVML return codes (the values of pynvml's ``NVML_ERROR_*`` constants).
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4


class FakeGpu:
    """One fake GPU; also its NVML handle. Tests change the attributes between reads."""

    def __init__(
        self,
        uuid: str,
        name: str,
        energy_mj: int | None,
        power_mw: int,
        used_bytes: int,
    ):
        self.uuid = uuid
        self.name = name
        self.energy_mj = energy_mj  # None: the GPU has no total-energy counter
        self.power_mw = power_mw
        self.used_bytes = used_bytes
        #: PIDs NVML lists as compute / graphics processes on this GPU.
        self.compute_pids: list[int] = []
        self.graphics_pids: list[int] = []
        self.process_list_error: Exception | None = None  # e.g. Not Supported
        self.process_list_calls = 0
        self.mig_mode: int | None = None  # None: the GPU has no MIG (Not Supported)
        #: Power limit and its constraints, in milliwatts; ``set_limit_error`` is raised by
        #: ``nvmlDeviceSetPowerManagementLimit`` (e.g. No Permission), once per entry.
        self.power_limit_mw = 300_000
        self.limit_range_mw = (100_000, 400_000)
        self.set_limit_errors: list[Exception] = []
        self.set_limit_calls: list[int] = []


class FakeNvml:
    """The slice of ``pynvml`` that the NVML meter uses (names checked against pynvml)."""

    NVMLError = FakeNvmlError
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self) -> None:
        self.gpus: list[FakeGpu] = []
        self.init_error: Exception | None = None
        self.init_calls = 0
        self.shutdown_calls = 0

    def add_gpu(
        self,
        uuid: str | None = None,
        name: str = "NVIDIA A100-SXM4-40GB",
        *,
        energy_mj: int | None = 1_000_000,
        power_mw: int = 100_000,
        used_bytes: int = 2**30,
    ) -> FakeGpu:
        index = len(self.gpus)
        uuid = uuid or f"GPU-{index}{index}{index}{index}aaaa-1111-2222-3333-444455556666"
        gpu = FakeGpu(uuid, name, energy_mj, power_mw, used_bytes)
        self.gpus.append(gpu)
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu) -> bytes:
        return handle.name.encode()  # older bindings return bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        if handle.energy_mj is None:
            raise FakeNvmlError("Not Supported")
        return handle.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return handle.power_mw

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:
        total = 40 * 2**30
        return SimpleNamespace(used=handle.used_bytes, total=total, free=total - handle.used_bytes)

    def _processes(self, handle: FakeGpu, pids: list[int]) -> list[SimpleNamespace]:
        handle.process_list_calls += 1
        if handle.process_list_error is not None:
            raise handle.process_list_error
        return [SimpleNamespace(pid=pid, usedGpuMemory=2**20) for pid in pids]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        return self._processes(handle, handle.compute_pids)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        return self._processes(handle, handle.graphics_pids)

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        if handle.mig_mode is None:
            raise FakeNvmlError("Not Supported", NVML_ERROR_NOT_SUPPORTED)
        return [handle.mig_mode, handle.mig_mode]  # [current, pending]

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeGpu) -> int:
        return handle.power_limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: FakeGpu) -> list[int]:
        return list(handle.limit_range_mw)

    def nvmlDeviceSetPowerManagementLimit(self, handle: FakeGpu, limit_mw: int) -> None:
        handle.set_limit_calls.append(limit_mw)
        if handle.set_limit_errors:
            raise handle.set_limit_errors.pop(0)
        low, high = handle.limit_range_mw
        if not low <= limit_mw <= high:
            raise FakeNvmlError("Invalid Argument", NVML_ERROR_INVALID_ARGUMENT)
        handle.power_limit_mw = limit_mw


@pytest.fixture
def fake_nvml() -> FakeNvml:
    return FakeNvml()


@pytest.fixture
def broken_nvml() -> FakeNvml:
    """An NVML whose ``nvmlInit`` fails as it does on a machine without the driver."""
    nvml = FakeNvml()
    nvml.init_error = FakeNvmlError("Driver Not Loaded")
    return nvml


# --- nvidia-smi -----------------------------------------------------------------------------
SMI_TWO_GPUS = (
    "0, GPU-0a1b2c3d-1111-2222-3333-444455556666, NVIDIA A100-SXM4-40GB, 71.23, 1024, 40960\n"
    "1, GPU-9f8e7d6c-1111-2222-3333-444455556666, NVIDIA A100-SXM4-40GB, 55.50, 2048, 40960\n"
)


class FakeSmi:
    """A ``nvidia-smi`` shell script first on PATH that prints ``output.csv`` and logs its args."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "nvidia-smi"
        self.log = self.dir / "calls.log"
        self.write(SMI_TWO_GPUS)

    def write(self, output: str, *, exit_code: int = 0, stderr: str = "") -> None:
        (self.dir / "output.csv").write_text(output)
        (self.dir / "stderr.txt").write_text(stderr)
        cat = shutil.which("cat") or "/bin/cat"  # absolute: tests may empty PATH later
        script = (
            "#!/bin/sh\n"
            f'echo "$@" >> "{self.log}"\n'
            f'{cat} "{self.dir / "stderr.txt"}" >&2\n'
            f'{cat} "{self.dir / "output.csv"}"\n'
            f"exit {exit_code}\n"
        )
        self._install(script)

    def _install(self, script: str) -> None:
        """Replace the program atomically (a sampler may be running it at this moment)."""
        tmp = self.path.with_name("nvidia-smi.tmp")
        tmp.write_text(script)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, self.path)

    def hang(self) -> None:
        """From now on the program never answers (``exec sleep``: killing it ends the sleep)."""
        sleep = shutil.which("sleep") or "/bin/sleep"
        self._install(f'#!/bin/sh\necho "$@" >> "{self.log}"\nexec {sleep} 1000\n')

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSmi:
    smi = FakeSmi(tmp_path / "smi-bin")
    monkeypatch.setenv("PATH", f"{smi.dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return smi


@pytest.fixture
def no_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with the basic tools but certainly no ``nvidia-smi``."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


# --- simple meters with exact numbers -------------------------------------------------------
class CounterMeter:
    """A meter with energy counters that the test sets by hand (joules, cumulative)."""

    def __init__(self, name: str = "fake-counter", **energy_j: float):
        self.name = name
        self.energy_j: dict[str, float] = dict(energy_j) or {"cpu": 0.0}
        self.nested: dict[str, str] = {}
        self.kind = "measured"
        self.closed = False

    def availability(self) -> Availability:
        return Availability(True, "fake counters")

    def components(self) -> list[str]:
        return [c for c in self.energy_j if c not in self.nested]

    def nested_components(self) -> dict[str, str]:
        return dict(self.nested)

    def provenance(self, component: str) -> Provenance:
        if self.kind == "estimated":
            return Provenance.estimated(self.name, f"fake estimate of {component}")
        return Provenance.measured(self.name, f"fake counter {component}")

    def read(self) -> Reading:
        return Reading(energy_j=dict(self.energy_j))

    def close(self) -> None:
        self.closed = True


class PowerMeter:
    """A meter that reports power only (watts set by the test); the monitor integrates it."""

    def __init__(self, name: str = "fake-power", **power_w: float):
        self.name = name
        self.power_w: dict[str, float] = dict(power_w) or {"gpu:0": 100.0}
        self.memory_bytes: dict[str, int] = {}
        self.reads = 0

    def availability(self) -> Availability:
        return Availability(True, "fake power sensor")

    def components(self) -> list[str]:
        return list(self.power_w)

    def nested_components(self) -> dict[str, str]:
        return {}

    def provenance(self, component: str) -> Provenance:
        return Provenance.measured(self.name, f"fake power samples of {component}")

    def read(self) -> Reading:
        self.reads += 1
        return Reading(power_w=dict(self.power_w), memory_bytes=dict(self.memory_bytes))

    def close(self) -> None:
        return None


class RampMeter:
    """A counter that grows at ``watts`` with wall time: its sampled power should be ``watts``."""

    def __init__(self, component: str = "cpu", watts: float = 20.0, name: str = "fake-ramp"):
        self.name = name
        self.component = component
        self.watts = watts
        self._t0 = time.perf_counter()

    def availability(self) -> Availability:
        return Availability(True, "fake ramp")

    def components(self) -> list[str]:
        return [self.component]

    def nested_components(self) -> dict[str, str]:
        return {}

    def provenance(self, component: str) -> Provenance:
        return Provenance.measured(self.name, "ramp")

    def read(self) -> Reading:
        return Reading(energy_j={self.component: self.watts * (time.perf_counter() - self._t0)})

    def close(self) -> None:
        return None


@pytest.fixture
def meters() -> SimpleNamespace:
    """The fake meter classes: ``meters.Counter``, ``meters.Power``, ``meters.Ramp``."""
    return SimpleNamespace(Counter=CounterMeter, Power=PowerMeter, Ramp=RampMeter)


# --- a fake torch with CUDA (for synchronization and CUDA memory peaks) ---------------------
class FakeCuda:
    """The slice of ``torch.cuda`` the monitor uses, for one device, in bytes."""

    def __init__(self) -> None:
        self.allocated = 0
        self.reserved = 0
        self.peak_allocated = 0
        self.peak_reserved = 0
        self.synchronized = 0

    def alloc(self, nbytes: int) -> None:
        self.allocated += nbytes
        self.reserved = max(self.reserved, self.allocated)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, nbytes: int) -> None:
        self.allocated -= nbytes

    def is_initialized(self) -> bool:
        return True

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def synchronize(self, device: int | None = None) -> None:
        self.synchronized += 1

    def memory_allocated(self, device: int = 0) -> int:
        return self.allocated

    def memory_reserved(self, device: int = 0) -> int:
        return self.reserved

    def max_memory_allocated(self, device: int = 0) -> int:
        return self.peak_allocated

    def max_memory_reserved(self, device: int = 0) -> int:
        return self.peak_reserved

    def reset_peak_memory_stats(self, device: int = 0) -> None:
        self.peak_allocated = self.allocated
        self.peak_reserved = self.reserved


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    """Put a fake ``torch`` whose CUDA is initialized into ``sys.modules`` for this test."""
    cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    return cuda
