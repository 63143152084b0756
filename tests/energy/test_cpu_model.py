"""The CPU estimate: choosing the TDP (and saying where it came from) and CPU-seconds x watts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wattwise.energy.cpu_model import (
    DEFAULT_WATTS_PER_THREAD,
    CpuEstimateMeter,
    CpuPowerModel,
    lookup_tdp,
    resolve_cpu_power_model,
)
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.process import ProcessTree
from wattwise.errors import ConfigError

EPYC = "AMD EPYC 7763 64-Core Processor"
UNKNOWN = "Imaginary CPU 9000"


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


# --- choosing the power model ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (EPYC, (280.0, 128)),
        ("Intel(R) Xeon(R) Platinum 8480+", (350.0, 112)),
        ("Intel(R) Core(TM) i9-13900K", (125.0, 32)),
        ("AMD Ryzen 9 7950X 16-Core Processor", (170.0, 32)),
        ("AMD EPYC 77630", None),  # a longer number is another CPU
        (UNKNOWN, None),
    ],
)
def test_lookup_tdp(model, expected):
    assert lookup_tdp(model) == expected


def test_explicit_tdp_wins_over_environment_and_table(monkeypatch):
    monkeypatch.setenv("WATTWISE_CPU_TDP_W", "999")
    power = resolve_cpu_power_model(100.0, 4, model=EPYC)
    assert power.source == "config"
    assert power.tdp_w == 100.0
    assert power.threads == 4
    assert power.watts_per_cpu == pytest.approx(25.0)


def test_environment_wins_over_table(monkeypatch):
    monkeypatch.setenv("WATTWISE_CPU_TDP_W", "120")
    power = resolve_cpu_power_model(model=EPYC)
    assert power.source == "environment"
    assert power.tdp_w == 120.0
    assert power.threads == 128  # the table still knows how many threads share it
    assert power.watts_per_cpu == pytest.approx(120.0 / 128)


def test_environment_threads(monkeypatch):
    monkeypatch.setenv("WATTWISE_CPU_TDP_W", "90")
    monkeypatch.setenv("WATTWISE_CPU_THREADS", "6")
    power = resolve_cpu_power_model(model=UNKNOWN)
    assert (power.tdp_w, power.threads, power.source) == (90.0, 6, "environment")
    assert power.watts_per_cpu == pytest.approx(15.0)


def test_table_by_model_name():
    power = resolve_cpu_power_model(model=EPYC)
    assert power.source == "table"
    assert (power.tdp_w, power.threads) == (280.0, 128)
    assert power.watts_per_cpu == pytest.approx(280 / 128)
    assert power.cpu_model == EPYC


def test_default_is_labelled():
    power = resolve_cpu_power_model(model=UNKNOWN)
    assert power.source == "default"
    assert power.tdp_w is None
    assert power.watts_per_cpu == DEFAULT_WATTS_PER_THREAD
    assert "generic default" in power.description
    assert UNKNOWN in power.description
    assert "WATTWISE_CPU_TDP_W" in power.description  # tells the user how to do better


def test_explicit_tdp_without_threads_uses_this_machine():
    power = resolve_cpu_power_model(64.0, model=UNKNOWN)
    assert power.threads is not None
    assert 1 <= power.threads <= (os.cpu_count() or 1)
    assert power.watts_per_cpu == pytest.approx(64.0 / power.threads)


@pytest.mark.parametrize(
    ("source", "model", "needle"),
    [("config", UNKNOWN, "TDP 100 W (config) / 4 threads"), ("table", EPYC, "TDP 280 W (table)")],
)
def test_description_names_tdp_and_source(source, model, needle):
    power = (
        resolve_cpu_power_model(100.0, 4, model=model)
        if source == "config"
        else resolve_cpu_power_model(model=model)
    )
    assert needle in power.description
    assert model in power.description


@pytest.mark.parametrize("value", ["abc", "-5", "0", "nan", "inf"])
def test_bad_environment_tdp_is_a_config_error(monkeypatch, value):
    monkeypatch.setenv("WATTWISE_CPU_TDP_W", value)
    with pytest.raises(ConfigError, match="WATTWISE_CPU_TDP_W"):
        resolve_cpu_power_model(model=UNKNOWN)


def test_bad_environment_threads_is_a_config_error(monkeypatch):
    monkeypatch.setenv("WATTWISE_CPU_THREADS", "many")
    with pytest.raises(ConfigError, match="WATTWISE_CPU_THREADS"):
        resolve_cpu_power_model(model=EPYC)


@pytest.mark.parametrize(("tdp", "threads"), [(0.0, 4), (-10.0, 4), (100.0, 0), (100.0, -2)])
def test_bad_explicit_values_are_config_errors(tdp, threads):
    with pytest.raises(ConfigError):
        resolve_cpu_power_model(tdp, threads, model=UNKNOWN)


# --- the meter ------------------------------------------------------------------------------
class _FixedTree:
    """A process tree whose CPU seconds the test sets."""

    def __init__(self) -> None:
        self.cpu_s = 100.0

    def cpu_seconds(self) -> float:
        return self.cpu_s

    def rss_bytes(self) -> int:
        return 0

    def refresh_children(self) -> None:
        return None


def test_meter_is_cpu_seconds_times_watts():
    tree = _FixedTree()
    power = CpuPowerModel(10.0, 20.0, 2, "config", "test cpu")
    meter = CpuEstimateMeter(power, tree)  # type: ignore[arg-type]
    assert meter.read().energy_j == {"cpu": 0.0}  # counted from construction
    tree.cpu_s += 1.5
    assert meter.read().energy_j == {"cpu": pytest.approx(15.0)}
    assert meter.components() == ["cpu"]
    assert meter.availability().available
    provenance = meter.provenance("cpu")
    assert provenance.label == "estimated:tdp"
    assert "TDP 20 W (config) / 2 threads" in provenance.detail


def _cpu_monitor(watts_per_cpu: float = 10.0, sample_hz: float = 10.0) -> EnergyMonitor:
    power = CpuPowerModel(watts_per_cpu, 2 * watts_per_cpu, 2, "config", "test cpu")
    meter = CpuEstimateMeter(power, ProcessTree())
    return EnergyMonitor(MonitorConfig(sample_hz=sample_hz), meters=[meter], sync=None)


def test_estimate_matches_hand_computation_for_a_busy_loop(burn):
    with _cpu_monitor(10.0) as monitor:
        monitor.begin_window("busy")
        before = _cpu_s()
        burn(0.4)
        after = _cpu_s()
        m = monitor.end_window("busy")
    cpu_s = after - before
    assert cpu_s >= 0.3
    expected_j = cpu_s * 10.0
    cpu = m.component("cpu")
    # os.times() ticks at 10 ms: allow a tick or two (0.1 J at 10 W) plus 5 %.
    assert cpu.energy_j == pytest.approx(expected_j, rel=0.05, abs=0.1)
    assert cpu.provenance.label == "estimated:tdp"
    assert m.total_provenance == "estimated"
    assert cpu.avg_power_w == pytest.approx(cpu.energy_j / m.duration_s)


def test_estimate_counts_a_reaped_subprocess():
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\n"
    with _cpu_monitor(10.0) as monitor:
        monitor.begin_window("child")
        before, before_children = _cpu_s(), _children_cpu_s()
        subprocess.run([sys.executable, "-c", code], check=True)
        after, after_children = _cpu_s(), _children_cpu_s()
        m = monitor.end_window("child")
    child_s = after_children - before_children
    assert child_s >= 0.3
    expected_j = (child_s + after - before) * 10.0
    assert m.component("cpu").energy_j == pytest.approx(expected_j, rel=0.05, abs=0.1)
    assert m.component("cpu").energy_j >= 0.95 * child_s * 10.0
