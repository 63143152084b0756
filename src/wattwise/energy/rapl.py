"""RAPL energy counters through Linux powercap sysfs (Intel, and AMD with the same driver).

Layout read (``/sys/class/powercap`` by default, or ``$WATTWISE_POWERCAP_ROOT``)::

    intel-rapl:0/        name=package-0   energy_uj  max_energy_range_uj
    intel-rapl:0:0/      name=core        (nested in package-0)
    intel-rapl:0:1/      name=uncore      (nested in package-0)
    intel-rapl:0:2/      name=dram        (a sibling of the package's cores, *not* part of it)
    intel-rapl:1/        name=package-1   (second socket)
    intel-rapl:2/        name=psys        (platform: contains packages and more; informational)

Reported components: ``cpu:N`` (package N), ``dram:N`` (DRAM of socket N). ``core``, ``uncore``
and ``psys`` are informational nested components and are never added to totals, since their energy
is already inside a package (never sum nested domains).

Counters are in microjoules and wrap at ``max_energy_range_uj``; every read unwraps against the
previous read, so reads must come more often than one wrap period.

Every change between two reads is checked against a physical bound on the zone's power: four
times the largest ``constraint_*_max_power_uw`` of the zone (the driver reports the rated TDP and
the part's maximum power there; turbo stays within 4x TDP), else :data:`DEFAULT_MAX_POWER_W`.
A change that breaks the bound, that is more than half the counter's range, or that comes after
a gap long enough for the counter to wrap more than once, is returned in ``Reading.suspect``
with the reason (the monitor marks the windows open then). A counter that went *down* by less
than a wrap could explain (driver reload, suspend/resume) is taken as a restart from 0, not as
a wrap. :attr:`RaplMeter.max_read_interval_s` (half the shortest wrap period at the bound) tells
the monitor's sampler how often it must read so that a double wrap cannot happen unseen.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wattwise.energy.base import DEVICE_WIDE, Availability, Provenance, Reading
from wattwise.errors import ConfigError, MeterError, MeterPermissionError

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
ENV_POWERCAP_ROOT = "WATTWISE_POWERCAP_ROOT"
_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")

#: Power bound of a zone without a usable ``constraint_*_max_power_uw``: no single current CPU
#: package or DRAM domain draws 1 kW.
DEFAULT_MAX_POWER_W = 1000.0
#: The bound is this many times the zone's largest reported constraint power.
CONSTRAINT_FACTOR = 4.0
#: RAPL updates its counters about every millisecond; this much slack keeps two reads taken
#: microseconds apart from looking like unbounded power.
_UPDATE_SLACK_S = 0.01

PERMISSION_FIX = (
    "since Linux 5.10 the RAPL counters are readable by root only; run as root, or grant read "
    "access: `sudo chmod -R a+r /sys/class/powercap/intel-rapl*` (until reboot) or a udev rule "
    '`SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod -R a+r /sys%p"` '
    "(see docs/measuring.md)"
)


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone."""

    path: Path
    domain: str  # package, core, uncore, dram, psys
    socket: int
    component: str  # cpu:0, dram:0, cpu:0/core, psys:0
    parent: str | None  # for nested zones: the component that already contains this one
    max_energy_range_uj: int
    max_power_w: float = DEFAULT_MAX_POWER_W  # plausibility bound on the zone's power
    max_power_source: str = "default"

    @property
    def bound(self) -> str:
        """The power bound and where it came from, in words."""
        return f"{self.max_power_w:g} W bound for this domain ({self.max_power_source})"


