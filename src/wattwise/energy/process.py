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
        """Rescan ``/proc`` for the root's descendants."""
        try:
            children = self._root.children(recursive=True)
        except psutil.Error:
            children = []
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
