"""Per-window PyTorch profiler: FLOPs, the operators that took the time and memory, and each
operator's estimated share of the window's energy.

FLOPs are as ``torch.profiler`` counts them with ``with_flops=True``: 2 per multiply-accumulate
for convolutions and matrix products (so ``flops / 2`` are MACs).

**One session per process.** torch.profiler (Kineto) runs one profiling session per process: a
second ``profile()`` entered while one runs cancels the first, which then reports nothing. So
every profiled window of every :class:`~wattwise.energy.monitor.EnergyMonitor` in the process
shares one session (:class:`_Session`, the process's one, like Kineto itself): when a profiled
window opens or closes while others are open, the running session is stopped, its events are
handed to every window that was open during it, and a new one starts for the windows still
open. Windows therefore nest and overlap freely, and any number run one after another. A session
that someone else started (``with torch.profiler.profile()`` around wattwise) is refused with a
:class:`~wattwise.errors.WattwiseError` rather than silently cancelled.

**Energy shares are estimates**, made from the operators' self times against the window's
power timeline (:mod:`wattwise.energy.operators`, :func:`WindowProfiler.operators`).

**Overhead.** Profiling slows the profiled code down (about 1.0x plain, up to 1.6x with memory
tracking on small inputs; far more per operator on tiny models), so a profiled window's energy is
that of the profiled run. Profile a bounded number of training steps (:data:`TRAIN_STEPS`, with
:func:`profile_training_steps`) or inference batches (:func:`profile_batches`), never a whole
epoch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from wattwise.energy.base import Measurement, OpStat, ProfileSummary
from wattwise.energy.operators import (
    ESTIMATED,
    OVERHEAD_NOTE,
    TOP_K,
    OperatorProfile,
    OperatorStat,
    OpTotals,
    operator_profile,
)
from wattwise.errors import WattwiseError


class EnergyMonitor(Protocol):
    """What this module needs of an :class:`~wattwise.energy.monitor.EnergyMonitor` (which
    imports this module: a protocol, not an import, keeps the two free of a cycle)."""

    def begin_window(self, name: str, *, profile: Any = False) -> None: ...

    def end_window(self, name: str) -> Measurement: ...

    def window(self, name: str, *, profile: Any = False) -> Any: ...


__all__ = ["ESTIMATED", "OVERHEAD_NOTE", "TOP_K", "OpTotals", "OperatorProfile", "OperatorStat"]
__all__ += ["ProfiledSteps", "WindowProfiler", "operator_profile", "profile_batches"]
__all__ += ["profile_training_steps", "summarize"]

#: Training steps profiled by default, after :data:`WARMUP_STEPS` unprofiled ones.
TRAIN_STEPS = 5
#: Training steps left unprofiled first (allocator and lazy initialization).
WARMUP_STEPS = 1
#: An inference profile runs at least :data:`INFERENCE_MIN_BATCHES` batches, then on until
#: :data:`INFERENCE_MIN_S` seconds (a few samples of the power timeline) or
#: :data:`INFERENCE_MAX_BATCHES` batches, whichever comes first: every call is an event that
#: torch.profiler keeps and parses (about 0.1 ms per operator call), so a small model's
#: half-second would be thousands of them.
INFERENCE_MIN_BATCHES = 5
INFERENCE_MAX_BATCHES = 50
INFERENCE_MIN_S = 0.5


def _first(evt: Any, *names: str) -> float:
    """The first of ``names`` that ``evt`` has (torch renamed ``cuda_*`` to ``device_*``)."""
    for name in names:
        value = getattr(evt, name, None)
        if value is not None:
            return float(value)
    return 0.0


def _reduce(events: Sequence[Any]) -> dict[str, OpTotals]:
    """Host operators of one session (kernels are counted in the operators that launched them;
    ``[memory]`` markers hold no operator), spans in seconds from the session's trace start."""
    out: dict[str, OpTotals] = {}
    for evt in events:
        if evt.name == "[memory]" or "CPU" not in str(getattr(evt, "device_type", "CPU")):
            continue
        self_cpu = float(evt.self_cpu_time_total) / 1e6
        totals = out.setdefault(evt.key, OpTotals())
        totals.calls += int(getattr(evt, "count", 1) or 1)
        totals.self_cpu_s += self_cpu
        totals.cpu_total_s += float(evt.cpu_time_total) / 1e6
        totals.self_device_s += _first(evt, "self_device_time_total", "self_cuda_time_total") / 1e6
        totals.device_total_s += _first(evt, "device_time_total", "cuda_time_total") / 1e6
        totals.flops += int(getattr(evt, "flops", 0) or 0)
        totals.self_cpu_memory_bytes += int(getattr(evt, "self_cpu_memory_usage", 0) or 0)
        totals.cpu_memory_bytes += int(getattr(evt, "cpu_memory_usage", 0) or 0)
        totals.self_device_memory_bytes += int(
            _first(evt, "self_device_memory_usage", "self_cuda_memory_usage")
        )
        span = evt.time_range
        totals.spans.append(((span.start + span.end) / 2e6, self_cpu))
    return out


