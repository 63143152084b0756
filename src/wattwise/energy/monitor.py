"""EnergyMonitor: named, nestable, overlapping measurement windows over all meters.

    monitor = EnergyMonitor()
    with monitor.window("train/epoch1") as w:
        train_one_epoch()
    print(w.measurement.total_energy_j, w.measurement.total_provenance)

How the numbers are made:

* Every component has a *cumulative energy*: counters (RAPL, NVML total energy, CPU time x W)
  are read directly; power readings (NVML without counter, nvidia-smi, the DRAM estimate) are
  integrated with the trapezoid rule between consecutive reads. A window's energy is the
  difference of the cumulative values read synchronously at its two edges, so windows nest and
  overlap freely and nested RAPL domains are never summed.
* A background sampler (default 10 Hz) runs while any window is open: it reads every meter (which
  also unwraps counters and integrates power), records the power timeline, and tracks each open
  window's peak power, peak resident memory and peak GPU memory.
* Accelerator work is synchronized at both edges (``torch.cuda.synchronize`` if this process has
  initialized CUDA, or a ``sync`` callable you pass).
* Reads are bounded (``read_timeout_s``, :mod:`wattwise.energy.bounded`); a reading's
  ``suspect`` components mark the windows open then; the sampler reads at least every
  ``max_read_interval_s`` of each meter; device-wide energy of parallel trials, and of a GPU
  that other processes used while the window was open, is ``shared``
  (:mod:`wattwise.energy.sharing`).

Size: about 545 lines: one state machine — open windows, the sampler thread and the meter reads
— whose parts share one lock and the cumulative values; split, each half would reach into the
other's state.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from annotated_types import Ge, Le

from wattwise.energy.base import (
    ComponentEnergy,
    Measurement,
    Meter,
    PowerSample,
    Provenance,
    WindowProgress,
)
from wattwise.energy.bounded import MeterReaders
from wattwise.energy.carbon import CarbonConfig
from wattwise.energy.memory import CudaPeakTracker
from wattwise.energy.meters import MeterNames, MeterSet, MeterSettings, create_meters
from wattwise.energy.process import ProcessTree
from wattwise.energy.sharing import mark_shared, shared_by_processes
from wattwise.errors import WattwiseError
from wattwise.validation import Bool, Number, PositiveInt, PositiveNumber, config_dataclass

if TYPE_CHECKING:
    from wattwise.energy.profiler import WindowProfiler

F = TypeVar("F", bound=Callable[..., Any])


#: A background sampling rate in Hz.
SampleRate = Annotated[Number, Ge(0.1), Le(1000)]


@config_dataclass
class MonitorConfig:
    """Settings of an :class:`EnergyMonitor`.

    Attributes:
        meters: Meter names to use (each must work), or ``None`` to auto-detect.
        sample_hz: Background sampling rate in Hz, 0.1 to 1000 (power timeline, peaks,
            integration).
        timeline: Keep the power timeline in each Measurement.
        carbon: How to convert energy into CO2e.
        meter_settings: Backend roots/handles, CPU TDP override, measured process.
        history_size: How many finished Measurements ``monitor.history`` keeps.
        children_refresh_s: How often, in seconds, the sampler rescans the process tree for new
            children.
        read_timeout_s: The longest one meter read may take, in seconds; a meter that takes
            longer is ``unavailable`` for the rest of the windows open then.
    """

    meters: MeterNames = None
    sample_hz: SampleRate = 10.0
    timeline: Bool = True
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    meter_settings: MeterSettings = field(default_factory=MeterSettings)
    history_size: PositiveInt = 10_000
    children_refresh_s: PositiveNumber = 1.0
    read_timeout_s: PositiveNumber = 5.0


@dataclass
class _Open:
    name: str
    start_mono: float
    start_unix: float
    start_energy: dict[str, float]
    timeline_from: int
    failed: dict[str, str] = field(default_factory=dict)  # component -> edge read error
    suspect: dict[str, list[Any]] = field(default_factory=dict)  # component -> [reason, count]
    shared: dict[str, set[int]] = field(default_factory=dict)  # component -> other PIDs seen
    peak_power_w: float | None = None
    peak_component_w: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    peak_gpu_memory: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    profiler: Any = None


class Window:
    """Handle yielded by :meth:`EnergyMonitor.window`; ``measurement`` is set on exit."""

    def __init__(self, name: str):
        self.name = name
        self.measurement: Measurement | None = None

    def __repr__(self) -> str:
        return f"Window({self.name!r}, measurement={self.measurement!r})"


def _auto_sync() -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_initialized():
            for device in range(torch.cuda.device_count()):
                torch.cuda.synchronize(device)
    except Exception:  # measuring must not break a run whose CUDA context is gone
        return


class EnergyMonitor:
    """Measure energy, power, duration and memory of named windows.

    Args:
        config: Monitor settings (default: auto-detected meters, 10 Hz).
        meters: Use these meters instead of building them from ``config`` (tests, custom meters).
        sync: ``"auto"`` synchronizes CUDA at window edges when this process uses it; a callable
            is called instead; ``None`` disables synchronization.
    """

    def __init__(
        self,
        config: MonitorConfig | None = None,
        *,
        meters: MeterSet | Sequence[Meter] | None = None,
        sync: Literal["auto"] | Callable[[], None] | None = "auto",
    ):
        self.config = config or MonitorConfig()
        if meters is None:
            meters = create_meters(self.config.meters, self.config.meter_settings)
        elif not isinstance(meters, MeterSet):
            meters = MeterSet(list(meters))
        self.meter_set = meters
        self.tree = meters.tree or ProcessTree(self.config.meter_settings.pid)
        self._sync = _auto_sync if sync == "auto" else sync
        self._readers = MeterReaders(self.meter_set.meters, self.config.read_timeout_s)
        self._interval_s = min(1.0 / self.config.sample_hz, self._readers.max_interval_s)
        self._top: list[str] = []
        self._nested: dict[str, str] = {}
        self._provenance: dict[str, Provenance] = {}
        for meter in self.meter_set.meters:
            for comp in meter.components():
                self._top.append(comp)
                self._provenance[comp] = mark_shared(comp, meter.provenance(comp))
                if note := self.meter_set.notes.get(comp.split(":", 1)[0]):
                    prov = self._provenance[comp]
                    self._provenance[comp] = replace(prov, detail=f"{prov.detail}. {note}")
            for comp, parent in meter.nested_components().items():
                self._nested[comp] = parent
                self._provenance[comp] = mark_shared(comp, meter.provenance(comp))
        self._counter_comps: set[str] = set()
        self._cum: dict[str, float] = {}
        self._last_t: float | None = None
        self._last_power: dict[str, float] = {}
        self._sample_base_t: float | None = None
        self._sample_base: dict[str, float] = {}
        self._timeline: list[tuple[float, dict[str, float]]] = []
        self._sampled: tuple[float, dict[str, float]] | None = None  # latest sample's power
        self._timeline_offset = 0  # index of _timeline[0] since the monitor started
        self._open: dict[str, _Open] = {}
        self._cuda = CudaPeakTracker()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_refresh = 0.0
        self.history: deque[Measurement] = deque(maxlen=self.config.history_size)
        #: The last error of each meter whose read failed (the read is skipped: counters catch
        #: up at the next read, power is integrated across the gap) or timed out.
        self.read_errors: dict[str, str] = self._readers.errors
        self._failed: dict[str, str] = {}
        self._shared_now: dict[str, tuple[int, ...]] = {}  # the last read's other processes
        self._closed = False

    # --- public API -------------------------------------------------------------------------
    @property
    def components(self) -> list[str]:
        """Top-level components measured (their energies make up the total)."""
        return list(self._top)

    @property
    def sample_interval_s(self) -> float:
        """Seconds between background samples: ``1 / sample_hz``, or shorter where a meter's
        counter could otherwise wrap twice between reads (its ``max_read_interval_s``)."""
        return self._interval_s

    def begin_window(self, name: str, *, profile: bool | WindowProfiler = False) -> None:
        """Open window ``name``. A name that is already open is a ``ValueError``.

        Args:
            name: The window's key, e.g. ``"train/epoch3"``.
            profile: Also run torch.profiler over the window (FLOPs, top operators); pass a
                :class:`~wattwise.energy.profiler.WindowProfiler` to get its operators with
                their energy afterwards. Profiled windows nest and overlap, in every monitor
                of the process (they share torch.profiler's one session).
        """
        if self._closed:
            raise WattwiseError("this EnergyMonitor is closed")
        with self._lock:
            if name in self._open:
                raise ValueError(f"window {name!r} is already open")
        profiler = None
        if profile is not False:
            from wattwise.energy.profiler import WindowProfiler

            profiler = profile if isinstance(profile, WindowProfiler) else WindowProfiler()
            # started before the window's first read and stopped after its last one, so that
            # the profiler's own start and stop (up to a second) are outside the window
            profiler.start()
        if self._sync is not None:
            self._sync()
        with self._lock:
            now = self._tick(sampled=False)
            if not self._open:
                self._sample_base_t = now
                self._sample_base = dict(self._cum)
            self._cuda.begin(name)
            self._open[name] = _Open(
                name=name,
                start_mono=now,
                start_unix=time.time(),
                start_energy=dict(self._cum),
                failed={c: f"at the window's start: {e}" for c, e in self._failed.items()},
                timeline_from=self._timeline_offset + len(self._timeline),
                shared={comp: set(pids) for comp, pids in self._shared_now.items()},
                peak_rss_bytes=self.tree.rss_bytes(),
                profiler=profiler,
            )
        self._ensure_sampler()
        self._wake.set()

    def end_window(self, name: str) -> Measurement:
        """Close window ``name`` and return what it cost. An unknown name is a ``ValueError``."""
        with self._lock:
            if name not in self._open:
                raise ValueError(f"window {name!r} is not open")
            profiler = self._open[name].profiler
        if self._sync is not None:
            self._sync()
        with self._lock:
            now = self._tick(sampled=False)
            state = self._open.pop(name)
            for comp, error in self._failed.items():
                state.failed.setdefault(comp, f"at the window's end: {error}")
            cuda_alloc, cuda_reserved = self._cuda.end(name)
            state.peak_rss_bytes = max(state.peak_rss_bytes, self.tree.rss_bytes())
            measurement = self._measurement(state, now, cuda_alloc, cuda_reserved, None)
            self._trim_timeline()
            if not self._open:  # meters that timed out are tried again in the next window
                self._readers.reset()
        if profiler is not None:
            measurement = replace(measurement, profile=profiler.stop())
        self.history.append(measurement)
        return measurement

    @contextmanager
    def window(self, name: str, *, profile: bool | WindowProfiler = False) -> Iterator[Window]:
        """Context manager around begin/end; the Measurement is kept even if the body raises."""
        handle = Window(name)
        self.begin_window(name, profile=profile)
        try:
            yield handle
        finally:
            handle.measurement = self.end_window(name)

    def progress(self, name: str) -> WindowProgress | None:
        """Window ``name`` so far, or ``None`` when it is not open (a live view: Prometheus).

        Reads no meter and changes nothing: the numbers are those of the last read, at most
        :attr:`sample_interval_s` old while the sampler runs (energy and duration both up to
        that read).
        """
        with self._lock:
            state = self._open.get(name)
            if state is None or self._last_t is None:
                return None
            measurement = self._measurement(state, self._last_t, None, None, None, timeline=False)
            sampled = self._sampled
            power = dict(sampled[1]) if sampled and sampled[0] >= state.start_mono else {}
        return WindowProgress(measurement, power)

    def so_far(self, name: str) -> Measurement:
        """Window ``name`` from its start to now, read fresh (the meters are read, as at its
        end), and left open: what a training's checkpoint saves of its running ``fit`` window.
        Without the CUDA memory peaks (read only when the window ends). An unknown name is a
        ``ValueError``."""
        with self._lock:
            if name not in self._open:
                raise ValueError(f"window {name!r} is not open")
        if self._sync is not None:
            self._sync()
        with self._lock:
            now = self._tick(sampled=False)
            state = self._open[name]
            state.peak_rss_bytes = max(state.peak_rss_bytes, self.tree.rss_bytes())
            return self._measurement(state, now, None, None, None)

    def measure(self, name: str | None = None, *, profile: bool = False) -> Callable[[F], F]:
        """Decorator: each call of the function is a window (see ``history`` / ``last``)."""

        def decorate(func: F) -> F:
            key = name or func.__qualname__

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.window(key, profile=profile):
                    return func(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate

    def last(self, name: str) -> Measurement:
        """The most recent finished Measurement of window ``name``."""
        for measurement in reversed(self.history):
            if measurement.name == name:
                return measurement
        raise KeyError(name)

    def close(self) -> None:
        """Stop the sampler and release the meters (open windows are discarded)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.read_timeout_s + 1)
        self._readers.close()
        self.meter_set.close()

    def __enter__(self) -> EnergyMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------
    def _ensure_sampler(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run_sampler, name="wattwise-sampler", daemon=True
            )
            self._thread.start()

    def _run_sampler(self) -> None:
        next_t = time.perf_counter() + self._interval_s
        while not self._stop.is_set():
            if not self._open:
                self._wake.clear()
                if not self._open:  # re-check: a window may have opened meanwhile
                    self._wake.wait()
                next_t = time.perf_counter() + self._interval_s
                continue
            delay = next_t - time.perf_counter()
            if delay > 0 and self._stop.wait(delay):
                break
            next_t = max(next_t + self._interval_s, time.perf_counter())
            try:
                with self._lock:
                    if self._open:
                        self._tick(sampled=True)
                now = time.perf_counter()
                if now - self._last_refresh >= self.config.children_refresh_s:
                    self._last_refresh = now
                    self.tree.refresh_children()
            except Exception:  # a failing sensor read must not kill the sampler
                continue

    def _tick(self, *, sampled: bool) -> float:
        """Read all meters; update cumulative energies (and, for samples, peaks). Holds lock."""
        readings, self._failed, timed_out = self._readers.read_all()
        for comp, why in timed_out.items():  # unavailable for the rest of every open window
            for state in self._open.values():
                state.failed.setdefault(comp, f"during the window: {why}")
        now = time.perf_counter()
        dt = None if self._last_t is None else now - self._last_t
        memory: dict[str, int] = {}
        self._shared_now = {c: pids for reading in readings for c, pids in reading.shared.items()}
        for reading in readings:
            for comp, energy_j in reading.energy_j.items():
                self._counter_comps.add(comp)
                self._cum[comp] = energy_j
            for comp, power_w in reading.power_w.items():
                if comp in self._last_power and dt is not None:
                    self._cum[comp] = (
                        self._cum.get(comp, 0.0) + 0.5 * (self._last_power[comp] + power_w) * dt
                    )
                else:
                    self._cum.setdefault(comp, 0.0)
                self._last_power[comp] = power_w
            memory.update(reading.memory_bytes)
            for comp, pids in reading.shared.items():
                for state in self._open.values():
                    state.shared.setdefault(comp, set()).update(pids)
            for comp, why in reading.suspect.items():
                for state in self._open.values():
                    state.suspect.setdefault(comp, [why, 0])[1] += 1
        self._last_t = now
        if sampled:
            self._record_sample(now, memory)
        elif memory:
            for state in self._open.values():
                for comp, used in memory.items():
                    state.peak_gpu_memory[comp] = max(state.peak_gpu_memory.get(comp, 0), used)
        return now

    def _record_sample(self, now: float, memory: dict[str, int]) -> None:
        rss = self.tree.rss_bytes()
        power: dict[str, float] = {}
        base_t = self._sample_base_t
        # Counter power over the interval since the last sample; skip intervals too short for
        # the counters' resolution (CPU time ticks at 10 ms) and try again at the next sample.
        if base_t is not None and now - base_t >= 0.5 * self._interval_s:
            for comp in self._top:
                if comp in self._counter_comps and comp in self._sample_base:
                    power[comp] = (self._cum[comp] - self._sample_base[comp]) / (now - base_t)
            self._sample_base_t = now
            self._sample_base = dict(self._cum)
        elif base_t is None:
            self._sample_base_t = now
            self._sample_base = dict(self._cum)
        for comp in self._top:
            if comp in self._last_power and comp not in self._counter_comps:
                power[comp] = self._last_power[comp]
        counters_ready = all(c in power for c in self._top)
        total = sum(power.values())
        for state in self._open.values():
            state.samples += 1
            state.peak_rss_bytes = max(state.peak_rss_bytes, rss)
            for comp, used in memory.items():
                state.peak_gpu_memory[comp] = max(state.peak_gpu_memory.get(comp, 0), used)
            if counters_ready:
                state.peak_power_w = max(state.peak_power_w or 0.0, total)
                for comp, p in power.items():
                    state.peak_component_w[comp] = max(state.peak_component_w.get(comp, 0.0), p)
        if counters_ready:
            self._sampled = (now, power)
        if self.config.timeline and counters_ready:
            self._timeline.append((now, power))

    def _trim_timeline(self) -> None:
        if not self._open:
            self._timeline_offset += len(self._timeline)
            self._timeline.clear()
            return
        keep_from = min(s.timeline_from for s in self._open.values()) - self._timeline_offset
        if keep_from > 0:
            del self._timeline[:keep_from]
            self._timeline_offset += keep_from

    def _measurement(
        self,
        state: _Open,
        now: float,
        cuda_alloc: int | None,
        cuda_reserved: int | None,
        profile: Any,
        *,
        timeline: bool = True,
    ) -> Measurement:
        duration = now - state.start_mono
        components: list[ComponentEnergy] = []
        for comp in [*self._top, *self._nested]:
            if comp in state.failed:  # an edge value would be stale: do not guess
                energy = None
                provenance = Provenance.unavailable(f"{comp}: {state.failed[comp]}")
            elif comp not in self._cum or comp not in state.start_energy:
                energy = None
                provenance = Provenance.unavailable(f"{comp}: no reading in this window")
            else:
                energy = max(0.0, self._cum[comp] - state.start_energy[comp])
                provenance = self._provenance[comp]
                if comp in state.suspect:
                    why, count = state.suspect[comp]
                    more = f" (and {count - 1} more suspect reads)" if count > 1 else ""
                    provenance = provenance.with_suspect(f"{why}{more}")
                if comp in state.shared:
                    provenance = shared_by_processes(provenance, state.shared[comp])
            components.append(
                ComponentEnergy(
                    component=comp,
                    energy_j=energy,
                    provenance=provenance,
                    avg_power_w=(
                        energy / duration if energy is not None and duration > 0 else None
                    ),
                    peak_power_w=state.peak_component_w.get(comp),
                    nested_in=self._nested.get(comp),
                )
            )
        for kind, prov in self.meter_set.unavailable_provenance().items():
            components.append(ComponentEnergy(kind, None, prov))
        samples = None
        if timeline and self.config.timeline:
            start = state.timeline_from - self._timeline_offset
            samples = tuple(
                PowerSample(t - state.start_mono, power) for t, power in self._timeline[start:]
            )
        summed = sum(c.energy_j for c in components if c.nested_in is None and c.energy_j)
        return Measurement(
            name=state.name,
            start_unix_s=state.start_unix,
            duration_s=duration,
            components=tuple(components),
            peak_power_w=state.peak_power_w,
            peak_rss_bytes=state.peak_rss_bytes or None,
            peak_gpu_memory_bytes=dict(state.peak_gpu_memory),
            peak_cuda_allocated_bytes=cuda_alloc,
            peak_cuda_reserved_bytes=cuda_reserved,
            timeline=samples,
            carbon=self.config.carbon.estimate(summed),
            profile=profile,
            samples=state.samples,
        )
