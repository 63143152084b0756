"""Core measuring types: provenance, meter protocol, readings and the Measurement result.

Units live in names (``energy_j``, ``power_w``, ``duration_s``, ``peak_rss_bytes``); every backend
converts to them once, at its boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

ProvenanceKind = Literal["measured", "estimated", "unavailable"]

#: What a number covers: ``device`` (the whole CPU package, DRAM or GPU, every process on it:
#: RAPL, NVML, nvidia-smi), ``process`` (the measured process tree only: the CPU and DRAM
#: estimates), or ``""`` (unknown, or nothing measured).
Scope = Literal["device", "process", ""]

#: Appended to the detail of device-wide meters (one wording everywhere).
DEVICE_WIDE = "device-wide: includes every process on this {device}, not only the measured ones"

#: Component kinds, in the order they are reported. A component name is ``kind`` or
#: ``kind:index`` (``cpu:0`` is socket 0's package, ``gpu:1`` the second visible GPU).
COMPONENT_KINDS = ("cpu", "dram", "gpu")


@dataclass(frozen=True)
class Provenance:
    """Where a number came from.

    Attributes:
        kind: ``measured`` (a hardware counter or power sensor), ``estimated`` (a model such as
            CPU time x watts per CPU) or ``unavailable``.
        source: The backend (``rapl``, ``nvml``, ``nvidia-smi``, ``tdp``, ``dram-rss``); empty
            when unavailable.
        detail: For estimates, the model and its inputs (which TDP, where it came from, the
            formula); for unavailable components, the reason. The ``suspect`` and ``shared``
            notes are appended here too, so that every reader of the detail shows them.
        scope: ``device`` or ``process`` (see :data:`Scope`).
        suspect: Why the number may be wrong although it was measured (a RAPL counter that
            restarted or may have wrapped unseen); empty when nothing looked wrong.
        shared: For device-wide numbers: that other trials ran on the device at the same time
            (their energy is in this number too); empty when the process was alone.
    """

    kind: ProvenanceKind
    source: str = ""
    detail: str = ""
    scope: Scope = ""
    suspect: str = ""
    shared: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("measured", "estimated", "unavailable"):
            raise ValueError(f"unknown provenance kind {self.kind!r}")
        if self.scope not in ("device", "process", ""):
            raise ValueError(f"unknown provenance scope {self.scope!r}")

    @classmethod
    def measured(cls, source: str, detail: str = "", *, scope: Scope = "") -> Provenance:
        return cls("measured", source, detail, scope)

    @classmethod
    def estimated(cls, source: str, detail: str, *, scope: Scope = "") -> Provenance:
        return cls("estimated", source, detail, scope)

    @classmethod
    def unavailable(cls, reason: str) -> Provenance:
        return cls("unavailable", "", reason)

    @property
    def label(self) -> str:
        """Short form: ``measured:rapl``, ``estimated:tdp`` or ``unavailable``."""
        return self.kind if self.kind == "unavailable" else f"{self.kind}:{self.source}"

    def __str__(self) -> str:
        return self.label

    def with_suspect(self, reason: str) -> Provenance:
        """The same provenance, marked suspect for ``reason`` (also appended to the detail)."""
        return replace(self, suspect=reason, detail=_append(self.detail, f"SUSPECT: {reason}"))

    def with_shared(self, note: str) -> Provenance:
        """The same provenance, marked shared with ``note`` (also appended to the detail)."""
        return replace(self, shared=note, detail=_append(self.detail, f"shared: {note}"))

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "source": self.source,
            "detail": self.detail,
            "label": self.label,
            "scope": self.scope,
            "suspect": self.suspect,
            "shared": self.shared,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Read :meth:`to_dict` output (records written before scope/suspect/shared too)."""
        return cls(
            data["kind"],
            data.get("source", ""),
            data.get("detail", ""),
            data.get("scope", ""),
            data.get("suspect", ""),
            data.get("shared", ""),
        )


