"""describe_devices: every backend probed, available or not and why, as JSON-ready data."""

from __future__ import annotations

import json

import pytest

from wattwise.energy.devices import describe_devices
from wattwise.energy.meters import METER_NAMES, MeterSettings
from wattwise.errors import ConfigError


def test_everything_available_with_fakes(powercap, fake_nvml, fake_smi):
    powercap.one_socket()
    fake_nvml.add_gpu("GPU-ab12cd34-1111", name="NVIDIA H100", energy_mj=5)
    settings = MeterSettings(
        powercap_root=str(powercap.root), nvml=fake_nvml, cpu_tdp_w=64, cpu_threads=8
    )
    info = describe_devices(settings)
    json.dumps(info)  # JSON-ready
    meters = {m["meter"]: m for m in info["meters"]}
    assert list(meters) == list(METER_NAMES)
    assert all(m["available"] for m in meters.values())
    assert meters["rapl"]["components"] == ["cpu:0", "dram:0"]
    assert meters["rapl"]["provenance"] == "measured:rapl"
    assert meters["nvml"]["components"] == ["gpu:0"]
    assert meters["nvidia-smi"]["components"] == ["gpu:0", "gpu:1"]
    assert meters["cpu-estimate"]["provenance"] == "estimated:tdp"
    assert meters["dram-estimate"]["components"] == ["dram"]
    assert info["gpus"] == [
        {
            "component": "gpu:0",
            "nvml_index": 0,
            "name": "NVIDIA H100",
            "uuid": "GPU-ab12cd34-1111",
            "energy_counter": True,
        }
    ]
    assert info["cpu_power_model"]["source"] == "config"
    assert info["cpu_power_model"]["watts_per_cpu"] == pytest.approx(8.0)
    assert "TDP 64 W (config)" in info["cpu_power_model"]["description"]
    assert info["powercap_root"] == str(powercap.root)
    assert fake_nvml.shutdown_calls == 1  # probing leaves NVML shut down


def test_nothing_but_estimates(tmp_path, broken_nvml, no_smi):
    empty = tmp_path / "powercap"
    empty.mkdir()
    info = describe_devices(MeterSettings(powercap_root=str(empty), nvml=broken_nvml))
    meters = {m["meter"]: m for m in info["meters"]}
    for name in ("rapl", "nvml", "nvidia-smi"):
        assert meters[name]["available"] is False
        assert meters[name]["components"] == []
        assert meters[name]["detail"]  # the reason
    assert "Driver Not Loaded" in meters["nvml"]["detail"]
    assert meters["cpu-estimate"]["available"] is True
    assert info["gpus"] == []


def test_chosen_powercap_root_missing_is_a_config_error(tmp_path, broken_nvml):
    with pytest.raises(ConfigError):
        describe_devices(MeterSettings(powercap_root=str(tmp_path / "nope"), nvml=broken_nvml))
