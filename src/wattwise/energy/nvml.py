"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` bindings, imported as ``pynvml``).

Energy: the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the
driver loaded; Volta and newer) read at window edges. GPUs without it report power
(``nvmlDeviceGetPowerUsage``, milliwatts), which the monitor samples and integrates. Memory: the
driver's ``used`` bytes per GPU.

Only the GPUs this process can see count: ``CUDA_VISIBLE_DEVICES`` is honoured (indices and
``GPU-<uuid>`` prefixes; parsing stops at the first invalid entry, as CUDA does). Component
``gpu:i`` is the i-th *visible* GPU, i.e. ``cuda:i`` in PyTorch (this assumes
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, NVML's order).

Sharing: NVML's energy is the whole GPU's. The meter lists the compute and graphics processes on
each GPU at most every ``process_check_s`` (1 s; between checks a read repeats the last answer)
and reports those outside the measured process tree in ``Reading.shared``; a GPU in MIG mode is
marked shared in its provenance (:mod:`wattwise.energy.sharing`). In a container with a PID
namespace of its own, NVML may list host PIDs, so that this process looks like another one: the
label then says "shared" where the GPU may be alone (never the other way round).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wattwise.energy.base import DEVICE_WIDE, Availability, Provenance, Reading
from wattwise.energy.process import ProcessTree
from wattwise.energy.sharing import MIG_NOTE, add_shared
from wattwise.errors import MeterError

#: Seconds between two reads of a GPU's process list (a driver call; cheap, but not free).
PROCESS_CHECK_S = 1.0


@dataclass
class _Gpu:
    component: str
    nvml_index: int
    handle: Any
    name: str
    uuid: str
    has_counter: bool
    origin_mj: int = 0
    mig: bool = False
    list_error: str = ""  # why NVML cannot list the GPU's processes ("" when it can)
    others: tuple[int, ...] = ()  # PIDs outside the measured tree at the last check
    checked_at: float | None = None


def parse_visible_devices(value: str | None, count: int, uuids: list[str]) -> list[int]:
    """NVML indices of the GPUs selected by a ``CUDA_VISIBLE_DEVICES`` value.

    Args:
        value: The variable's value (``None``: unset, all GPUs).
        count: Number of GPUs NVML sees.
        uuids: Their UUIDs (``GPU-...``), in NVML order.
    """
    if value is None:
        return list(range(count))
    selected: list[int] = []
    for token in value.split(","):
        token = token.strip()
        if not token:
            break
        if token.lstrip("-").isdigit():
            index = int(token)
            if index < 0 or index >= count:
                break
            selected.append(index)
            continue
        matches = [i for i, u in enumerate(uuids) if u.startswith(token) or u[4:].startswith(token)]
        if len(matches) != 1:  # unknown, ambiguous, or MIG (energy is per physical GPU)
            break
        selected.append(matches[0])
    # Duplicates make CUDA refuse the whole list.
    return selected if len(set(selected)) == len(selected) else []


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlMeter:
    """GPU energy and memory from NVML.

    Args:
        nvml: The NVML bindings module (default: ``import pynvml``). Tests pass a fake.
        required: When true (asked for by name), failure raises instead of ``unavailable``.
        visible_devices: A ``CUDA_VISIBLE_DEVICES`` value (default: the environment's).
        tree: The measured process tree, whose processes on a GPU are not "others" (default:
            this process and its descendants).
        process_check_s: Seconds between two reads of each GPU's process list.
        clock: Monotonic seconds (tests pass a fake).
    """

    name = "nvml"

    def __init__(
        self,
        nvml: ModuleType | Any | None = None,
        *,
        required: bool = False,
        visible_devices: str | None = None,
        tree: ProcessTree | None = None,
        process_check_s: float = PROCESS_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._nvml = nvml
        self._gpus: list[_Gpu] = []
        self._initialized = False
        self._lock = threading.Lock()
        self._tree = tree
        self._process_check_s = process_check_s
        self._clock = clock
        if visible_devices is None:
            visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self._availability = self._probe(visible_devices)
        if required and not self._availability.available:
            raise MeterError(f"NVML was requested but cannot measure: {self._availability.reason}")

    def _probe(self, visible: str | None) -> Availability:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py, a dependency; imported here to keep `import` lean

            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except Exception as err:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return Availability(False, f"NVML could not start: {err}")
        self._initialized = True
        try:
            count = nvml.nvmlDeviceGetCount()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
            for visible_index, index in enumerate(parse_visible_devices(visible, count, uuids)):
                handle = handles[index]
                try:
                    origin = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                    has_counter = True
                except nvml.NVMLError:
                    origin, has_counter = 0, False
                    nvml.nvmlDeviceGetPowerUsage(handle)  # must work, else the GPU is unusable
                gpu = _Gpu(
                    component=f"gpu:{visible_index}",
                    nvml_index=index,
                    handle=handle,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=uuids[index],
                    has_counter=has_counter,
                    origin_mj=origin,
                    mig=self._mig_enabled(handle),
                )
                self._gpus.append(gpu)
                self._check_processes(gpu)  # learns whether NVML can list them
        except nvml.NVMLError as err:
            self.close()
            return Availability(False, f"NVML query failed: {err}")
        if not self._gpus:
            self.close()
            why = (
                "no GPU"
                if visible is None
                else f"no GPU visible (CUDA_VISIBLE_DEVICES={visible!r})"
            )
            return Availability(False, f"NVML found {why}")
        desc = "; ".join(
            f"{g.component}={g.name} ({'energy counter' if g.has_counter else 'power sampling'})"
            for g in self._gpus
        )
        return Availability(True, desc)

    def availability(self) -> Availability:
        return self._availability

    @property
    def gpus(self) -> list[dict[str, Any]]:
        """Description of each visible GPU."""
        return [
            {
                "component": g.component,
                "nvml_index": g.nvml_index,
                "name": g.name,
                "uuid": g.uuid,
                "energy_counter": g.has_counter,
            }
            for g in self._gpus
        ]

    def components(self) -> list[str]:
        return [g.component for g in self._gpus]

    def nested_components(self) -> dict[str, str]:
        return {}

    def provenance(self, component: str) -> Provenance:
        gpu = next(g for g in self._gpus if g.component == component)
        how = "total-energy counter" if gpu.has_counter else "power samples, integrated"
        detail = (
            f"{gpu.name} (NVML index {gpu.nvml_index}): {how}; {DEVICE_WIDE.format(device='GPU')}"
        )
        if gpu.list_error and not gpu.mig:
            detail += f"; NVML cannot list the processes on it ({gpu.list_error})"
        provenance = Provenance.measured("nvml", detail, scope="device")
        return add_shared(provenance, MIG_NOTE) if gpu.mig else provenance

    def read(self) -> Reading:
        nvml = self._nvml
        energy: dict[str, float] = {}
        power: dict[str, float] = {}
        memory: dict[str, int] = {}
        shared: dict[str, tuple[int, ...]] = {}
        with self._lock:
            for gpu in self._gpus:
                if gpu.has_counter:
                    mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
                    energy[gpu.component] = (mj - gpu.origin_mj) / 1000.0
                else:
                    power[gpu.component] = nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0
                memory[gpu.component] = int(nvml.nvmlDeviceGetMemoryInfo(gpu.handle).used)
                if others := self._check_processes(gpu):
                    shared[gpu.component] = others
        return Reading(energy_j=energy, power_w=power, memory_bytes=memory, shared=shared)

    def _mig_enabled(self, handle: Any) -> bool:
        nvml = self._nvml
        try:
            current = nvml.nvmlDeviceGetMigMode(handle)[0]
        except nvml.NVMLError:  # Not Supported: a GPU without MIG
            return False
        return bool(current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))

    def _check_processes(self, gpu: _Gpu) -> tuple[int, ...]:
        """PIDs on ``gpu`` outside the measured tree, read at most every ``process_check_s``
        (in between, the last answer). A GPU in MIG mode is marked in its provenance instead;
        a list that fails keeps the last answer (the first failure is said in the detail)."""
        now = self._clock()
        if gpu.mig or (gpu.checked_at is not None and now - gpu.checked_at < self._process_check_s):
            return gpu.others
        gpu.checked_at = now
        nvml = self._nvml
        try:
            pids = {p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle)}
            pids |= {p.pid for p in nvml.nvmlDeviceGetGraphicsRunningProcesses(gpu.handle)}
        except nvml.NVMLError as err:
            gpu.list_error = gpu.list_error or str(err) or type(err).__name__
            return gpu.others
        if self._tree is None:
            self._tree = ProcessTree()
        others = pids - self._tree.pids()
        if others:  # a child started since the tree last looked is ours, not another's
            self._tree.refresh_children()
            others -= self._tree.pids()
        gpu.others = tuple(sorted(others))
        return gpu.others

    def close(self) -> None:
        if self._initialized:
            self._initialized = False
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
