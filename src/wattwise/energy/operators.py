"""Operator profiles: per-operator totals of a profiled window, and each operator's estimated
share of the window's energy (:func:`operator_profile`), as the record keeps them.

An operator's energy is estimated from its *self* time (the time in the operator itself, not in
the operators it calls), weighted by the window's power timeline: host components (CPU, DRAM)
by the sampled host power at the moment each call ran, GPU components by the operator's self
CUDA time at the window's average GPU power. Without a timeline (a window shorter than a
sampling interval) the host power is the window's average. The sum over operators is at most
the window's energy (the rest is Python, idle time and the profiler itself); should
overlapping threads claim more, the shares are scaled down to 1. Every share is labelled
``estimated``, and the method travels with it. :mod:`wattwise.energy.profiler` makes the totals.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from wattwise.energy.base import Measurement

#: Operators kept per profile, by estimated energy (by self CPU time without an estimate).
TOP_K = 10
#: The label every operator energy carries.
ESTIMATED = "estimated"
#: What profiling costs, said with every profile.
OVERHEAD_NOTE = (
    "profiled with torch.profiler (FLOPs, shapes, memory): the profiled steps run slower than "
    "unprofiled ones, so their time and energy include the profiler's overhead"
)


# --- per-operator totals ---------------------------------------------------------------------
@dataclass
class OpTotals:
    """One operator's totals over a profiled window (its calls summed).

    Attributes:
        calls: How many times it ran.
        self_cpu_s / cpu_total_s: Seconds in the operator itself / including its children.
        self_device_s / device_total_s: CUDA kernel seconds it launched (``0`` without CUDA).
        flops: Floating-point operations (torch.profiler's count).
        self_cpu_memory_bytes / cpu_memory_bytes: Net bytes allocated on the host (allocations
            minus frees) by the operator itself / including its children.
        self_device_memory_bytes: The same for CUDA memory.
        spans: ``(seconds from the window's start to the call's middle, self CPU seconds)`` of
            each call: where on the power timeline its time was spent.
    """

    calls: int = 0
    self_cpu_s: float = 0.0
    cpu_total_s: float = 0.0
    self_device_s: float = 0.0
    device_total_s: float = 0.0
    flops: int = 0
    self_cpu_memory_bytes: int = 0
    cpu_memory_bytes: int = 0
    self_device_memory_bytes: int = 0
    spans: list[tuple[float, float]] = field(default_factory=list)

    def add(self, other: OpTotals, shift_s: float = 0.0) -> None:
        """Adds ``other``'s totals, its spans moved by ``shift_s`` seconds."""
        for f in fields(self):
            if f.name != "spans":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.spans.extend((t + shift_s, s) for t, s in other.spans)


# --- the record: operators with their estimated energy -----------------------------------------
@dataclass(frozen=True)
class OperatorStat:
    """One operator of a profile.

    Attributes:
        name: The operator (``aten::conv2d``) or annotation (``Optimizer.step#SGD.step``).
        calls: How many times it ran in the profiled steps.
        flops: Floating-point operations (2 per multiply-accumulate), torch.profiler's count.
        self_cpu_time_s / cpu_time_total_s: Seconds in it alone / with the operators it called.
        self_cuda_time_s / cuda_time_total_s: CUDA kernel seconds; ``None`` without CUDA.
        self_cpu_memory_bytes: Net host bytes it allocated itself (allocations minus frees).
        self_cuda_memory_bytes: The same on the GPU; ``None`` without CUDA.
        energy_share: Estimated share of the window's energy (0 to 1), ``None`` without energy.
        energy_j: ``energy_share`` x the window's energy (estimated), J.
    """

    name: str
    calls: int
    flops: int
    self_cpu_time_s: float
    cpu_time_total_s: float
    self_cuda_time_s: float | None
    cuda_time_total_s: float | None
    self_cpu_memory_bytes: int
    self_cuda_memory_bytes: int | None
    energy_share: float | None
    energy_j: float | None


@dataclass(frozen=True)
class OperatorProfile:
    """The top operators of one profiled window, with their estimated energy.

    Attributes:
        phase: ``train`` (training steps) or ``inference`` (inference batches).
        variant: The variant profiled (``baseline``, a recipe step...), ``None`` for training.
        window: The EnergyMonitor window that was profiled.
        steps: Training steps or inference batches profiled (``None``: not counted).
        duration_s: The window's length (profiler overhead included).
        energy_j: The window's energy, J (``None`` when no component was available).
        energy_provenance: ``measured``, ``estimated``, ``mixed`` or ``unavailable``.
        flops: All floating-point operations of the window (every operator, not only the top).
        operators: The top operators, by estimated energy (by self CPU time without one).
        other_share: Estimated energy share of every other operator.
        unattributed_share: Share in no operator (Python, idle, the profiler); ``None``
            without energy.
        energy_label: Always ``estimated``: the split is a model, not a measurement.
        method: How the split was made.
        note: What profiling costs.
        measurement: The window's Measurement (not serialized: the record keeps it as a phase
            where it is one).
    """

    phase: str
    variant: str | None
    window: str
    steps: int | None
    duration_s: float
    energy_j: float | None
    energy_provenance: str
    flops: int
    operators: tuple[OperatorStat, ...]
    other_share: float | None
    unattributed_share: float | None
    energy_label: str = ESTIMATED
    method: str = ""
    note: str = OVERHEAD_NOTE
    measurement: Measurement | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """``train`` or ``inference: <variant>``: how tables name it."""
        return self.phase if self.variant is None else f"{self.phase}: {self.variant}"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measurement"}
        out["operators"] = [dict(op.__dict__) for op in self.operators]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatorProfile:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)} - {"measurement", "operators"}
        op_names = {f.name for f in fields(OperatorStat)}
        operators = tuple(
            OperatorStat(**{k: v for k, v in op.items() if k in op_names})
            for op in data.get("operators") or ()
        )
        return cls(operators=operators, **{k: v for k, v in data.items() if k in names})


