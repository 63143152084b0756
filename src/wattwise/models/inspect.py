"""Static cost of a model: parameters, MACs, FLOPs and serialized size.

MACs vs FLOPs: one multiply-accumulate (MAC) is two floating-point operations. This module counts
with ``torch.utils.flop_counter.FlopCounterMode``, which reports FLOPs = 2 x MACs for
convolutions and matrix products (the only operations it counts; BatchNorm, activations, pooling
and additions are not counted). torchvision's published "GFLOPS" (e.g. 1.814 for ResNet-18 at
224 px) are **MACs**; compare them with :func:`count_macs`, not :func:`count_flops`.

Counting runs the model once on a zero batch: an input over :data:`MAX_INPUT_ELEMENTS` is refused
before anything is allocated, and running out of memory is one :class:`ConfigError` line.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from wattwise.errors import ConfigError

InputShape = tuple[int, int, int]

_SHAPE_SEPARATORS = re.compile(r"\s*[x×X,]\s*")

#: The most input elements (batch x C x H x W) counted: 2**26, 256 MiB as float32 (3x4729x4729).
MAX_INPUT_ELEMENTS = 2**26


def parse_input_shape(text: str) -> InputShape:
    """Parse ``"CxHxW"`` (``"3x224x224"``; ``,`` or ``×`` also separate) into a tuple.

    Args:
        text: The shape as typed on the command line.

    Returns:
        ``(channels, height, width)``.

    Raises:
        ConfigError: The text is not three positive integers.
    """
    parts = _SHAPE_SEPARATORS.split(str(text).strip())
    if len(parts) != 3 or not all(p.isdecimal() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"invalid input shape {text!r}: expected CxHxW with positive integers, e.g. 3x224x224"
        )
    channels, height, width = (int(p) for p in parts)
    _check_size(f"input shape {text!r}", channels * height * width)
    return channels, height, width


def _check_size(what: str, elements: int) -> None:
    if elements > MAX_INPUT_ELEMENTS:
        raise ConfigError(
            f"{what} has {elements:,} elements, more than the {MAX_INPUT_ELEMENTS:,} "
            "(256 MiB as float32) wattwise runs a model on to count it; use a smaller input"
        )


def is_allocation_failure(err: BaseException) -> bool:
    """MemoryError, or an allocator's RuntimeError (CPU "can't allocate memory" / "not enough
    memory", CUDA "out of memory")."""
    text = str(err).lower()
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError)
        and any(s in text for s in ("allocate memory", "not enough memory", "out of memory"))
    )


def _as_shape(input_shape: Sequence[int] | str) -> InputShape:
    if isinstance(input_shape, str):
        return parse_input_shape(input_shape)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ConfigError(f"input_shape must be (C, H, W) positive integers, got {input_shape!r}")
    _check_size(f"input shape {'x'.join(map(str, shape))}", shape[0] * shape[1] * shape[2])
    return shape  # type: ignore[return-value]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once).

    Args:
        model: The model.
        trainable_only: Count only parameters with ``requires_grad``.

    Returns:
        Parameter count (elements, not bytes).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def serialized_size_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())`` in bytes (what a checkpoint file takes).

    Includes buffers (BatchNorm statistics) and the zip container's small overhead. A model on
    the meta device has no data, so its size is meaningless.
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _example_input(model: nn.Module, shape: InputShape, batch_size: int) -> torch.Tensor:
    """A zero batch on the model's device, in its floating-point dtype (float32 if none)."""
    device, dtype = torch.device("cpu"), torch.float32
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            device, dtype = tensor.device, tensor.dtype
            break
    return torch.zeros((batch_size, *shape), device=device, dtype=dtype)