# --- the process's one profiler session ------------------------------------------------------
def _foreign_session_running() -> bool:
    import torch

    return bool(torch.autograd._profiler_enabled())


class _Session:
    """The one torch.profiler session of this process, shared by every open profiled window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: list[WindowProfiler] = []
        self._prof: Any = None
        self._started_unix_s = 0.0

    def join(self, window: WindowProfiler) -> None:
        with self._lock:
            if self._prof is None and _foreign_session_running():
                raise WattwiseError(
                    "a torch.profiler session is already running in this process (started "
                    "outside wattwise); end it before profiling a window, or profile without "
                    "profile=True"
                )
            self._flush()
            self._windows.append(window)
            self._start()

    def leave(self, window: WindowProfiler) -> None:
        with self._lock:
            if window not in self._windows:
                return
            self._flush()
            self._windows.remove(window)
            if self._windows:
                self._start()

    def _start(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            activities.append(ProfilerActivity.CUDA)
        prof = profile(
            activities=activities,
            with_flops=True,
            profile_memory=any(w.profile_memory for w in self._windows),
            record_shapes=True,
        )
        self._started_unix_s = time.time()
        prof.__enter__()
        self._prof = prof

    def _flush(self) -> None:
        """Stops the running session and hands its operators to every window open during it."""
        prof, self._prof = self._prof, None
        if prof is None:
            return
        prof.__exit__(None, None, None)
        start = _trace_start_unix_s(prof, self._started_unix_s)
        reduced = _reduce(prof.events() or ())
        for window in self._windows:
            window._add(reduced, start)


def _trace_start_unix_s(prof: Any, fallback: float) -> float:
    """When Kineto's trace began (event times count from it), in seconds since the epoch."""
    try:
        ns = prof.profiler.kineto_results.trace_start_ns()
    except Exception:  # an older or newer torch without it: the time profile() was entered
        return fallback
    value = ns / 1e9
    return value if abs(value - fallback) < 60 else fallback  # another clock: not comparable


_SESSION = _Session()


class WindowProfiler:
    """torch.profiler over one window: pass one to ``monitor.window(name, profile=...)``.

    ``stop()`` returns the window's :class:`ProfileSummary` (what the Measurement keeps);
    :meth:`operators` then gives its :class:`OperatorProfile` with the energy estimate.

    Args:
        top_k: How many operators to keep.
        profile_memory: Track tensor memory (more overhead).
    """

    def __init__(self, top_k: int = TOP_K, profile_memory: bool = True):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = top_k
        self.profile_memory = profile_memory
        self.started_unix_s: float | None = None
        self._totals: dict[str, OpTotals] = {}
        self._running = False

    def start(self) -> None:
        if self._running:
            raise ValueError("this WindowProfiler is already running")
        self.started_unix_s = time.time()
        _SESSION.join(self)
        self._running = True

    def stop(self) -> ProfileSummary:
        if self._running:
            _SESSION.leave(self)
            self._running = False
        return self.summary()

    def _add(self, reduced: Mapping[str, OpTotals], trace_start_unix_s: float) -> None:
        # spans count from the window's profiler start (the window's own start is a few
        # microseconds earlier: operator_profile() corrects with the Measurement's start)
        shift = trace_start_unix_s - (self.started_unix_s or trace_start_unix_s)
        for name, totals in reduced.items():
            self._totals.setdefault(name, OpTotals()).add(totals, shift)

    @property
    def totals(self) -> dict[str, OpTotals]:
        """Per-operator totals so far (spans from the profiler's start)."""
        return self._totals

    def summary(self) -> ProfileSummary:
        """Total FLOPs, the ``top_k`` operators by self CPU time, the peak profiled memory."""
        return summarize(self._totals, self.top_k)

    def operators(
        self,
        measurement: Measurement,
        *,
        phase: str,
        variant: str | None = None,
        steps: int | None = None,
    ) -> OperatorProfile:
        """The window's :class:`OperatorProfile` (``measurement``: what the window cost)."""
        offset = (self.started_unix_s or measurement.start_unix_s) - measurement.start_unix_s
        moved = {}
        for name, totals in self._totals.items():
            copy = OpTotals()
            copy.add(totals, offset)
            moved[name] = copy
        return operator_profile(
            moved, measurement, phase=phase, variant=variant, steps=steps, top_k=self.top_k
        )


