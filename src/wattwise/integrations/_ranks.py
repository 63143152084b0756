"""A distributed job's windows: every rank measures its own, the job's Measurement merges them.

Under data-parallel training (Lightning's DDP, ``torchrun``) every process (rank) runs the same
windows with a monitor of its own. What each rank measured is exchanged once per window
(:class:`RankWindow`) and merged into the whole job's Measurement (:func:`job_measurement`),
which every rank then logs alike:

* Per-process components (the CPU and DRAM estimates, scope ``process``) add up over the ranks,
  each process counted once: a rank whose process lies in another rank's measured tree (Lightning's
  ``ddp`` launcher starts the other local ranks as children of rank 0) is already in that rank's
  figures and adds nothing.
* Device-wide components (RAPL, NVML: scope ``device``) measure the whole machine on every rank
  of it: each machine's device counts once, with the highest energy that one of its ranks
  measured (the widest window over the same device), and the machines add up.
* Time is the longest rank's (the job's window lasts until its last rank is done); resident
  memory adds up like the per-process energy (the job's processes); CUDA and GPU memory peaks
  are the highest rank's or GPU's. No sampler saw the job's total power at once, so the job has
  no peak power (rather than a made-up one).

A rank's own Measurement keeps what it measured; its device-wide energy is marked ``shared``
(:func:`mark_ranks_shared`) when other ranks ran on the same machine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from wattwise.energy.base import CarbonEstimate, ComponentEnergy, Measurement
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.sharing import add_shared
from wattwise.integrations._windows import WindowRecord, WindowsCallback, print_energy_table


@dataclass(frozen=True)
class RankWindow:
    """What one rank measured in a window, as sent to the others.

    Attributes:
        rank: The global rank.
        host: The machine it ran on (ranks on one machine share its devices).
        pid: Its process.
        tree_pids: The processes its monitor measured (its own and its descendants).
        measurement: The window's Measurement, without its timeline; ``None`` when this rank
            had no such window open.
    """

    rank: int
    host: str
    pid: int
    tree_pids: frozenset[int] = field(default_factory=frozenset)
    measurement: Measurement | None = None

    @classmethod
    def of(cls, rank: int, measurement: Measurement | None, tree_pids: set[int]) -> RankWindow:
        """This process's window, lightened for sending (no timeline, no profile)."""
        light = None
        if measurement is not None:
            light = replace(measurement, timeline=None, profile=None)
        return cls(rank, socket.gethostname(), os.getpid(), frozenset(tree_pids), light)


def job_measurement(ranks: Sequence[RankWindow]) -> Measurement | None:
    """The whole job's Measurement of one window from every rank's (see the module's rules);
    ``None`` when no rank had the window. A single rank's Measurement is returned as it is.

    Raises:
        ValueError: The ranks measured windows of different names.
    """
    present = [r for r in ranks if r.measurement is not None]
    if not present:
        return None
    names = {r.measurement.name for r in present if r.measurement is not None}
    if len(names) > 1:
        raise ValueError(f"the ranks measured different windows: {sorted(names)}")
    if len(ranks) == 1:
        return present[0].measurement
    outer = [
        r
        for r in present
        if not any(o is not r and o.host == r.host and r.pid in o.tree_pids for o in present)
    ]
    ms = [r.measurement for r in present if r.measurement is not None]
    outer_ms = [r.measurement for r in outer if r.measurement is not None]
    duration = max(m.duration_s for m in ms)
    first = ms[0]
    merged = Measurement(
        name=first.name,
        start_unix_s=min(m.start_unix_s for m in ms),
        duration_s=duration,
        components=tuple(_merge_components(present, outer, duration)),
        peak_power_w=None,
        peak_rss_bytes=_sum_known(m.peak_rss_bytes for m in outer_ms),
        peak_gpu_memory_bytes=_max_per_key(m.peak_gpu_memory_bytes for m in ms),
        peak_cuda_allocated_bytes=_max_known(m.peak_cuda_allocated_bytes for m in ms),
        peak_cuda_reserved_bytes=_max_known(m.peak_cuda_reserved_bytes for m in ms),
        samples=sum(m.samples for m in ms),
    )
    c = first.carbon
    if c is not None and all(m.carbon is not None for m in ms):
        co2e = merged.total_energy_j / 3.6e6 * c.intensity_g_per_kwh * c.pue
        merged = replace(
            merged, carbon=CarbonEstimate(co2e, c.intensity_g_per_kwh, c.pue, c.source)
        )
    return merged


def _merge_components(
    present: Sequence[RankWindow], outer: Sequence[RankWindow], duration_s: float
) -> list[ComponentEnergy]:
    """Each component of the job: per-process ones summed over ``outer``, device-wide ones
    counted once per machine (its highest) and summed over the machines."""
    order: list[str] = []
    for r in present:
        for c in r.measurement.components if r.measurement is not None else ():
            if c.component not in order:
                order.append(c.component)
    merged = []
    for name in order:
        found = [(r, _component(r, name)) for r in present]
        found = [(r, c) for r, c in found if c is not None]
        base = found[0][1]
        if base.provenance.scope == "device":
            hosts: dict[str, list[ComponentEnergy]] = {}
            for r, c in found:
                hosts.setdefault(r.host, []).append(c)
            counted = [_widest(same) for same in hosts.values()]
        else:
            counted = [c for r, c in found if r in outer]
        gap = next((c for c in counted if c.energy_j is None), None)
        if gap is not None or not counted:
            merged.append(replace(gap or base, energy_j=None, avg_power_w=None, peak_power_w=None))
            continue
        energy = float(sum(c.energy_j for c in counted))  # type: ignore[misc]
        provenance = next((c.provenance for c in counted if c.provenance.suspect), base.provenance)
        merged.append(
            replace(
                base,
                energy_j=energy,
                provenance=provenance,
                avg_power_w=energy / duration_s if duration_s > 0 else None,
                peak_power_w=None,
            )
        )
    return merged