def count_flops(
    model: nn.Module, input_shape: Sequence[int] | str = (3, 224, 224), batch_size: int = 1
) -> int:
    """FLOPs of one forward pass (FLOPs = 2 x MACs; conv and matmul only).

    Runs the model once in eval mode under ``no_grad`` on a zero batch, on the model's own
    device (a model on the meta device is counted without computing anything). Training flags
    are restored afterwards.

    Args:
        model: The model.
        input_shape: ``(C, H, W)`` of one image, or text such as ``"3x224x224"``.
        batch_size: Images per forward pass; the count covers the whole batch.

    Returns:
        Floating-point operations for the batch.

    Raises:
        ConfigError: A bad shape or batch size, an input over :data:`MAX_INPUT_ELEMENTS`, or
            not enough memory to run the model on it.
    """
    shape = _as_shape(input_shape)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    text = "x".join(map(str, shape))
    _check_size(f"a batch of {batch_size} at {text}", batch_size * shape[0] * shape[1] * shape[2])
    counter = FlopCounterMode(display=False)
    try:
        example = _example_input(model, shape, batch_size)
        with _eval_mode(model), torch.no_grad(), counter:
            model(example)
    except (MemoryError, RuntimeError) as err:
        if not is_allocation_failure(err):
            raise
        raise ConfigError(
            f"not enough memory to run {type(model).__name__} on a batch of {batch_size} at "
            f"{text} ({type(err).__name__}); use a smaller input"
        ) from err
    return int(counter.get_total_flops())


def count_macs(
    model: nn.Module, input_shape: Sequence[int] | str = (3, 224, 224), batch_size: int = 1
) -> int:
    """Multiply-accumulates of one forward pass (what torchvision publishes as "GFLOPS").

    Args:
        model: The model.
        input_shape: ``(C, H, W)`` of one image, or text such as ``"3x224x224"``.
        batch_size: Images per forward pass; the count covers the whole batch.

    Returns:
        MACs for the batch (``count_flops(...) // 2``).
    """
    return count_flops(model, input_shape, batch_size) // 2


@dataclass(frozen=True)
class ModelStats:
    """Static cost of a model for one image.

    Attributes:
        params: Parameter count (elements).
        macs: Multiply-accumulates per image (torchvision's "GFLOPS" x 1e9).
        flops: Floating-point operations per image (2 x ``macs``).
        size_bytes: Bytes of ``torch.save(model.state_dict())``.
        input_shape: ``(C, H, W)`` the counts were taken at.
    """

    params: int
    macs: int
    flops: int
    size_bytes: int
    input_shape: InputShape

    def to_dict(self) -> dict[str, Any]:
        """Plain types for JSON, SQLite and tables (``input_shape`` as a list)."""
        return {
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "size_bytes": self.size_bytes,
            "input_shape": list(self.input_shape),
        }


def inspect_model(model: nn.Module, input_shape: Sequence[int] | str = (3, 224, 224)) -> ModelStats:
    """Parameters, MACs, FLOPs and serialized size of ``model`` for one image.

    Args:
        model: The model (counted where it lives: CPU, GPU or the meta device).
        input_shape: ``(C, H, W)`` of one image, or text such as ``"3x224x224"``.

    Returns:
        The :class:`ModelStats`.
    """
    shape = _as_shape(input_shape)
    flops = count_flops(model, shape, batch_size=1)
    return ModelStats(
        params=count_parameters(model),
        macs=flops // 2,
        flops=flops,
        size_bytes=serialized_size_bytes(model),
        input_shape=shape,
    )


def format_count(value: float) -> str:
    """``11689512`` -> ``"11.69 M"``, ``1814073856`` -> ``"1.814 G"`` (4 significant digits)."""
    for threshold, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.4g} {prefix}"
    return f"{value:g}"


def format_bytes(size_bytes: int) -> str:
    """``46830571`` -> ``"44.66 MiB"`` (binary units, as torchvision's file sizes)."""
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.4g} {unit}"
        size /= 1024
    return f"{size:.4g} GiB"


def stats_table(stats: ModelStats) -> dict[str, str]:
    """Row label -> formatted value, for the CLI's tables (labels say MACs vs FLOPs)."""
    return {
        "input": "x".join(str(d) for d in stats.input_shape),
        "params": format_count(stats.params),
        "MACs": format_count(stats.macs),
        "FLOPs (2 x MACs)": format_count(stats.flops),
        "size (state_dict)": format_bytes(stats.size_bytes),
    }


def format_stats(stats: ModelStats, title: str | None = None) -> str:
    """Aligned text block of :func:`stats_table`, with ``title`` on the first line if given."""
    table = stats_table(stats)
    width = max(len(label) for label in table)
    lines = [title] if title else []
    lines += [f"{label:<{width}}  {value}" for label, value in table.items()]
    return "\n".join(lines)