def _append(detail: str, note: str) -> str:
    return f"{detail}; {note}" if detail else note


@dataclass(frozen=True)
class Availability:
    """Whether a meter can measure here, and why (not)."""

    available: bool
    reason: str = ""


@dataclass(frozen=True)
class Reading:
    """One synchronous read of a meter.

    Attributes:
        energy_j: Cumulative energy per component since an arbitrary origin (counters; already
            unwrapped by the meter). Components that have no counter are absent here.
        power_w: Instantaneous power per component (sensors, or models). The monitor integrates
            these over time.
        memory_bytes: Device memory in use per component (``gpu:0``), where the meter knows it.
        suspect: Components whose change since the previous read is implausible (a counter
            restart, a possible missed wrap), with the reason. The monitor marks every window
            open at this read as suspect for them.
        shared: Device-wide components that processes outside the measured process tree were
            using at this read (NVML's process list), with their PIDs. The monitor marks every
            window open at this read as shared for them, with the PIDs of the whole window.
    """

    energy_j: Mapping[str, float] = field(default_factory=dict)
    power_w: Mapping[str, float] = field(default_factory=dict)
    memory_bytes: Mapping[str, int] = field(default_factory=dict)
    suspect: Mapping[str, str] = field(default_factory=dict)
    shared: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@runtime_checkable
class Meter(Protocol):
    """A source of energy or power readings for one or more components.

    Implementations take their hardware root or library handle as a constructor parameter so that
    tests can substitute a fake one. ``availability()`` is cached and never raises.

    A meter whose counters wrap may also have a ``max_read_interval_s`` attribute: the longest
    time between reads at which a wrap is still seen (the monitor's sampler reads at least that
    often). ``read()`` may block: the monitor runs it in a thread of its own, with a timeout.
    """

    name: str

    def availability(self) -> Availability: ...

    def components(self) -> list[str]:
        """Top-level components whose energy this meter reports (summed into totals)."""
        ...

    def nested_components(self) -> dict[str, str]:
        """Informational sub-components (name -> parent): never added to totals."""
        ...

    def provenance(self, component: str) -> Provenance: ...

    def read(self) -> Reading: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ComponentEnergy:
    """Energy of one component over a window.

    Attributes:
        component: ``cpu``, ``cpu:0``, ``dram:0``, ``gpu:0``...
        energy_j: Joules over the window, or ``None`` when unavailable.
        provenance: Where ``energy_j`` came from.
        avg_power_w: ``energy_j / duration_s``.
        peak_power_w: Highest sampled power in the window (``None`` without samples).
        nested_in: For informational sub-domains (RAPL core/uncore): the parent component whose
            energy already includes this one. Nested components are never added to totals.
    """

    component: str
    energy_j: float | None
    provenance: Provenance
    avg_power_w: float | None = None
    peak_power_w: float | None = None
    nested_in: str | None = None

    @property
    def kind(self) -> str:
        return self.component.split(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "energy_j": self.energy_j,
            "provenance": self.provenance.to_dict(),
            "avg_power_w": self.avg_power_w,
            "peak_power_w": self.peak_power_w,
            "nested_in": self.nested_in,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComponentEnergy:
        return cls(
            component=data["component"],
            energy_j=data.get("energy_j"),
            provenance=Provenance.from_dict(data["provenance"]),
            avg_power_w=data.get("avg_power_w"),
            peak_power_w=data.get("peak_power_w"),
            nested_in=data.get("nested_in"),
        )


@dataclass(frozen=True)
class PowerSample:
    """One point of the power timeline: seconds since the window began, watts per component."""

    t_s: float
    power_w: Mapping[str, float]

    @property
    def total_w(self) -> float:
        return float(sum(self.power_w.values()))


@dataclass(frozen=True)
class CarbonEstimate:
    """CO2-equivalent emissions of a window's energy.

    ``co2e_g = energy_j / 3.6e6 * intensity_g_per_kwh * pue``.
    """

    co2e_g: float
    intensity_g_per_kwh: float
    pue: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "co2e_g": self.co2e_g,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "pue": self.pue,
            "source": self.source,
        }


