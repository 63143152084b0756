"""The fixed inference protocol: warm-up, then a measured window of repeated batches.

Every variant of a model (dense, pruned, quantized...) is measured the same way, so savings are
measured joules, not assumed FLOPs:

1. warm-up for ``warmup_s`` seconds (at least 3 batches): caches, allocator, compiled kernels;
2. a window of at least ``min_duration_s`` seconds and ``min_batches`` batches, timing every
   batch (accelerator synchronized after each one);
3. report images/s, latency p50/p95 per batch, J/image with its provenance, batch size, thread
   count, device, and — when asked — the idle power measured just before and subtracted.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wattwise.data.loader import TensorLoader
from wattwise.data.types import DatasetSplits
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.train.device import autocast, resolve_device


@dataclass(frozen=True)
class InferenceResult:
    """What inference costs, per image and per batch."""

    batch_size: int
    device: str
    threads: int
    precision: str
    channels_last: bool
    batches: int
    images: int
    duration_s: float
    images_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    energy_per_image_j: float
    energy_provenance: str
    idle_power_w: float | None
    measurement: Measurement

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "measurement"}
        out["measurement"] = self.measurement.to_dict(timeline=False)
        return out


def inference_batch(
    data: DatasetSplits, batch_size: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The first ``batch_size`` test images, normalized as in training (rows repeated when the
    test split is smaller than one batch): the input of the inference protocol."""
    info = data.info
    loader = TensorLoader(data.test, batch_size, device=device, mean=info.mean, std=info.std)
    batch = next(iter(loader))[0]
    if batch.shape[0] < batch_size:
        reps = -(-batch_size // batch.shape[0])
        batch = batch.repeat(reps, 1, 1, 1)[:batch_size]
    return batch


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure_inference(
    model: nn.Module | Any,
    inputs: torch.Tensor,
    *,
    monitor: EnergyMonitor | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    channels_last: bool = False,
    warmup_s: float = 1.0,
    min_duration_s: float = 3.0,
    min_batches: int = 10,
    max_batches: int | None = None,
    subtract_idle_s: float | None = None,
    name: str = "inference",
) -> InferenceResult:
    """Measure ``model`` on repeated forward passes of ``inputs`` (one batch ``[B, C, H, W]``).

    Args:
        model: A module or any callable (e.g. a ``torch.compile``-d or quantized graph).
        inputs: The batch to run (real images, normalized as the model expects).
        monitor: The EnergyMonitor to use (default: a new one).
        device: Where to run (``auto``: CUDA when available).
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast.
        channels_last: Convert inputs to channels-last.
        warmup_s: Seconds of un-measured warm-up (at least 3 batches).
        min_duration_s: Minimum measured seconds.
        min_batches: Minimum measured batches.
        max_batches: Stop after this many measured batches even if shorter than
            ``min_duration_s`` (for tests).
        subtract_idle_s: Measure idle power for this long before and subtract it.
        name: Window name.
    """
    if inputs.dim() != 4 or inputs.shape[0] < 1:
        raise ConfigError(f"inputs must be one batch [B, C, H, W], got {tuple(inputs.shape)}")
    if min_batches < 1 or not (0 <= min_duration_s < math.inf) or not (0 <= warmup_s < math.inf):
        raise ConfigError("min_batches must be >= 1 and durations finite numbers >= 0")
    dev = resolve_device(str(device))
    x = inputs.to(dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if isinstance(model, nn.Module):
        if not hasattr(model, "compiled"):  # an int8 graph stays where it was compiled
            model.to(dev)
        model.eval()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    own = monitor is None
    monitor = monitor or EnergyMonitor()
    try:
        with torch.inference_mode(), autocast(dev, precision):
            start, done = time.perf_counter(), 0
            while done < 3 or time.perf_counter() - start < warmup_s:
                model(x)
                done += 1
            sync()
            idle_w = None
            if subtract_idle_s:
                with monitor.window(f"{name}/idle") as idle:
                    time.sleep(subtract_idle_s)
                idle_w = idle.measurement.avg_power_w  # type: ignore[union-attr]
            latencies: list[float] = []
            with monitor.window(name) as w:
                begin = time.perf_counter()
                while True:
                    t0 = time.perf_counter()
                    model(x)
                    sync()
                    latencies.append(time.perf_counter() - t0)
                    if max_batches is not None and len(latencies) >= max_batches:
                        break
                    if (
                        len(latencies) >= min_batches
                        and time.perf_counter() - begin >= min_duration_s
                    ):
                        break
    finally:
        if own:
            monitor.close()
    m: Measurement = w.measurement  # type: ignore[assignment]
    images = len(latencies) * x.shape[0]
    energy = m.total_energy_j
    if idle_w is not None:
        energy = max(0.0, energy - idle_w * m.duration_s)
    return InferenceResult(
        batch_size=int(x.shape[0]),
        device=str(dev),
        threads=torch.get_num_threads(),
        precision=precision,
        channels_last=channels_last,
        batches=len(latencies),
        images=images,
        duration_s=m.duration_s,
        images_per_s=images / m.duration_s,
        latency_p50_ms=_percentile(latencies, 50) * 1e3,
        latency_p95_ms=_percentile(latencies, 95) * 1e3,
        energy_per_image_j=energy / images,
        energy_provenance=m.total_provenance,
        idle_power_w=idle_w,
        measurement=m,
    )