def resolve_powercap_root(root: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The powercap root to read, and whether the user chose it (argument or environment)."""
    if root is not None:
        return Path(root), True
    env = os.environ.get(ENV_POWERCAP_ROOT)
    if env:
        return Path(env), True
    return DEFAULT_POWERCAP_ROOT, False


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def power_bound(zone_dir: Path) -> tuple[float, str]:
    """The zone's plausibility bound in W and its source (see the module docstring)."""
    best_uw = 0
    for path in zone_dir.glob("constraint_*_max_power_uw"):
        try:
            best_uw = max(best_uw, _read_int(path))
        except (OSError, ValueError):
            continue
    if best_uw <= 0:
        return DEFAULT_MAX_POWER_W, "default; no constraint_*_max_power_uw"
    watts = best_uw / 1e6
    return CONSTRAINT_FACTOR * watts, f"{CONSTRAINT_FACTOR:g} x constraint max_power {watts:g} W"


def unwrap(last_uj: int, raw_uj: int, zone: RaplZone, dt_s: float) -> tuple[int, str]:
    """Microjoules between two reads ``dt_s`` apart, and why they are suspect (``""``: fine)."""
    range_uj = zone.max_energy_range_uj
    bound_w = zone.max_power_w
    allowed_uj = bound_w * (max(dt_s, 0.0) + _UPDATE_SLACK_S) * 1e6
    delta = raw_uj - last_uj
    if delta < 0:
        wrapped = delta + range_uj
        if wrapped > allowed_uj:  # down by less than a wrap could explain: a restart
            counted = raw_uj if raw_uj <= allowed_uj else 0
            return counted, (
                f"counter went back from {last_uj / 1e6:.6g} J to {raw_uj / 1e6:.6g} J; a wrap "
                f"would mean {wrapped / 1e6:.6g} J in {dt_s:.3g} s, above the {zone.bound}: "
                f"taken as a counter restart (driver reload, suspend/resume), "
                f"{counted / 1e6:.6g} J counted for that interval"
            )
        delta = wrapped
    elif delta > allowed_uj:
        return delta, (
            f"counter rose by {delta / 1e6:.6g} J in {dt_s:.3g} s "
            f"({delta / 1e6 / max(dt_s, _UPDATE_SLACK_S):.6g} W), above the {zone.bound}"
        )
    if bound_w * dt_s * 1e6 >= range_uj + delta:
        return delta, (
            f"reads {dt_s:.3g} s apart: at the {zone.bound} the counter (range "
            f"{range_uj / 1e6:.6g} J) may have wrapped more than once unseen"
        )
    if delta > range_uj / 2:
        return delta, (
            f"counter rose by {delta / 1e6:.6g} J in {dt_s:.3g} s, more than half its range "
            f"({range_uj / 1e6:.6g} J): a restart or a missed wrap cannot be ruled out"
        )
    return delta, ""


def discover_zones(root: Path) -> list[RaplZone]:
    """Find the RAPL zones below ``root`` (raises OSError subclasses for unreadable files)."""
    zones: list[RaplZone] = []
    if not root.is_dir():
        return zones
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    top_domains: dict[int, tuple[str, int]] = {}  # top index -> (domain, socket)
    for entry in entries:
        match = _ZONE_RE.match(entry.name)
        if not match or match.group(2) is not None:
            continue
        name = (entry / "name").read_text().strip()
        if name.startswith("package-"):
            socket = int(name.split("-", 1)[1])
            top_domains[int(match.group(1))] = ("package", socket)
        else:
            top_domains[int(match.group(1))] = (name, int(match.group(1)))
    for entry in entries:
        match = _ZONE_RE.match(entry.name)
        if not match:
            continue
        top_index = int(match.group(1))
        if top_index not in top_domains:
            continue
        top_domain, socket = top_domains[top_index]
        name = (entry / "name").read_text().strip()
        limits = (_read_int(entry / "max_energy_range_uj"), *power_bound(entry))
        if match.group(2) is None:  # a top-level zone
            if top_domain == "package":
                zones.append(RaplZone(entry, "package", socket, f"cpu:{socket}", None, *limits))
            elif top_domain == "dram":
                zones.append(RaplZone(entry, "dram", socket, f"dram:{socket}", None, *limits))
            else:  # psys and anything unknown: informational, contains other domains
                comp = f"{top_domain}:{socket}"
                zones.append(RaplZone(entry, top_domain, socket, comp, "platform", *limits))
        elif top_domain == "package":
            if name == "dram":  # DRAM is outside the package's energy: a top-level component
                zones.append(RaplZone(entry, "dram", socket, f"dram:{socket}", None, *limits))
            else:  # core, uncore: already inside the package
                comp = f"cpu:{socket}/{name}"
                zones.append(RaplZone(entry, name, socket, comp, f"cpu:{socket}", *limits))
    return zones


class RaplMeter:
    """Energy of CPU packages and DRAM from RAPL counters.

    Args:
        root: The powercap root. ``None`` uses ``$WATTWISE_POWERCAP_ROOT`` or
            ``/sys/class/powercap``.
        required: When true (the user asked for RAPL by name), problems raise at construction
            instead of making the meter unavailable.
        clock: Monotonic seconds, for the plausibility checks (tests pass a fake).
    """

    name = "rapl"

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        required: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.root, chosen = resolve_powercap_root(root)
        self._zones: list[RaplZone] = []
        self._last_raw: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}
        self._clock = clock
        self._last_t = clock()
        self._lock = threading.Lock()
        self._availability = self._probe(chosen)
        if required and not self._availability.available:
            reason = self._availability.reason
            if "permission" in reason.lower():
                raise MeterPermissionError(f"RAPL: {reason}")
            raise MeterError(f"RAPL was requested but cannot measure: {reason}")

    def _probe(self, chosen: bool) -> Availability:
        if not self.root.exists():
            if chosen:
                raise ConfigError(f"powercap root {self.root} does not exist")
            return Availability(False, f"no powercap interface at {self.root}")
        if not self.root.is_dir() or not os.access(self.root, os.R_OK | os.X_OK):
            if chosen:
                raise ConfigError(f"powercap root {self.root} is not a readable directory")
            return Availability(False, f"{self.root} is not readable")
        try:
            zones = discover_zones(self.root)
        except PermissionError as err:
            return Availability(
                False, f"permission denied reading {err.filename}: {PERMISSION_FIX}"
            )
        except (OSError, ValueError) as err:
            return Availability(False, f"unreadable RAPL zone under {self.root}: {err}")
        if not zones:
            return Availability(False, f"no intel-rapl zones under {self.root}")
        self._zones = zones
        self._last_t = self._clock()
        try:
            for zone in zones:
                raw = _read_int(zone.path / "energy_uj")
                self._last_raw[zone.component] = raw
                self._total_uj[zone.component] = 0
        except PermissionError as err:
            return Availability(
                False, f"permission denied reading {err.filename}: {PERMISSION_FIX}"
            )
        except (OSError, ValueError) as err:
            return Availability(False, f"cannot read RAPL counter: {err}")
        domains = ", ".join(f"{z.component}={z.domain}" for z in zones)
        return Availability(True, f"{len(zones)} zones under {self.root}: {domains}")

    def availability(self) -> Availability:
        return self._availability

    @property
    def zones(self) -> list[RaplZone]:
        return list(self._zones)

    def components(self) -> list[str]:
        return [z.component for z in self._zones if z.parent is None]

    def nested_components(self) -> dict[str, str]:
        return {z.component: z.parent for z in self._zones if z.parent is not None}

    @property
    def max_read_interval_s(self) -> float | None:
        """Half the shortest time in which a counter could wrap at its zone's power bound."""
        times = [z.max_energy_range_uj / 1e6 / z.max_power_w / 2 for z in self._zones]
        return min(times) if times else None

    def provenance(self, component: str) -> Provenance:
        zone = next(z for z in self._zones if z.component == component)
        device = "CPU package" if zone.domain != "dram" else "socket's DRAM"
        if zone.parent == "platform":
            device = "platform"
        detail = f"{zone.path.name} ({zone.domain}); {DEVICE_WIDE.format(device=device)}"
        return Provenance.measured("rapl", detail, scope="device")

    def read(self) -> Reading:
        """Read every counter and return the unwrapped cumulative energy since construction.

        Implausible changes (see the module docstring) are counted as described there and
        returned in ``Reading.suspect``.
        """
        energy: dict[str, float] = {}
        suspect: dict[str, str] = {}
        with self._lock:
            now = self._clock()
            dt_s = now - self._last_t
            for zone in self._zones:
                raw = _read_int(zone.path / "energy_uj")
                delta, why = unwrap(self._last_raw[zone.component], raw, zone, dt_s)
                if why:
                    suspect[zone.component] = f"{zone.path.name}: {why}"
                self._last_raw[zone.component] = raw
                self._total_uj[zone.component] += delta
                energy[zone.component] = self._total_uj[zone.component] / 1e6
            self._last_t = now
        return Reading(energy_j=energy, suspect=suspect)

    def close(self) -> None:
        return None
