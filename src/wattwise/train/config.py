"""Training settings as one validated, frozen value (YAML/CLI -> TrainConfig -> fit)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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
#: The GPU memory capacities the seed study compares (GiB = 2**30 bytes).
GPU_MEMORY_CAPACITIES_GIB = (4, 8, 16, 32)

#: Training keys the previous version stored under another name -> their name now. Stored data
#: (checkpoints, trial specs, records, results stores) is read through :func:`current_keys`; a
#: study file that still uses an old key is refused (``wattwise.config``).
RENAMED_KEYS = {"gpu_memory_gb": "gpu_memory_gib"}


def current_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the keys of :data:`RENAMED_KEYS` under their current names, in place (where
    both names are present, the current one wins)."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        new = RENAMED_KEYS.get(key)
        if new is None:
            values[key] = value
        elif new not in data:
            values[new] = value
    return values


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
        gpu_memory_gib: Cap on this process's GPU memory in GiB (the seed's 4/8/16/32). Enforced
            on GPU; on CPU the peak is recorded and the cap marked not enforceable.
        gpu_power_limit_w: GPU power limit in watts, held for the whole trial and restored
            after it (NVML; needs root; :mod:`wattwise.energy.power_limit`). ``None``: the
            GPU's limit is left as it is.
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
    gpu_memory_gib: _Positive | None = None
    gpu_power_limit_w: _Positive | None = None
    eval_batch_size: PositiveInt = 256
    num_threads: PositiveInt | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; :meth:`from_dict` reads it back."""
        data: dict[str, Any] = dump(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Validates ``data`` (e.g. a checkpoint's settings); an unknown key is a ConfigError.

        The keys the previous version wrote (``gpu_memory_gb``) are read under their current
        names (:data:`RENAMED_KEYS`).
        """
        return validate(cls, current_keys(data))


@dataclass(frozen=True)
class MemoryCap:
    """A GPU memory capacity and whether it is enforced (what a trial records; plain data, so
    that records and stores read it without torch).

    Attributes:
        gpu_memory_gib: The cap (GiB = 2**30 bytes), or ``None`` for none.
        enforced: True when PyTorch's allocator refuses allocations above it.
        note: How (or why not) it is enforced.
    """

    gpu_memory_gib: float | None
    enforced: bool
    note: str

    def __post_init__(self) -> None:
        cap = self.gpu_memory_gib
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int | float)):
            raise ValueError(f"memory_cap.gpu_memory_gib must be a number, got {cap!r}")
        if cap is not None:
            object.__setattr__(self, "gpu_memory_gib", float(cap))
        if not isinstance(self.enforced, bool):
            raise ValueError(f"memory_cap.enforced must be true or false, got {self.enforced!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"gpu_memory_gib": self.gpu_memory_gib, "enforced": self.enforced, "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryCap:
        """Inverse of :meth:`to_dict` (unknown keys ignored; the previous version's
        ``gpu_memory_gb`` is read too).

        Raises:
            ValueError: A field is missing.
        """
        values = current_keys(data)
        missing = [k for k in ("gpu_memory_gib", "enforced", "note") if k not in values]
        if missing:
            raise ValueError(f"memory_cap record lacks {', '.join(missing)}")
        return cls(values["gpu_memory_gib"], values["enforced"], values["note"])
