"""Optional per-window PyTorch profiler: FLOPs, the operators that took the time, memory.

FLOPs are as ``torch.profiler`` counts them with ``with_flops=True``: 2 per multiply-accumulate
for convolutions and matrix products (so ``flops / 2`` are MACs). Profiling slows the window down
(about 1.0x plain, up to 1.6x with memory tracking on small inputs), so a profiled window's energy
is that of the profiled run.
"""

from __future__ import annotations

from typing import Any

from wattwise.energy.base import OpStat, ProfileSummary


class WindowProfiler:
    """Wraps ``torch.profiler.profile`` for one window.

    Args:
        top_k: How many operators (by self CPU time) to keep.
        profile_memory: Track tensor memory (more overhead).
    """

    def __init__(self, top_k: int = 10, profile_memory: bool = True):
        import torch  # here, not at the top: `import wattwise.energy` stays free of torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            activities.append(ProfilerActivity.CUDA)
        self.top_k = top_k
        self._prof = profile(
            activities=activities,
            with_flops=True,
            profile_memory=profile_memory,
            record_shapes=True,
        )

    def start(self) -> None:
        self._prof.__enter__()

    def stop(self) -> ProfileSummary:
        self._prof.__exit__(None, None, None)
        return summarize(self._prof.key_averages(), self.top_k)


def _device_time_us(evt: Any) -> float:
    for attr in ("device_time_total", "cuda_time_total"):
        value = getattr(evt, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def summarize(averages: Any, top_k: int = 10) -> ProfileSummary:
    """Summarize ``key_averages()``: total FLOPs, the ``top_k`` operators by self CPU time."""
    events = list(averages)
    flops = int(sum(int(getattr(e, "flops", 0) or 0) for e in events))
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top_k]
    top = tuple(
        OpStat(
            name=e.key,
            calls=int(e.count),
            self_cpu_time_s=e.self_cpu_time_total / 1e6,
            cpu_time_total_s=e.cpu_time_total / 1e6,
            device_time_total_s=_device_time_us(e) / 1e6,
            flops=int(getattr(e, "flops", 0) or 0),
        )
        for e in ranked
    )
    mem = [int(getattr(e, "cpu_memory_usage", 0) or 0) for e in events]
    peak = max(mem) if mem else None
    return ProfileSummary(flops=flops, top_ops=top, peak_profiled_memory_bytes=peak)
