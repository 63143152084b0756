"""Device-wide meters say so, and say when parallel trials shared the device."""

from __future__ import annotations

import json

import pytest

from wattwise.energy.base import Measurement
from wattwise.energy.cpu_model import CpuEstimateMeter, CpuPowerModel
from wattwise.energy.memory import DramEstimateMeter
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.nvml import NvmlMeter
from wattwise.energy.rapl import RaplMeter
from wattwise.energy.sharing import ENV_OWN_DEVICES, ENV_PARALLEL_TRIALS, parallel_env
from wattwise.errors import ConfigError

QUIET = MonitorConfig(sample_hz=0.1)


def _measure(powercap, fake_nvml) -> Measurement:
    powercap.one_socket()
    gpu = fake_nvml.add_gpu()
    model = CpuPowerModel(10.0, 20.0, 2, "config", "test cpu")
    meters = [RaplMeter(powercap.root), NvmlMeter(fake_nvml), CpuEstimateMeter(model)]
    meters.append(DramEstimateMeter())
    with EnergyMonitor(QUIET, meters=meters, sync=None) as monitor, monitor.window("w") as w:
        powercap.add_energy("intel-rapl:0", 2_000_000)
        gpu.energy_mj += 3_000
    assert w.measurement is not None
    return w.measurement


def _provenance(m: Measurement) -> dict[str, dict[str, str]]:
    data = json.loads(json.dumps(m.to_dict()))
    assert Measurement.from_dict(data) == m
    return {c["component"]: c["provenance"] for c in data["components"]}


def test_rapl_and_nvml_say_they_are_device_wide(powercap, fake_nvml):
    m = _measure(powercap, fake_nvml)
    prov = _provenance(m)
    for comp in ("cpu:0", "dram:0", "cpu:0/core", "gpu:0"):
        assert prov[comp]["scope"] == "device", comp
        assert "device-wide" in prov[comp]["detail"], comp
        assert prov[comp]["shared"] == ""  # alone on the machine
    for comp in ("cpu", "dram"):  # the estimates charge the process tree only
        assert prov[comp]["scope"] == "process", comp
        assert "device-wide" not in prov[comp]["detail"]
    assert m.component("cpu:0").energy_j == pytest.approx(2.0)


def test_parallel_trials_mark_device_wide_energy_shared(powercap, fake_nvml, monkeypatch):
    monkeypatch.setenv(ENV_PARALLEL_TRIALS, "3")
    prov = _provenance(_measure(powercap, fake_nvml))
    for comp in ("cpu:0", "dram:0", "gpu:0"):
        assert "3 trials ran in parallel on this machine" in prov[comp]["shared"], comp
        assert "shared: " in prov[comp]["detail"]
        assert prov[comp]["label"].startswith("measured:")  # still measured
    assert prov["cpu"]["shared"] == prov["dram"]["shared"] == ""  # per-process estimates


def test_a_gpu_of_its_own_is_not_shared(powercap, fake_nvml, monkeypatch):
    monkeypatch.setenv(ENV_PARALLEL_TRIALS, "2")
    monkeypatch.setenv(ENV_OWN_DEVICES, "gpu")
    prov = _provenance(_measure(powercap, fake_nvml))
    assert prov["gpu:0"]["shared"] == ""
    assert "2 trials" in prov["cpu:0"]["shared"]


def test_parallel_env_is_what_executors_set():
    assert parallel_env(1) == {}
    assert parallel_env(4) == {ENV_PARALLEL_TRIALS: "4"}
    assert parallel_env(2, own_gpu=True) == {ENV_PARALLEL_TRIALS: "2", ENV_OWN_DEVICES: "gpu"}


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_bad_parallel_value_is_a_config_error(powercap, fake_nvml, monkeypatch, value):
    monkeypatch.setenv(ENV_PARALLEL_TRIALS, value)
    with pytest.raises(ConfigError, match=ENV_PARALLEL_TRIALS):
        _measure(powercap, fake_nvml)
