"""Device choice, mixed precision and the per-process GPU memory cap."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from wattwise.errors import ConfigError
from wattwise.train.config import MemoryCap


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was requested but no CUDA GPU is available")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ConfigError(
            f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible"
        )
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """Autocast context for ``bf16``/``fp16``, a no-op for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 autocast is for GPUs; on CPU use precision bf16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def apply_memory_cap(device: torch.device, gpu_memory_gib: float | None) -> MemoryCap:
    """Cap this process's CUDA memory at ``gpu_memory_gib`` (``set_per_process_memory_fraction``).

    On CPU nothing can be enforced: the cap is recorded as not enforceable.
    """
    if gpu_memory_gib is None:
        if device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, device)
        return MemoryCap(None, False, "no cap")
    if device.type != "cuda":
        return MemoryCap(
            gpu_memory_gib, False, "not enforceable on CPU: the peak memory is recorded instead"
        )
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = gpu_memory_gib * 2**30 / total
    if fraction >= 1.0:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        return MemoryCap(
            gpu_memory_gib,
            False,
            f"the device has only {total / 2**30:.1f} GiB: the cap does not bind",
        )
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    torch.cuda.empty_cache()
    return MemoryCap(
        gpu_memory_gib,
        True,
        f"torch.cuda.set_per_process_memory_fraction({fraction:.4f}) of {total / 2**30:.1f} GiB",
    )


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or a RuntimeError saying "out of memory"."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def out_of_memory_reason(err: BaseException, gpu_memory_gib: float | None) -> str:
    """Why a run ran out of memory, in one line: ``does not fit in 8 GiB`` under a cap, else
    the error (at most 300 characters)."""
    if gpu_memory_gib:
        return f"does not fit in {gpu_memory_gib:g} GiB"
    return f"out of memory: {type(err).__name__}: {err}"[:300]


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set PyTorch's intra-op CPU threads."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
