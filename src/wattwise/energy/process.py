"""The measured process tree: CPU seconds and resident memory of a process and its descendants.

Reading the tree costs one ``/proc`` scan to find children, so the child list is cached and
refreshed only on request (the monitor's sampler does it about once a second); reading CPU times
and memory of known processes is cheap.
"""

from __future__ import annotations

import os
import threading

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
