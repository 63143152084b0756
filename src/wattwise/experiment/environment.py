"""What a trial ran on: host, CPU model, threads, torch/CUDA/cuDNN versions, GPUs, the NVIDIA
driver, and the ``device_id`` that the analysis groups energy by.

Describing the device never initializes CUDA (a CPU trial on a GPU host leaves it alone, as
:mod:`wattwise.energy.memory` does for peaks). Each GPU's name, UUID and total memory come from
``torch.cuda`` where this process has already initialized it, else from the NVML that the trial's
monitor has already opened (its :class:`~wattwise.energy.nvml.NvmlMeter`, and the loaded
``pynvml`` bindings for total memory and the driver version); what neither knows is ``None``.

``device_id`` names the device the trial ran on, the same in every trial and process that used it:
``cpu:<CPU model>@<hostname>`` on CPU, ``cuda:<GPU name>:<GPU UUID>`` on a GPU
(``cuda:<name or unknown>:<index>@<hostname>`` where the UUID is unknown), else
``<type>@<hostname>``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch

from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.nvml import NvmlMeter

#: One GPU as recorded: ``index`` (``cuda:index``), ``name``, ``uuid``, ``total_memory_bytes``.
Gpu = dict[str, Any]


def environment(device: str | None = None, monitor: EnergyMonitor | None = None) -> dict[str, Any]:
    """Software and hardware a trial ran on (host, CPU model, threads, torch/CUDA/cuDNN, GPUs,
    driver) and its ``device_id`` (see the module docstring).

    Args:
        device: The trial's torch device (``cpu``, ``cuda``, ``cuda:1``); ``None``: not recorded,
            and no ``device_id``.
        monitor: The trial's energy monitor: its components, and its NVML meter for the GPUs.
    """
    from wattwise import __version__
    from wattwise.energy.cpu_model import cpu_model_name

    nvml = _nvml_bindings(monitor)
    info: dict[str, Any] = {
        "wattwise": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "driver": _driver_version(nvml),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model_name(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    gpus = _gpus(monitor, nvml)
    if gpus:
        info["gpus"] = gpus
    if device is not None:
        info["device"] = device
        info["device_id"] = device_id(device, info["cpu_model"], info["hostname"], gpus)
    if monitor is not None:
        info["energy_components"] = monitor.components
    return info


def device_id(device: str, cpu_model: str, hostname: str, gpus: Sequence[Gpu]) -> str:
    """The short, stable name of the device a trial ran on (see the module docstring).

    Args:
        device: The trial's torch device; ``cuda`` without an index is the current device (0
            where CUDA is not initialized yet).
        gpus: The visible GPUs (``index`` is ``cuda:index``), as :func:`environment` records them.
    """
    dev = torch.device(device)
    if dev.type == "cpu":
        return f"cpu:{cpu_model}@{hostname}"
    if dev.type != "cuda":
        return f"{dev.type}@{hostname}"
    index = dev.index if dev.index is not None else _current_cuda_device()
    gpu = next((g for g in gpus if g["index"] == index), {})
    name = gpu.get("name") or "unknown"
    return f"cuda:{name}:{gpu['uuid']}" if gpu.get("uuid") else f"cuda:{name}:{index}@{hostname}"


# --- sources: torch (only once CUDA is initialized), NVML (only once the monitor opened it) ----


def _cuda_initialized() -> bool:
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:  # a broken CUDA setup must not break describing the trial
        return False


def _current_cuda_device() -> int:
    return int(torch.cuda.current_device()) if _cuda_initialized() else 0


def _cudnn_version() -> int | None:
    try:
        return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # e.g. a runtime/compile version mismatch: unknown, not a failed trial
        return None


def _uuid(value: Any) -> str | None:
    """A UUID as NVML writes it: ``GPU-`` + the hex digits (torch's ``_CUuuid`` lacks the
    prefix)."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _torch_gpus() -> list[Gpu]:
    """The visible GPUs per ``torch.cuda``, or ``[]`` where this process has not initialized CUDA
    (``uuid`` ``None`` where the installed torch lacks it)."""
    if not _cuda_initialized():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        total = getattr(props, "total_memory", None)
        gpus.append(
            {
                "index": i,
                "name": str(props.name),
                "uuid": _uuid(getattr(props, "uuid", None)),
                "total_memory_bytes": int(total) if total is not None else None,
            }
        )
    return gpus


def _nvml_meter(monitor: EnergyMonitor | None) -> NvmlMeter | None:
    meters = monitor.meter_set.meters if monitor is not None else ()
    return next((m for m in meters if isinstance(m, NvmlMeter)), None)


def _nvml_bindings(monitor: EnergyMonitor | None) -> Any:
    """The loaded ``pynvml`` bindings when the monitor's NVML meter has opened NVML, else
    ``None`` (never imported or initialized here)."""
    meter = _nvml_meter(monitor)
    return sys.modules.get("pynvml") if meter is not None and meter.gpus else None


def _driver_version(nvml: Any) -> str | None:
    """The NVIDIA driver's version (``570.124.06``) from open NVML bindings, else ``None``."""
    if nvml is None:
        return None
    try:
        value = nvml.nvmlSystemGetDriverVersion()
    except Exception:  # NVMLError: unknown, not a failed trial
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_gpus(monitor: EnergyMonitor | None, nvml: Any) -> list[Gpu]:
    """The visible GPUs per the monitor's NVML meter (``gpu:i`` is ``cuda:i``)."""
    meter = _nvml_meter(monitor)
    gpus = []
    for i, g in enumerate(meter.gpus if meter is not None else ()):
        total = None
        if nvml is not None:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(g["nvml_index"])
                total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            except Exception:  # NVMLError: unknown
                total = None
        gpus.append(
            {"index": i, "name": g["name"], "uuid": _uuid(g["uuid"]), "total_memory_bytes": total}
        )
    return gpus


def _gpus(monitor: EnergyMonitor | None, nvml: Any) -> list[Gpu]:
    """The visible GPUs: torch's values where CUDA is initialized, NVML's where torch has none."""
    found = {g["index"]: g for g in _nvml_gpus(monitor, nvml)}
    for g in _torch_gpus():
        known = found.get(g["index"], {})
        found[g["index"]] = {k: v if v is not None else known.get(k) for k, v in g.items()}
    return [found[i] for i in sorted(found)]
