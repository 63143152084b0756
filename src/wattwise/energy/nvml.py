"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` bindings, imported as ``pynvml``).

Energy: the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the
driver loaded; Volta and newer) read at window edges. GPUs without it report power
(``nvmlDeviceGetPowerUsage``, milliwatts), which the monitor samples and integrates. Memory: the
driver's ``used`` bytes per GPU.

Only the GPUs this process can see count: ``CUDA_VISIBLE_DEVICES`` is honoured (indices and
``GPU-<uuid>`` prefixes; parsing stops at the first invalid entry, as CUDA does). Component
``gpu:i`` is the i-th *visible* GPU, i.e. ``cuda:i`` in PyTorch (this assumes
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, NVML's order).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wattwise.energy.base import DEVICE_WIDE, Availability, Provenance, Reading
from wattwise.errors import MeterError


@dataclass
class _Gpu:
    component: str
    nvml_index: int
    handle: Any
    name: str
    uuid: str
    has_counter: bool
    origin_mj: int = 0


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
    """

    name = "nvml"

    def __init__(
        self,
        nvml: ModuleType | Any | None = None,
        *,
        required: bool = False,
        visible_devices: str | None = None,
    ):
        self._nvml = nvml
        self._gpus: list[_Gpu] = []
        self._initialized = False
        self._lock = threading.Lock()
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
                self._gpus.append(
                    _Gpu(
                        component=f"gpu:{visible_index}",
                        nvml_index=index,
                        handle=handle,
                        name=_text(nvml.nvmlDeviceGetName(handle)),
                        uuid=uuids[index],
                        has_counter=has_counter,
                        origin_mj=origin,
                    )
                )
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
        return Provenance.measured("nvml", detail, scope="device")

    def read(self) -> Reading:
        nvml = self._nvml
        energy: dict[str, float] = {}
        power: dict[str, float] = {}
        memory: dict[str, int] = {}
        with self._lock:
            for gpu in self._gpus:
                if gpu.has_counter:
                    mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
                    energy[gpu.component] = (mj - gpu.origin_mj) / 1000.0
                else:
                    power[gpu.component] = nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0
                memory[gpu.component] = int(nvml.nvmlDeviceGetMemoryInfo(gpu.handle).used)
        return Reading(energy_j=energy, power_w=power, memory_bytes=memory)

    def close(self) -> None:
        if self._initialized:
            self._initialized = False
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
