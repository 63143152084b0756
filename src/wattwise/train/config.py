"""Training settings as one validated, frozen value (YAML/CLI -> TrainConfig -> fit)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from annotated_types import Ge, Gt, Lt

from wattwise.validation import (
    Bool,
    Int,
    PositiveInt,
    StrictNumber,
    Text,
    checked,
    config_dataclass,
    dump,
    validate,
)

Optimizer = Literal["sgd", "adam"]
Schedule = Literal["cosine", "none"]
Precision = Literal["fp32", "bf16", "fp16"]

OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: The GPU memory capacities the seed study compares (GB).
GPU_MEMORY_CAPACITIES_GB = (4, 8, 16, 32)


def _device(text: str) -> str:
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", text) is None:
        raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


Device = Annotated[Text, checked(_device)]
_Positive = Annotated[StrictNumber, Gt(0)]
_Share = Annotated[StrictNumber, Ge(0), Lt(1)]


@config_dataclass
class TrainConfig:
    """How to train.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Images per training batch.
        lr: Peak learning rate (> 0).
        optimizer: ``sgd`` (Nesterov momentum) or ``adam``.
        momentum: SGD momentum in [0, 1).
        weight_decay: L2 penalty (>= 0).
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
        gpu_memory_gb: Cap on this process's GPU memory in GB (the seed's 4/8/16/32). Enforced
            on GPU; on CPU the peak is recorded and the cap marked not enforceable.
        eval_batch_size: Images per evaluation batch.
        num_threads: CPU threads for PyTorch (``None``: PyTorch's default).
    """

    epochs: PositiveInt = 5
    batch_size: PositiveInt = 64
    lr: _Positive = 0.01
    optimizer: Optimizer = "sgd"
    momentum: _Share = 0.9
    weight_decay: Annotated[StrictNumber, Ge(0)] = 5e-4
    schedule: Schedule = "cosine"
    label_smoothing: _Share = 0.0
    precision: Precision = "fp32"
    channels_last: Bool = False
    augment: Bool = True
    hflip: Bool = True
    early_stopping_patience: PositiveInt | None = None
    seed: Int = 0
    device: Device = "auto"
    gpu_memory_gb: _Positive | None = None
    eval_batch_size: PositiveInt = 256
    num_threads: PositiveInt | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; :meth:`from_dict` reads it back."""
        data: dict[str, Any] = dump(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Validates ``data`` (e.g. a checkpoint's settings); an unknown key is a ConfigError."""
        return validate(cls, data)