def _component(r: RankWindow, name: str) -> ComponentEnergy | None:
    assert r.measurement is not None
    return next((c for c in r.measurement.components if c.component == name), None)


def _widest(same: Sequence[ComponentEnergy]) -> ComponentEnergy:
    """One device's component as several ranks measured it: the highest energy (unavailable
    when one of them could not read it)."""
    gap = next((c for c in same if c.energy_j is None), None)
    return gap or max(same, key=lambda c: c.energy_j or 0.0)


def mark_ranks_shared(m: Measurement, ranks_here: int) -> Measurement:
    """``m`` of one rank with its device-wide components marked shared when ``ranks_here`` > 1
    ranks of the job ran on this machine (each one's device-wide energy includes the others')."""
    if ranks_here <= 1:
        return m
    note = (
        f"{ranks_here} processes of this distributed job ran on this machine; this device-wide "
        "energy includes theirs"
    )
    components = tuple(
        replace(c, provenance=add_shared(c.provenance, note))
        if c.provenance.scope == "device"
        else c
        for c in m.components
    )
    return replace(m, components=components)


def ranks_beside(ranks: Sequence[RankWindow], rank: int) -> int:
    """How many of the job's ``ranks`` ran on the machine of ``rank`` (itself included), from
    the hosts they sent: the count :func:`mark_ranks_shared` needs, whatever the launcher."""
    host = next(r.host for r in ranks if r.rank == rank)
    return sum(r.host == host for r in ranks)


def own_record(windows: WindowRecord, ranks_here: int) -> WindowRecord:
    """A rank's own finished ``windows``, each marked by :func:`mark_ranks_shared`."""
    own = WindowRecord()
    own.epochs = [mark_ranks_shared(m, ranks_here) for m in windows.epochs]
    own.validations = [mark_ranks_shared(m, ranks_here) for m in windows.validations]
    if windows.fit is not None:
        own.fit = mark_ranks_shared(windows.fit, ranks_here)
    return own


class RanksCallback(WindowsCallback):
    """What both callbacks do with the ranks of a distributed job: each ended window is
    exchanged (:meth:`_merge`, called by every rank at the same hook or event) and the job's
    Measurements are kept in ``job``; in one process the callback's own windows are the job's.
    A subclass sets ``_world_size`` and ``_rank_index`` once the process group is known.
    """

    def __init__(
        self,
        monitor: EnergyMonitor | None = None,
        config: MonitorConfig | None = None,
        *,
        print_table: bool = True,
    ):
        super().__init__(monitor, config, print_table=print_table)
        self.job = WindowRecord()
        self._world_size = 1
        self._rank_index = 0
        self._ranks_here = 1

    @property
    def epochs(self) -> list[Measurement]:
        """Each train epoch's Measurement (its training only), the job's under DDP."""
        return self._record.epochs

    @property
    def validations(self) -> list[Measurement]:
        """Each validation's Measurement, the job's under DDP."""
        return self._record.validations

    @property
    def fit(self) -> Measurement | None:
        """The whole fit's Measurement, the job's under DDP. After a failed DDP fit, ``None``
        (the ranks cannot meet to merge it): this rank's is in :attr:`rank`."""
        return self._record.fit

    @property
    def rank(self) -> WindowRecord:
        """This process's own windows; under DDP, device-wide energy is marked ``shared`` when
        other ranks ran on the same machine."""
        return own_record(self.windows, self._ranks_here)

    @property
    def _record(self) -> WindowRecord:
        return self.job if self._world_size > 1 else self.windows

    def _tree_pids(self) -> set[int]:
        monitor = self.windows.monitor
        return monitor.tree.pids() if monitor is not None else set()

    def _merge(self, mine: Measurement | None, tree: set[int]) -> Measurement | None:
        """The job's Measurement of the window that just ended (``mine`` alone in one process).
        Under DDP every rank calls this at the same hook or event, with or without a window."""
        if self._world_size <= 1:
            return mine
        import torch.distributed

        ranks: list[Any] = [None] * self._world_size
        window = RankWindow.of(self._rank_index, mine, tree)
        torch.distributed.all_gather_object(ranks, window)
        self._ranks_here = ranks_beside(ranks, self._rank_index)
        return job_measurement(ranks)

    def _print_table(self) -> None:
        """The table of the job's windows (call it on one rank)."""
        title = "energy per window"
        if self._world_size > 1:
            title += f", whole job: {self._world_size} processes"
        print_energy_table(self._record, title)


def _sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _max_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _max_per_key(maps: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for mapping in maps:
        for key, value in mapping.items():
            out[key] = max(out.get(key, 0), value)
    return out
