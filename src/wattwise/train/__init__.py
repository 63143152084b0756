"""Training and evaluation loops, measured per epoch; the inference protocol; checkpoints.

Importing this package is cheap (torch is imported when a name that needs it is first used), so
that the study configuration can read :mod:`wattwise.train.config` without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Checkpoint": "wattwise.train.checkpoint",
    "load_checkpoint": "wattwise.train.checkpoint",
    "save_checkpoint": "wattwise.train.checkpoint",
    "GPU_MEMORY_CAPACITIES_GIB": "wattwise.train.config",
    "TrainConfig": "wattwise.train.config",
    "MemoryCap": "wattwise.train.device",
    "apply_memory_cap": "wattwise.train.device",
    "resolve_device": "wattwise.train.device",
    "InferenceResult": "wattwise.train.inference",
    "measure_inference": "wattwise.train.inference",
    "EpochRecord": "wattwise.train.loop",
    "TrainResult": "wattwise.train.loop",
    "evaluate": "wattwise.train.loop",
    "fit": "wattwise.train.loop",
}

__all__ = [
    "GPU_MEMORY_CAPACITIES_GIB",
    "Checkpoint",
    "EpochRecord",
    "InferenceResult",
    "MemoryCap",
    "TrainConfig",
    "TrainResult",
    "apply_memory_cap",
    "evaluate",
    "fit",
    "load_checkpoint",
    "measure_inference",
    "resolve_device",
    "save_checkpoint",
]

if TYPE_CHECKING:
    from wattwise.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from wattwise.train.config import GPU_MEMORY_CAPACITIES_GIB, TrainConfig
    from wattwise.train.device import MemoryCap, apply_memory_cap, resolve_device
    from wattwise.train.inference import InferenceResult, measure_inference
    from wattwise.train.loop import EpochRecord, TrainResult, evaluate, fit


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
