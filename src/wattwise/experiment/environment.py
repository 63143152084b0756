"""What a trial ran on: host, CPU model, threads, torch and CUDA versions, GPUs, meters."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from wattwise.energy.monitor import EnergyMonitor


def environment(device: str | None = None, monitor: EnergyMonitor | None = None) -> dict[str, Any]:
    """Software and hardware a trial ran on (host, CPU model, threads, torch/CUDA, GPUs)."""
    from wattwise import __version__
    from wattwise.energy.cpu_model import cpu_model_name

    info: dict[str, Any] = {
        "wattwise": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model_name(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if device is not None:
        info["device"] = device
    if monitor is not None:
        info["energy_components"] = monitor.components
    return info