def summarize(totals: Mapping[str, OpTotals], top_k: int = TOP_K) -> ProfileSummary:
    """A :class:`ProfileSummary` of per-operator totals: all FLOPs, the ``top_k`` by self CPU."""
    flops = int(sum(t.flops for t in totals.values()))
    ranked = sorted(totals.items(), key=lambda item: item[1].self_cpu_s, reverse=True)[:top_k]
    top = tuple(
        OpStat(
            name=name,
            calls=t.calls,
            self_cpu_time_s=t.self_cpu_s,
            cpu_time_total_s=t.cpu_total_s,
            device_time_total_s=t.device_total_s,
            flops=t.flops,
        )
        for name, t in ranked
    )
    peak = max((t.cpu_memory_bytes for t in totals.values()), default=None)
    return ProfileSummary(flops=flops, top_ops=top, peak_profiled_memory_bytes=peak)


# --- what wattwise profiles: training steps, inference batches ---------------------------------
class ProfiledSteps:
    """Handle of :func:`profile_training_steps`: ``profile`` is set once the steps ran."""

    def __init__(self) -> None:
        self.profile: OperatorProfile | None = None


@contextmanager
def profile_training_steps(
    model: Any,
    monitor: EnergyMonitor,
    *,
    steps: int = TRAIN_STEPS,
    warmup: int = WARMUP_STEPS,
    name: str = "profile/train",
    top_k: int = TOP_K,
) -> Iterator[ProfiledSteps]:
    """Profiles ``steps`` training steps of ``model`` inside whatever trains it.

    A step runs from one forward call of ``model`` in training mode to the next (its forward,
    loss, backward and optimizer step). After ``warmup`` steps, a profiled window ``name`` opens
    at a forward call and closes ``steps`` forward calls later — or at the first forward call in
    eval mode (validation began), or when the block ends. The window is nested in the training's
    own windows: its joules are training joules, so it is no phase of its own.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    handle = ProfiledSteps()
    profiler = WindowProfiler(top_k)
    state = {"seen": 0, "open": False, "done": False}

    def finish() -> None:
        if state["open"]:
            state["open"] = False
            measurement = monitor.end_window(name)
            profiled = state["seen"] - warmup
            handle.profile = profiler.operators(measurement, phase="train", steps=profiled)
        state["done"] = True
        hook.remove()

    def before_forward(module: Any, args: Any) -> None:
        if state["done"]:
            return
        if not module.training:
            if state["open"]:
                finish()
            return
        if state["open"] and state["seen"] - warmup >= steps:
            finish()
            return
        if not state["open"] and state["seen"] == warmup:
            monitor.begin_window(name, profile=profiler)
            state["open"] = True
        state["seen"] += 1

    hook = model.register_forward_pre_hook(before_forward)
    try:
        yield handle
    finally:
        if not state["done"]:
            finish()


def profile_batches(
    call: Callable[[Any], Any],
    inputs: Any,
    monitor: EnergyMonitor,
    *,
    variant: str,
    min_batches: int | None = None,
    max_batches: int | None = None,
    min_s: float | None = None,
    top_k: int = TOP_K,
) -> OperatorProfile:
    """Profiles inference of one variant in its own window ``profile/<variant>``: one warm-up
    batch outside it, then ``min_batches`` batches and on until ``min_s`` seconds or
    ``max_batches`` batches (defaults: :data:`INFERENCE_MIN_BATCHES`, :data:`INFERENCE_MIN_S`,
    :data:`INFERENCE_MAX_BATCHES`), under ``torch.inference_mode()``. The window is extra
    work: where a trial keeps it, it is a measurement phase (``profile.measurement``)."""
    import torch

    min_batches = INFERENCE_MIN_BATCHES if min_batches is None else min_batches
    max_batches = max(min_batches, INFERENCE_MAX_BATCHES if max_batches is None else max_batches)
    min_s = INFERENCE_MIN_S if min_s is None else min_s

    profiler = WindowProfiler(top_k)
    name = f"profile/{variant}"
    with torch.inference_mode():
        call(inputs)
        batches = 0
        with monitor.window(name, profile=profiler) as window:
            begin = time.perf_counter()
            while batches < min_batches or (
                batches < max_batches and time.perf_counter() - begin < min_s
            ):
                call(inputs)
                batches += 1
    assert window.measurement is not None
    return profiler.operators(window.measurement, phase="inference", variant=variant, steps=batches)
