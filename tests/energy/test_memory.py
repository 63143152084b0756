"""The DRAM estimate, the process tree's memory, and peak RSS / CUDA memory per window."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from wattwise.energy.memory import W_PER_GIB, CudaPeakTracker, DramEstimateMeter
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.process import ProcessTree

GIB = 2**30


class _RssTree:
    """A process tree with a fixed resident size."""

    def __init__(self, rss: int):
        self.rss = rss

    def rss_bytes(self) -> int:
        return self.rss

    def cpu_seconds(self) -> float:
        return 0.0

    def refresh_children(self) -> None:
        return None


def test_dram_power_is_rss_in_gib_times_watts_per_gib():
    assert W_PER_GIB == 0.375
    tree = _RssTree(8 * GIB)
    meter = DramEstimateMeter(tree)  # type: ignore[arg-type]
    assert meter.read().power_w == {"dram": pytest.approx(8 * 0.375)}
    tree.rss = 512 * 2**20
    assert meter.read().power_w == {"dram": pytest.approx(0.5 * 0.375)}
    assert meter.read().energy_j == {}
    assert meter.components() == ["dram"]
    provenance = meter.provenance("dram")
    assert provenance.label == "estimated:dram-rss"
    assert "0.375 W per GiB" in provenance.detail


def test_dram_estimate_is_integrated_over_the_window():
    meter = DramEstimateMeter(_RssTree(4 * GIB))  # type: ignore[arg-type]
    with (
        EnergyMonitor(MonitorConfig(sample_hz=20), meters=[meter], sync=None) as monitor,
        monitor.window("w") as w,
    ):
        time.sleep(0.2)
    m = w.measurement
    assert m.component("dram").energy_j == pytest.approx(1.5 * m.duration_s, rel=1e-6)
    assert m.component("dram").provenance.label == "estimated:dram-rss"


def test_process_tree_sees_a_live_child():
    tree = ProcessTree()
    alone = tree.rss_bytes()
    assert alone > 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.2)
        tree.refresh_children()
        assert tree.rss_bytes() > alone  # the child's resident memory is added
    finally:
        child.kill()
        child.wait()


def test_process_tree_cpu_seconds_are_monotonic(burn):
    tree = ProcessTree()
    first = tree.cpu_seconds()
    burn(0.05)
    second = tree.cpu_seconds()
    assert second >= first + 0.03
    assert tree.cpu_seconds() >= second


def test_peak_rss_rises_with_an_allocation_inside_the_window():
    size = 200 * 2**20
    with EnergyMonitor(MonitorConfig(sample_hz=20), meters=[], sync=None) as monitor:
        with monitor.window("without") as without:
            time.sleep(0.1)
        with monitor.window("with") as with_alloc:
            block = bytearray(b"\x01") * size  # written: every page is resident
            time.sleep(0.2)
            assert block[size - 1] == 1
            del block
    assert without.measurement.peak_rss_bytes is not None
    assert with_alloc.measurement.peak_rss_bytes is not None
    grown = with_alloc.measurement.peak_rss_bytes - without.measurement.peak_rss_bytes
    assert grown >= 0.9 * size


def test_no_cuda_memory_without_cuda():
    tracker = CudaPeakTracker()
    tracker.begin("w")
    assert tracker.end("w") == (None, None)
    with (
        EnergyMonitor(MonitorConfig(sample_hz=10), meters=[], sync=None) as monitor,
        monitor.window("w") as w,
    ):
        pass
    assert w.measurement.peak_cuda_allocated_bytes is None
    assert w.measurement.peak_cuda_reserved_bytes is None


def test_cuda_peaks_per_nested_window(fake_cuda):
    mib = 2**20
    fake_cuda.alloc(1000 * mib)
    fake_cuda.free(900 * mib)  # a spike before any window: not any window's peak
    with EnergyMonitor(MonitorConfig(sample_hz=0.1), meters=[], sync=None) as monitor:
        monitor.begin_window("outer")  # 100 MiB in use
        fake_cuda.alloc(50 * mib)
        monitor.begin_window("inner")
        fake_cuda.alloc(500 * mib)  # 650
        fake_cuda.free(500 * mib)
        inner = monitor.end_window("inner")
        monitor.begin_window("after")  # 150 in use
        fake_cuda.alloc(10 * mib)
        after = monitor.end_window("after")
        outer = monitor.end_window("outer")
    assert inner.peak_cuda_allocated_bytes == 650 * mib
    assert after.peak_cuda_allocated_bytes == 160 * mib
    assert outer.peak_cuda_allocated_bytes == 650 * mib
    assert outer.peak_cuda_reserved_bytes == 1000 * mib  # the allocator kept its cache
