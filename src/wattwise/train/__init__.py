"""Training and evaluation loops, measured per epoch; the inference protocol; checkpoints."""

from __future__ import annotations

from wattwise.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from wattwise.train.config import GPU_MEMORY_CAPACITIES_GB, TrainConfig
from wattwise.train.device import MemoryCap, apply_memory_cap, resolve_device
from wattwise.train.inference import InferenceResult, measure_inference
from wattwise.train.loop import EpochRecord, TrainResult, evaluate, fit
from wattwise.train.run import RunOutcome, RunSpec, train_run

__all__ = [
    "GPU_MEMORY_CAPACITIES_GB",
    "Checkpoint",
    "EpochRecord",
    "InferenceResult",
    "MemoryCap",
    "RunOutcome",
    "RunSpec",
    "TrainConfig",
    "TrainResult",
    "apply_memory_cap",
    "evaluate",
    "fit",
    "load_checkpoint",
    "measure_inference",
    "resolve_device",
    "save_checkpoint",
    "train_run",
]
