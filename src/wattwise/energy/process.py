"""The measured process tree: CPU seconds and resident memory of a process and its descendants.

Reading the tree costs one ``/proc`` scan to find children, so the child list is cached and
refreshed only on request (the monitor's sampler does it about once a second); reading CPU times
and memory of known processes is cheap.

:class:`ExternalCpu` measures the opposite: the CPU that processes outside the tree used
(machine-wide busy time minus the tree's), the interference a comparison flags as ``noisy``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil


class ProcessTree:
    """CPU time and RSS of a root process and all its descendants.

    CPU seconds include children that have already exited and been reaped (the kernel adds them to
    their parent's ``children_user``/``children_system``), so a short-lived subprocess is counted
    once it has been waited for. The cumulative value is kept monotonic.

    Args:
        pid: The root process (default: this process).
    """

    def __init__(self, pid: int | None = None):
        self.pid = os.getpid() if pid is None else pid
        self._root = psutil.Process(self.pid)
        self._children: list[psutil.Process] = []
        self._lock = threading.Lock()
        self._last_cpu_s = 0.0
        self.refresh_children()

    def refresh_children(self) -> None:
        """Find the root's descendants again.

        On Linux this walks ``/proc/<pid>/task/<tid>/children`` down from the root, which reads
        a few files for a small tree; elsewhere it falls back to psutil's scan of all processes.
        """
        pids = _descendants_linux(self.pid)
        if pids is None:
            try:
                children = self._root.children(recursive=True)
            except psutil.Error:
                children = []
        else:
            with self._lock:
                known = {p.pid: p for p in self._children}
            children = []
            for pid in pids:
                proc = known.get(pid)
                if proc is None:
                    try:
                        proc = psutil.Process(pid)
                    except psutil.Error:
                        continue
                children.append(proc)
        with self._lock:
            self._children = children

    def pids(self) -> set[int]:
        """The root's PID and those of the descendants found by the last
        :meth:`refresh_children`."""
        with self._lock:
            return {self.pid, *(p.pid for p in self._children)}

    def cpu_seconds(self) -> float:
        """Cumulative user + system CPU seconds of the tree, reaped children included."""
        if self.pid == os.getpid():
            t = os.times()
            total = t.user + t.system + t.children_user + t.children_system
        else:
            try:
                t = self._root.cpu_times()
                total = t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                total = 0.0
        with self._lock:
            children = list(self._children)
        for child in children:
            try:
                ct = child.cpu_times()
            except psutil.Error:  # exited: once reaped, its time is in its parent's children_*
                continue
            total += ct.user + ct.system + ct.children_user + ct.children_system
        with self._lock:
            self._last_cpu_s = max(self._last_cpu_s, total)
            return self._last_cpu_s

    def rss_bytes(self) -> int:
        """Current resident set size of the tree, in bytes (shared pages counted per process)."""
        total = 0
        with self._lock:
            procs = [self._root, *self._children]
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total


def _descendants_linux(root: int) -> list[int] | None:
    """PIDs below ``root`` from ``/proc/*/task/*/children``, or ``None`` where unsupported."""
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        return None
    found: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def system_busy_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot, summed over all cores.

    ``psutil.cpu_times()``: user + nice + system + irq + softirq. Idle and iowait are not busy;
    steal (another VM ran) is not a process of this machine; guest time is already in user.
    """
    t = psutil.cpu_times()
    return float(
        sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
    )


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU counters at one moment: monotonic seconds, machine busy CPU seconds, tree CPU seconds."""

    t_s: float
    system_cpu_s: float
    tree_cpu_s: float


class ExternalCpu:
    """CPU used by processes *outside* the measured tree: interference during a measurement.

    ``cores_since(snapshot())`` = (machine busy CPU seconds - the tree's CPU seconds) / wall
    seconds since the snapshot, in cores (0 on a quiet machine; 1 for one busy competing
    process). Both counters tick at 10 ms per core, so over 1 s the figure is good to ~0.02 core.

    Args:
        tree: The measured process tree (default: this process and its descendants).
        system_cpu_s: Machine-wide busy CPU seconds (default :func:`system_busy_cpu_seconds`;
            tests pass a fake).
        clock: Monotonic seconds (default ``time.perf_counter``).
    """

    def __init__(
        self,
        tree: ProcessTree | None = None,
        system_cpu_s: Callable[[], float] = system_busy_cpu_seconds,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.tree = tree or ProcessTree()
        self._system_cpu_s = system_cpu_s
        self._clock = clock

    def snapshot(self) -> CpuSnapshot:
        """The counters now."""
        return CpuSnapshot(self._clock(), self._system_cpu_s(), self.tree.cpu_seconds())

    def cores_since(self, start: CpuSnapshot) -> float:
        """Average cores used outside the tree since ``start`` (never below 0)."""
        end = self.snapshot()
        duration = end.t_s - start.t_s
        if duration <= 0:
            return 0.0
        outside = (end.system_cpu_s - start.system_cpu_s) - (end.tree_cpu_s - start.tree_cpu_s)
        return max(0.0, outside / duration)
