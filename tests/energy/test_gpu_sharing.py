"""A GPU that other processes use, or that is split into MIG instances, is labelled shared.

NVML measures the whole GPU. When NVML lists processes on it outside the measured process tree,
or the GPU is in MIG mode, every window's GPU energy says so (``Provenance.shared`` and the
detail), with the other processes counted; a GPU used by this process tree only is not shared.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.energy.conftest import NVML_ERROR_NOT_SUPPORTED, FakeNvmlError
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.nvml import NvmlMeter
from wattwise.energy.process import ProcessTree
from wattwise.energy.sharing import ENV_PARALLEL_TRIALS

QUIET = MonitorConfig(sample_hz=0.1)  # no background sample inside these short windows


class Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _window(fake_nvml, **meter_kwargs):
    """One window over an NVML meter; returns the GPU's provenance."""
    meter = NvmlMeter(fake_nvml, **meter_kwargs)
    with EnergyMonitor(QUIET, meters=[meter], sync=None) as monitor, monitor.window("w") as w:
        pass
    return w.measurement.component("gpu:0").provenance


def test_other_processes_on_the_gpu_mark_its_energy_shared(fake_nvml):
    gpu = fake_nvml.add_gpu()
    gpu.compute_pids = [os.getpid(), 4_000_001, 4_000_002]
    gpu.graphics_pids = [4_000_003]
    provenance = _window(fake_nvml)
    assert "3 other processes" in provenance.shared
    assert "4000001, 4000002, 4000003" in provenance.shared
    assert "shared: 3 other processes" in provenance.detail  # every reader of the detail sees it
    assert provenance.label == "measured:nvml"  # still measured, whole device


def test_this_process_alone_is_not_shared(fake_nvml):
    gpu = fake_nvml.add_gpu()
    gpu.compute_pids = [os.getpid()]
    provenance = _window(fake_nvml)
    assert provenance.shared == ""
    assert "shared" not in provenance.detail
    assert gpu.process_list_calls >= 1  # it did look


def test_a_child_process_of_the_tree_is_ours(fake_nvml):
    tree = ProcessTree()  # built before the child started: the meter finds it by a refresh
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        gpu = fake_nvml.add_gpu()
        gpu.compute_pids = [os.getpid(), child.pid]
        provenance = _window(fake_nvml, tree=tree)
    finally:
        child.kill()
        child.wait()
    assert provenance.shared == ""


def test_mig_mode_marks_the_gpu_shared(fake_nvml):
    fake_nvml.add_gpu().mig_mode = fake_nvml.NVML_DEVICE_MIG_ENABLE
    provenance = _window(fake_nvml)
    assert "MIG mode" in provenance.shared
    assert "whole GPU" in provenance.shared
    mig_off = fake_nvml.add_gpu()
    mig_off.mig_mode = 0
    meter = NvmlMeter(fake_nvml)
    assert meter.provenance("gpu:1").shared == ""


def test_a_gpu_that_cannot_list_its_processes_says_so(fake_nvml):
    gpu = fake_nvml.add_gpu()
    gpu.process_list_error = FakeNvmlError("Not Supported", NVML_ERROR_NOT_SUPPORTED)
    provenance = _window(fake_nvml)
    assert provenance.shared == ""  # nothing seen...
    assert "cannot list the processes" in provenance.detail  # ...and not hidden either


def test_parallel_trials_and_other_processes_are_both_named(fake_nvml, monkeypatch):
    monkeypatch.setenv(ENV_PARALLEL_TRIALS, "2")
    gpu = fake_nvml.add_gpu()
    gpu.compute_pids = [4_000_001]
    provenance = _window(fake_nvml)
    assert "2 trials ran in parallel" in provenance.shared
    assert "1 other process " in provenance.shared


def test_only_windows_open_while_another_process_ran_are_shared(fake_nvml):
    gpu = fake_nvml.add_gpu()
    clock = Clock()
    meter = NvmlMeter(fake_nvml, clock=clock)
    with EnergyMonitor(QUIET, meters=[meter], sync=None) as monitor:
        with monitor.window("alone") as alone:
            pass
        clock.t += 2.0
        with monitor.window("outer") as outer:
            gpu.compute_pids = [4_000_001]
            clock.t += 2.0
            with monitor.window("inner") as inner:
                gpu.compute_pids = []  # gone by the next check
                clock.t += 2.0
        clock.t += 2.0
        with monitor.window("after") as after:
            pass
    shared = {w.name: w.measurement.component("gpu:0").provenance.shared
              for w in (alone, outer, inner, after)}  # fmt: skip
    assert shared["alone"] == shared["after"] == ""
    assert "1 other process" in shared["outer"]
    assert "1 other process" in shared["inner"]  # seen at its start


def test_the_process_list_is_read_at_a_low_rate(fake_nvml):
    gpu = fake_nvml.add_gpu()
    clock = Clock()
    meter = NvmlMeter(fake_nvml, clock=clock)
    for _ in range(50):  # 50 reads within one second: one check (compute + graphics lists)
        meter.read()
    calls = gpu.process_list_calls
    assert calls == 2
    clock.t += 1.0
    meter.read()
    assert gpu.process_list_calls == calls + 2


def test_a_later_process_is_reported_at_the_next_check(fake_nvml):
    gpu = fake_nvml.add_gpu()
    clock = Clock()
    meter = NvmlMeter(fake_nvml, clock=clock)
    assert meter.read().shared == {}
    gpu.compute_pids = [4_000_001]
    clock.t += 1.0
    assert meter.read().shared == {"gpu:0": (4_000_001,)}


@pytest.mark.parametrize("count", [1, 12])
def test_the_note_counts_and_bounds_the_pids(count):
    from wattwise.energy.base import Provenance
    from wattwise.energy.sharing import shared_by_processes

    prov = shared_by_processes(Provenance.measured("nvml", "x", scope="device"), range(count))
    assert f"{count} other process" in prov.shared
    assert prov.shared.count(",") <= 8  # at most 8 PIDs listed, the rest counted
    if count > 8:
        assert f"and {count - 8} more" in prov.shared