@dataclass(frozen=True)
class OpStat:
    """One operator in a profiled window."""

    name: str
    calls: int
    self_cpu_time_s: float
    cpu_time_total_s: float
    device_time_total_s: float
    flops: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ProfileSummary:
    """What torch.profiler saw in a window.

    ``flops`` are floating-point operations as PyTorch counts them (2 per multiply-accumulate for
    convolutions and matrix products), *not* MACs.
    """

    flops: int
    top_ops: tuple[OpStat, ...]
    peak_profiled_memory_bytes: int | None = None

    @property
    def macs(self) -> int:
        """Multiply-accumulates implied by ``flops`` (``flops // 2``)."""
        return self.flops // 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "macs_from_flops": self.macs,
            "top_ops": [op.to_dict() for op in self.top_ops],
            "peak_profiled_memory_bytes": self.peak_profiled_memory_bytes,
        }


@dataclass(frozen=True)
class Measurement:
    """What one window cost.

    Attributes:
        name: The window's name.
        start_unix_s: Wall-clock start (seconds since the epoch).
        duration_s: Window length, from a monotonic clock.
        components: Energy per component with provenance, including unavailable ones.
        peak_power_w: Highest total sampled power in the window, or ``None`` without samples.
        peak_rss_bytes: Peak resident memory of the measured process tree (sampled).
        peak_gpu_memory_bytes: Peak device memory in use per GPU, as the driver reports it.
        peak_cuda_allocated_bytes: Peak ``torch.cuda.max_memory_allocated`` in the window, when
            this process used CUDA; else ``None``.
        peak_cuda_reserved_bytes: The same for memory reserved by PyTorch's caching allocator.
        timeline: Sampled power over the window, when recorded.
        carbon: CO2e of ``total_energy_j``, when a carbon intensity is known.
        profile: Operator-level summary, when the window was profiled.
        samples: How many background samples fell in the window.
    """

    name: str
    start_unix_s: float
    duration_s: float
    components: tuple[ComponentEnergy, ...]
    peak_power_w: float | None = None
    peak_rss_bytes: int | None = None
    peak_gpu_memory_bytes: Mapping[str, int] = field(default_factory=dict)
    peak_cuda_allocated_bytes: int | None = None
    peak_cuda_reserved_bytes: int | None = None
    timeline: tuple[PowerSample, ...] | None = None
    carbon: CarbonEstimate | None = None
    profile: ProfileSummary | None = None
    samples: int = 0

    # --- derived values -------------------------------------------------------------------
    @property
    def summed_components(self) -> tuple[ComponentEnergy, ...]:
        """Top-level components with a known energy: the ones that make up the total."""
        return tuple(c for c in self.components if c.nested_in is None and c.energy_j is not None)

    @property
    def total_energy_j(self) -> float:
        """Sum over top-level components (nested sub-domains are never added)."""
        return float(sum(c.energy_j for c in self.summed_components))  # type: ignore[misc]

    @property
    def total_provenance(self) -> str:
        """``measured``, ``estimated``, ``mixed`` (some of each) or ``unavailable``."""
        kinds = {c.provenance.kind for c in self.summed_components}
        if not kinds:
            return "unavailable"
        if len(kinds) == 1:
            return kinds.pop()
        return "mixed"

    @property
    def suspect(self) -> tuple[str, ...]:
        """``"component: reason"`` for every component whose energy is suspect."""
        return tuple(
            f"{c.component}: {c.provenance.suspect}"
            for c in self.components
            if c.provenance.suspect
        )

    @property
    def avg_power_w(self) -> float | None:
        if self.duration_s <= 0:
            return None
        return self.total_energy_j / self.duration_s

    def energy_j_by_kind(self) -> dict[str, float | None]:
        """Energy per kind (``cpu``, ``dram``, ``gpu``): the sum of its top-level components,
        or ``None`` when none of them is available."""
        out: dict[str, float | None] = {}
        for kind in COMPONENT_KINDS:
            values = [c.energy_j for c in self.summed_components if c.kind == kind]
            out[kind] = float(sum(values)) if values else None  # type: ignore[arg-type]
        return out

    def component(self, name: str) -> ComponentEnergy:
        for comp in self.components:
            if comp.component == name:
                return comp
        raise KeyError(name)

    # --- serialization --------------------------------------------------------------------
    def to_dict(self, *, timeline: bool = True) -> dict[str, Any]:
        """JSON-ready dict. Derived totals are included for readers; ``from_dict`` ignores them."""
        return {
            "name": self.name,
            "start_unix_s": self.start_unix_s,
            "duration_s": self.duration_s,
            "total_energy_j": self.total_energy_j,
            "total_provenance": self.total_provenance,
            "suspect": list(self.suspect),
            "avg_power_w": self.avg_power_w,
            "peak_power_w": self.peak_power_w,
            "energy_j_by_kind": self.energy_j_by_kind(),
            "components": [c.to_dict() for c in self.components],
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_gpu_memory_bytes": dict(self.peak_gpu_memory_bytes),
            "peak_cuda_allocated_bytes": self.peak_cuda_allocated_bytes,
            "peak_cuda_reserved_bytes": self.peak_cuda_reserved_bytes,
            "carbon": self.carbon.to_dict() if self.carbon else None,
            "profile": self.profile.to_dict() if self.profile else None,
            "samples": self.samples,
            "timeline": (
                [{"t_s": s.t_s, "power_w": dict(s.power_w)} for s in self.timeline]
                if timeline and self.timeline is not None
                else None
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        carbon = data.get("carbon")
        profile = data.get("profile")
        timeline = data.get("timeline")
        return cls(
            name=data["name"],
            start_unix_s=data["start_unix_s"],
            duration_s=data["duration_s"],
            components=tuple(ComponentEnergy.from_dict(c) for c in data["components"]),
            peak_power_w=data.get("peak_power_w"),
            peak_rss_bytes=data.get("peak_rss_bytes"),
            peak_gpu_memory_bytes=dict(data.get("peak_gpu_memory_bytes") or {}),
            peak_cuda_allocated_bytes=data.get("peak_cuda_allocated_bytes"),
            peak_cuda_reserved_bytes=data.get("peak_cuda_reserved_bytes"),
            timeline=(
                tuple(PowerSample(s["t_s"], s["power_w"]) for s in timeline)
                if timeline is not None
                else None
            ),
            carbon=(
                CarbonEstimate(
                    carbon["co2e_g"], carbon["intensity_g_per_kwh"], carbon["pue"], carbon["source"]
                )
                if carbon
                else None
            ),
            profile=(
                ProfileSummary(
                    flops=profile["flops"],
                    top_ops=tuple(OpStat(**op) for op in profile["top_ops"]),
                    peak_profiled_memory_bytes=profile.get("peak_profiled_memory_bytes"),
                )
                if profile
                else None
            ),
            samples=data.get("samples", 0),
        )


@dataclass(frozen=True)
class WindowProgress:
    """An open window so far, as :meth:`~wattwise.energy.monitor.EnergyMonitor.progress`
    reports it.

    Attributes:
        measurement: What ``end_window`` would return at the monitor's last meter read,
            without the timeline, the profile and the CUDA allocator peaks (those are folded
            in only at window edges).
        power_w: Watts per top-level component at the latest background sample in this window
            (counters: their increase over the sampling interval); empty before the first.
    """

    measurement: Measurement
    power_w: Mapping[str, float]
