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
previous read, so reads must come more often than one wrap period (minutes at full power; the
monitor's sampler reads at 10 Hz).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from wattwise.energy.base import Availability, Provenance, Reading
from wattwise.errors import ConfigError, MeterError, MeterPermissionError

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
ENV_POWERCAP_ROOT = "WATTWISE_POWERCAP_ROOT"
_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")

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
        max_range = _read_int(entry / "max_energy_range_uj")
        if match.group(2) is None:  # a top-level zone
            if top_domain == "package":
                zones.append(RaplZone(entry, "package", socket, f"cpu:{socket}", None, max_range))
            elif top_domain == "dram":
                zones.append(RaplZone(entry, "dram", socket, f"dram:{socket}", None, max_range))
            else:  # psys and anything unknown: informational, contains other domains
                comp = f"{top_domain}:{socket}"
                zones.append(RaplZone(entry, top_domain, socket, comp, "platform", max_range))
        elif top_domain == "package":
            if name == "dram":  # DRAM is outside the package's energy: a top-level component
                zones.append(RaplZone(entry, "dram", socket, f"dram:{socket}", None, max_range))
            else:  # core, uncore: already inside the package
                comp = f"cpu:{socket}/{name}"
                zones.append(RaplZone(entry, name, socket, comp, f"cpu:{socket}", max_range))
    return zones


class RaplMeter:
    """Energy of CPU packages and DRAM from RAPL counters.

    Args:
        root: The powercap root. ``None`` uses ``$WATTWISE_POWERCAP_ROOT`` or
            ``/sys/class/powercap``.
        required: When true (the user asked for RAPL by name), problems raise at construction
            instead of making the meter unavailable.
    """

    name = "rapl"

    def __init__(self, root: str | os.PathLike[str] | None = None, *, required: bool = False):
        self.root, chosen = resolve_powercap_root(root)
        self._zones: list[RaplZone] = []
        self._last_raw: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}
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

    def provenance(self, component: str) -> Provenance:
        zone = next(z for z in self._zones if z.component == component)
        return Provenance.measured("rapl", f"{zone.path.name} ({zone.domain})")

    def read(self) -> Reading:
        """Read every counter and return the unwrapped cumulative energy since construction."""
        energy: dict[str, float] = {}
        with self._lock:
            for zone in self._zones:
                raw = _read_int(zone.path / "energy_uj")
                last = self._last_raw[zone.component]
                delta = raw - last
                if delta < 0:  # the counter wrapped (once, if reads are frequent enough)
                    delta += zone.max_energy_range_uj
                self._last_raw[zone.component] = raw
                self._total_uj[zone.component] += delta
                energy[zone.component] = self._total_uj[zone.component] / 1e6
        return Reading(energy_j=energy)

    def close(self) -> None:
        return None