def _host_power(measurement: Measurement) -> tuple[list[float], list[float]] | None:
    """The timeline's sample times and host (non-GPU) power, or ``None`` without samples."""
    samples = measurement.timeline or ()
    if not samples:
        return None
    times = [s.t_s for s in samples]
    power = [sum(w for c, w in s.power_w.items() if c.split(":", 1)[0] != "gpu") for s in samples]
    return times, power


def _kind_j(measurement: Measurement) -> tuple[float, float]:
    gpu = sum(c.energy_j or 0.0 for c in measurement.summed_components if c.kind == "gpu")
    return measurement.total_energy_j - gpu, gpu


def operator_profile(
    totals: Mapping[str, OpTotals],
    measurement: Measurement,
    *,
    phase: str,
    variant: str | None = None,
    steps: int | None = None,
    top_k: int = TOP_K,
) -> OperatorProfile:
    """Estimates each operator's share of ``measurement``'s energy and keeps the ``top_k``.

    Args:
        totals: Per-operator totals, spans in seconds from the window's start.
        measurement: What the profiled window cost (its energy and power timeline).
        phase: ``train`` or ``inference``.
        variant: The variant profiled (inference).
        steps: Steps or batches profiled.
        top_k: Operators kept.
    """
    energy = measurement.total_energy_j
    duration = measurement.duration_s
    host_j, gpu_j = _kind_j(measurement)
    timeline = _host_power(measurement)
    has_cuda = any(t.device_total_s > 0 for t in totals.values())
    raw: dict[str, float] = {}
    if energy > 0 and duration > 0:
        avg_host_w, gpu_w = host_j / duration, gpu_j / duration
        for name, t in totals.items():
            if timeline is None:
                host = t.self_cpu_s * avg_host_w
            else:
                times, power = timeline
                host = sum(
                    s * power[min(bisect_left(times, mid), len(times) - 1)] for mid, s in t.spans
                )
            raw[name] = host + t.self_device_s * gpu_w
    method = _method(timeline is not None, has_cuda)
    claimed = sum(raw.values())
    if energy > 0 and claimed > energy:  # threads that overlap in time: never more than all
        raw = {name: e * energy / claimed for name, e in raw.items()}
        method += "; the operators' estimates overlapped in time and were scaled to the window"
    shares = {name: e / energy for name, e in raw.items()} if energy > 0 else {}

    def rank(item: tuple[str, OpTotals]) -> tuple[float, float]:
        return (shares.get(item[0], 0.0), item[1].self_cpu_s)

    ranked = sorted(totals.items(), key=rank, reverse=True)
    top = tuple(_stat(name, t, shares.get(name), energy, has_cuda) for name, t in ranked[:top_k])
    rest = [shares.get(name, 0.0) for name, _ in ranked[top_k:]]
    return OperatorProfile(
        phase=phase,
        variant=variant,
        window=measurement.name,
        steps=steps,
        duration_s=duration,
        energy_j=energy if measurement.summed_components else None,
        energy_provenance=measurement.total_provenance,
        flops=int(sum(t.flops for t in totals.values())),
        operators=top,
        other_share=math.fsum(rest) if shares else None,
        unattributed_share=max(0.0, 1.0 - math.fsum(shares.values())) if shares else None,
        method=method,
        measurement=measurement,
    )


def _method(timeline: bool, cuda: bool) -> str:
    host = (
        "self CPU time of each call x the host power (CPU, DRAM) sampled when it ran (power "
        "timeline)"
        if timeline
        else "self CPU time x the window's average host power (no power timeline in the window: "
        "shorter than a sampling interval, or not recorded)"
    )
    gpu = "; plus self CUDA time x the window's average GPU power" if cuda else ""
    return f"{ESTIMATED}: {host}{gpu}; share = that energy / the window's energy"


def _stat(name: str, t: OpTotals, share: float | None, energy: float, cuda: bool) -> OperatorStat:
    return OperatorStat(
        name=name,
        calls=t.calls,
        flops=t.flops,
        self_cpu_time_s=t.self_cpu_s,
        cpu_time_total_s=t.cpu_total_s,
        self_cuda_time_s=t.self_device_s if cuda else None,
        cuda_time_total_s=t.device_total_s if cuda else None,
        self_cpu_memory_bytes=t.self_cpu_memory_bytes,
        self_cuda_memory_bytes=t.self_device_memory_bytes if cuda else None,
        energy_share=share,
        energy_j=share * energy if share is not None else None,
    )
