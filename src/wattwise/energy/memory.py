"""Memory: the DRAM energy estimate, and peak CUDA memory per (nested) window.

DRAM estimate (where RAPL has no dram domain): ``power_w = rss_bytes / 2**30 * W_PER_GIB``,
integrated over the window by the monitor's sampler. ``W_PER_GIB`` = 0.375 W per GiB (3 W per
8 GiB module, the figure CodeCarbon uses) charges the measured process tree for the memory it
holds. It is labelled ``estimated:dram-rss`` with this formula.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from wattwise.energy.base import Availability, Provenance, Reading
from wattwise.energy.process import ProcessTree

#: Watts per GiB of resident memory charged by the DRAM estimate.
W_PER_GIB = 0.375


class DramEstimateMeter:
    """Estimated DRAM power of a process tree from its resident memory."""

    #: Reads this process tree's counters in procfs, never a device: read inline, not in a
    #: thread (:mod:`wattwise.energy.bounded`).
    reads_in_process = True

    name = "dram-estimate"

    def __init__(self, tree: ProcessTree | None = None, w_per_gib: float = W_PER_GIB):
        self.tree = tree or ProcessTree()
        self.w_per_gib = w_per_gib

    def availability(self) -> Availability:
        return Availability(True, self.formula)

    @property
    def formula(self) -> str:
        return (
            f"{self.w_per_gib:g} W per GiB x resident memory of the process tree, integrated over "
            f"time (no DRAM counter here)"
        )

    def components(self) -> list[str]:
        return ["dram"]

    def nested_components(self) -> dict[str, str]:
        return {}

    def provenance(self, component: str) -> Provenance:
        return Provenance.estimated("dram-rss", self.formula, scope="process")

    def read(self) -> Reading:
        return Reading(power_w={"dram": self.tree.rss_bytes() / 2**30 * self.w_per_gib})

    def close(self) -> None:
        return None


def _torch_cuda():
    """``torch.cuda`` if torch is already imported and CUDA is initialized, else ``None``.

    Never imports torch and never initializes CUDA: a process that has not used CUDA has no CUDA
    memory to report.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_initialized():
            return torch.cuda
    except Exception:  # a broken CUDA setup must not break measuring
        return None
    return None


class CudaPeakTracker:
    """Peak ``max_memory_allocated`` / ``max_memory_reserved`` per window, across nesting.

    PyTorch keeps one peak per device. At every window edge the tracker folds the current peak
    into all open windows and resets it, so that nested and overlapping windows each get the peak
    of their own span. (Side effect: ``torch.cuda.reset_peak_memory_stats`` is called at edges.)
    """

    def __init__(self) -> None:
        self._open: dict[str, list[int]] = {}  # window -> [allocated, reserved]

    def _fold(self, windows: Iterable[str]) -> None:
        cuda = _torch_cuda()
        if cuda is None:
            return
        allocated = reserved = 0
        for device in range(cuda.device_count()):
            allocated += cuda.max_memory_allocated(device)
            reserved += cuda.max_memory_reserved(device)
            cuda.reset_peak_memory_stats(device)
        for name in windows:
            peaks = self._open[name]
            peaks[0] = max(peaks[0], allocated)
            peaks[1] = max(peaks[1], reserved)

    def begin(self, name: str) -> None:
        self._fold(list(self._open))
        self._open[name] = [0, 0]
        # The new window starts from what is allocated now, not from an earlier peak.
        cuda = _torch_cuda()
        if cuda is not None:
            now_alloc = sum(cuda.memory_allocated(d) for d in range(cuda.device_count()))
            now_res = sum(cuda.memory_reserved(d) for d in range(cuda.device_count()))
            self._open[name] = [now_alloc, now_res]

    def end(self, name: str) -> tuple[int | None, int | None]:
        self._fold(list(self._open))
        allocated, reserved = self._open.pop(name)
        if _torch_cuda() is None and allocated == 0 and reserved == 0:
            return None, None
        return allocated, reserved
