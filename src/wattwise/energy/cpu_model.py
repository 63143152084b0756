"""CPU energy estimate where no counter exists: CPU seconds x watts per CPU.

Model: ``energy_j = cpu_seconds(process tree) * tdp_w / threads`` where ``tdp_w`` is the thermal
design power of one CPU package and ``threads`` the hardware threads that share it. This charges
the measured processes for the share of the package's rated power that their CPU time occupies;
it ignores the idle power of the rest of the machine, turbo above TDP, and frequency scaling. It is
an *estimate* and every record says so, naming the TDP and where it came from.

The TDP comes from, in order: an explicit value (config or CLI ``--cpu-tdp-w``), the environment
(``WATTWISE_CPU_TDP_W``), the table below by CPU model name, else a generic default of
:data:`DEFAULT_WATTS_PER_THREAD` per thread, labelled as such.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import psutil

from wattwise.energy.base import Availability, Provenance, Reading
from wattwise.energy.process import ProcessTree
from wattwise.errors import ConfigError

ENV_TDP = "WATTWISE_CPU_TDP_W"
ENV_THREADS = "WATTWISE_CPU_THREADS"

#: Used when the CPU model is not in the table and no TDP was given: typical of current server
#: and desktop parts (e.g. 360 W / 192 threads = 1.9 W, 125 W / 32 threads = 3.9 W).
DEFAULT_WATTS_PER_THREAD = 4.0

#: (regex on the model name, TDP in W per package, hardware threads per package). Figures from the
#: manufacturers' specification pages (default TDP).
TDP_TABLE: tuple[tuple[str, float, int], ...] = (
    # AMD EPYC (Genoa / Milan / Rome)
    (r"EPYC 9654\b", 360, 192),
    (r"EPYC 9554\b", 360, 128),
    (r"EPYC 9454\b", 290, 96),
    (r"EPYC 9354\b", 280, 64),
    (r"EPYC 9124\b", 200, 32),
    (r"EPYC 7763\b", 280, 128),
    (r"EPYC 7713\b", 225, 128),
    (r"EPYC 7543\b", 225, 64),
    (r"EPYC 7742\b", 225, 128),
    (r"EPYC 7502\b", 180, 64),
    # Intel Xeon Scalable
    (r"Platinum 8480\+?", 350, 112),
    (r"Platinum 8380\b", 270, 80),
    (r"Platinum 8375C\b", 300, 64),
    (r"Platinum 8358\b", 250, 64),
    (r"Platinum 8275CL\b", 240, 48),
    (r"Platinum 8259CL\b", 210, 48),
    (r"Platinum 8175M\b", 240, 48),
    (r"Gold 6330\b", 205, 56),
    (r"Gold 6248\b", 150, 40),
    (r"Gold 6226R\b", 150, 32),
    # Desktop
    (r"Core\(TM\) i9-13900K\b", 125, 32),
    (r"Core\(TM\) i9-12900K\b", 125, 24),
    (r"Core\(TM\) i7-12700K\b", 125, 20),
    (r"Core\(TM\) i5-12400\b", 65, 12),
    (r"Ryzen 9 7950X\b", 170, 32),
    (r"Ryzen 9 5950X\b", 105, 32),
    (r"Ryzen 7 5800X\b", 105, 16),
    (r"Ryzen 5 5600X\b", 65, 12),
)


@functools.cache
def cpu_model_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class CpuPowerModel:
    """The watts charged per busy CPU (hardware thread) and where that figure came from."""

    watts_per_cpu: float
    tdp_w: float | None
    threads: int | None
    source: str  # "config", "environment", "table", "default"
    cpu_model: str

    @property
    def description(self) -> str:
        if self.tdp_w is None:
            return (
                f"{self.watts_per_cpu:g} W per busy CPU (generic default: CPU model "
                f"'{self.cpu_model}' is not in the TDP table; set --cpu-tdp-w or "
                f"{ENV_TDP}) x CPU seconds of the process tree"
            )
        return (
            f"TDP {self.tdp_w:g} W ({self.source}) / {self.threads} threads = "
            f"{self.watts_per_cpu:.3g} W per busy CPU, for '{self.cpu_model}', x CPU seconds of "
            f"the process tree"
        )


def _positive(value: str | float, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ConfigError(f"{what} must be a positive number, got {value!r}")
    return number


def lookup_tdp(model: str) -> tuple[float, int] | None:
    """(TDP W, threads per package) for a known CPU model name, else ``None``."""
    for pattern, tdp, threads in TDP_TABLE:
        if re.search(pattern, model):
            return float(tdp), threads
    return None


def resolve_cpu_power_model(
    tdp_w: float | None = None, threads: int | None = None, *, model: str | None = None
) -> CpuPowerModel:
    """Pick the CPU power model: explicit, environment, table, or the labelled default.

    Args:
        tdp_w: TDP of one package in watts (overrides everything).
        threads: Hardware threads sharing that TDP (default: from the table, else this
            machine's logical CPUs per socket).
        model: The CPU model name (default: detected).
    """
    model = model or cpu_model_name()
    source = "config"
    if tdp_w is None and os.environ.get(ENV_TDP):
        tdp_w, source = _positive(os.environ[ENV_TDP], ENV_TDP), "environment"
    if threads is None and os.environ.get(ENV_THREADS):
        threads = int(_positive(os.environ[ENV_THREADS], ENV_THREADS))
    known = lookup_tdp(model)
    if tdp_w is None and known is not None:
        tdp_w, source = known[0], "table"
        threads = threads or known[1]
    if tdp_w is None:
        return CpuPowerModel(DEFAULT_WATTS_PER_THREAD, None, None, "default", model)
    tdp_w = _positive(tdp_w, "CPU TDP (W)")
    if threads is None:
        threads = known[1] if known else _threads_per_socket()
    if threads < 1:
        raise ConfigError(f"CPU threads must be at least 1, got {threads}")
    return CpuPowerModel(tdp_w / threads, tdp_w, int(threads), source, model)


def _threads_per_socket(cpuinfo: str = "/proc/cpuinfo") -> int:
    logical = psutil.cpu_count(logical=True) or 1
    try:
        ids = {
            line.split(":", 1)[1].strip()
            for line in Path(cpuinfo).read_text().splitlines()
            if line.startswith("physical id")
        }
    except OSError:
        ids = set()
    return max(1, logical // max(1, len(ids)))


class CpuEstimateMeter:
    """Estimated CPU energy of a process tree: CPU seconds x watts per CPU.

    Args:
        power_model: The watts per busy CPU and its source (default: resolved as documented).
        tree: The process tree to charge (default: this process and its children).
    """

    #: Reads this process tree's counters in procfs, never a device: read inline, not in a
    #: thread (:mod:`wattwise.energy.bounded`).
    reads_in_process = True

    name = "cpu-estimate"

    def __init__(self, power_model: CpuPowerModel | None = None, tree: ProcessTree | None = None):
        self.power_model = power_model or resolve_cpu_power_model()
        self.tree = tree or ProcessTree()
        self._origin_s = self.tree.cpu_seconds()

    def availability(self) -> Availability:
        return Availability(True, self.power_model.description)

    def components(self) -> list[str]:
        return ["cpu"]

    def nested_components(self) -> dict[str, str]:
        return {}

    def provenance(self, component: str) -> Provenance:
        return Provenance.estimated("tdp", self.power_model.description, scope="process")

    def read(self) -> Reading:
        cpu_s = self.tree.cpu_seconds() - self._origin_s
        return Reading(energy_j={"cpu": cpu_s * self.power_model.watts_per_cpu})

    def close(self) -> None:
        return None
