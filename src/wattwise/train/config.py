"""Training settings as one validated, frozen value (YAML/CLI -> TrainConfig -> fit)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from wattwise.errors import ConfigError

Optimizer = Literal["sgd", "adam"]
Schedule = Literal["cosine", "none"]
Precision = Literal["fp32", "bf16", "fp16"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "none")
PRECISIONS = ("fp32", "bf16", "fp16")
#: The GPU memory capacities the seed study compares (GB).
GPU_MEMORY_CAPACITIES_GB = (4, 8, 16, 32)


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Images per training batch.
        lr: Peak learning rate.
        optimizer: ``sgd`` (Nesterov momentum) or ``adam``.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        schedule: ``cosine`` (annealed to 0 over all steps) or ``none``.
        label_smoothing: Cross-entropy label smoothing in [0, 1).
        precision: ``fp32``, or autocast to ``bf16`` (CPU and GPU) / ``fp16`` (GPU).
        channels_last: Run the model and inputs in channels-last memory format.
        augment: Random crop with zero padding (image size / 8, at least 1 pixel).
        hflip: With ``augment``, also flip images left-right (off for digits and text).
        early_stopping_patience: Stop after this many epochs without a better validation
            accuracy (``None``: never).
        seed: Seeds initialization order, shuffling and augmentation.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        gpu_memory_gb: Cap on this process's GPU memory (the seed's 4/8/16/32 GB). Enforced on
            GPU; on CPU the peak is recorded and the cap marked not enforceable.
        eval_batch_size: Images per evaluation batch.
        num_threads: CPU threads for PyTorch (``None``: PyTorch's default).
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.01
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"
    label_smoothing: float = 0.0
    precision: Precision = "fp32"
    channels_last: bool = False
    augment: bool = True
    hflip: bool = True
    early_stopping_patience: int | None = None
    seed: int = 0
    device: str = "auto"
    gpu_memory_gb: float | None = None
    eval_batch_size: int = 256
    num_threads: int | None = None

    def __post_init__(self) -> None:
        def need(cond: bool, message: str) -> None:
            if not cond:
                raise ConfigError(message)

        need(_is_int(self.epochs) and self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(
            _is_int(self.batch_size) and self.batch_size >= 1,
            f"batch_size must be >= 1, got {self.batch_size}",
        )
        need(
            _is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
            f"eval_batch_size must be >= 1, got {self.eval_batch_size}",
        )
        need(_finite(self.lr) and self.lr > 0, f"lr must be a positive number, got {self.lr}")
        need(
            self.optimizer in OPTIMIZERS,
            f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
        )
        need(
            self.schedule in SCHEDULES,
            f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
        )
        need(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        need(
            _finite(self.momentum) and 0 <= self.momentum < 1,
            f"momentum must be in [0, 1), got {self.momentum}",
        )
        need(
            _finite(self.weight_decay) and self.weight_decay >= 0,
            f"weight_decay must be >= 0, got {self.weight_decay}",
        )
        need(
            _finite(self.label_smoothing) and 0 <= self.label_smoothing < 1,
            f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
        )
        need(
            self.early_stopping_patience is None
            or (_is_int(self.early_stopping_patience) and self.early_stopping_patience >= 1),
            f"early_stopping_patience must be >= 1, got {self.early_stopping_patience}",
        )
        need(
            self.gpu_memory_gb is None or (_finite(self.gpu_memory_gb) and self.gpu_memory_gb > 0),
            f"gpu_memory_gb must be a positive number, got {self.gpu_memory_gb}",
        )
        need(
            self.num_threads is None or (_is_int(self.num_threads) and self.num_threads >= 1),
            f"num_threads must be >= 1, got {self.num_threads}",
        )
        need(
            isinstance(self.device, str)
            and re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        need(_is_int(self.seed), f"seed must be an integer, got {self.seed!r}")
        for key in ("channels_last", "augment", "hflip"):
            value = getattr(self, key)
            need(isinstance(value, bool), f"{key} must be true or false, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown training setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
