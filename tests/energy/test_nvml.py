"""NVML with a fake bindings module: counters, power integration, visibility, failures, memory."""

from __future__ import annotations

import time

import pytest

from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.nvml import NvmlMeter, parse_visible_devices
from wattwise.errors import MeterError

UUID_A = "GPU-ab12cd34-1111-2222-3333-444455556666"
UUID_B = "GPU-ef56ab78-1111-2222-3333-444455556666"
UUID_C = "GPU-ef99ab78-1111-2222-3333-444455556666"
UUIDS = [UUID_A, UUID_B, UUID_C]


def test_fake_nvml_mirrors_the_real_bindings(fake_nvml):
    """The fake only offers functions that pynvml really has (an autospec by hand)."""
    pynvml = pytest.importorskip("pynvml")
    api = [n for n in dir(fake_nvml) if n.startswith("nvml") or n == "NVMLError"]
    assert len(api) == 16
    for name in api:
        assert hasattr(pynvml, name), name
    for name in [n for n in dir(fake_nvml) if n.startswith("NVML_")]:  # the same codes
        assert getattr(fake_nvml, name) == getattr(pynvml, name), name


# --- CUDA_VISIBLE_DEVICES -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, [0, 1, 2]),
        ("1", [1]),
        ("2,0", [2, 0]),
        (" 1 , 2 ", [1, 2]),
        ("0,7,1", [0]),  # parsing stops at the first invalid entry, as CUDA does
        ("0,,1", [0]),
        ("", []),
        ("-1", []),
        ("abc", []),
        ("0,0", []),  # duplicates: CUDA refuses the whole list
        ("GPU-ab12", [0]),
        ("ef56", [1]),  # UUID prefix without GPU-
        ("GPU-ef99ab78-1111-2222-3333-444455556666", [2]),
        ("GPU-ef", []),  # ambiguous prefix
        ("GPU-", []),
        ("MIG-ab12cd34-1111-2222-3333-444455556666", []),
        ("GPU-ab12,1", [0, 1]),
    ],
)
def test_parse_visible_devices(value, expected):
    assert parse_visible_devices(value, 3, UUIDS) == expected


# --- probing --------------------------------------------------------------------------------
def test_two_gpus_with_counters(fake_nvml):
    fake_nvml.add_gpu(UUID_A, energy_mj=5_000)
    fake_nvml.add_gpu(UUID_B, name="NVIDIA H100 80GB HBM3", energy_mj=7_000)
    meter = NvmlMeter(fake_nvml)
    assert meter.availability().available
    assert "gpu:1=NVIDIA H100 80GB HBM3 (energy counter)" in meter.availability().reason
    assert meter.components() == ["gpu:0", "gpu:1"]
    assert meter.nested_components() == {}
    assert [g["uuid"] for g in meter.gpus] == [UUID_A, UUID_B]
    assert meter.gpus[1]["name"] == "NVIDIA H100 80GB HBM3"  # bytes from old bindings decoded
    assert all(g["energy_counter"] for g in meter.gpus)
    provenance = meter.provenance("gpu:0")
    assert provenance.label == "measured:nvml"
    assert "total-energy counter" in provenance.detail
    assert fake_nvml.init_calls == 1


def test_read_converts_millijoules_and_bytes(fake_nvml):
    gpu = fake_nvml.add_gpu(UUID_A, energy_mj=1_000_000, used_bytes=3 * 2**30)
    meter = NvmlMeter(fake_nvml)
    assert meter.read().energy_j == {"gpu:0": 0.0}
    gpu.energy_mj += 12_345
    reading = meter.read()
    assert reading.energy_j == {"gpu:0": pytest.approx(12.345)}
    assert reading.power_w == {}
    assert reading.memory_bytes == {"gpu:0": 3 * 2**30}


def test_gpu_without_counter_is_sampled_for_power(fake_nvml):
    fake_nvml.add_gpu(UUID_A, energy_mj=None, power_mw=123_456)
    meter = NvmlMeter(fake_nvml)
    assert meter.availability().available
    assert "power sampling" in meter.availability().reason
    assert meter.read().power_w == {"gpu:0": pytest.approx(123.456)}
    assert meter.read().energy_j == {}
    assert "power samples" in meter.provenance("gpu:0").detail


@pytest.mark.parametrize(
    ("visible", "nvml_index"),
    [("1", 1), ("GPU-ef56", 1), ("ef56ab78", 1), ("0", 0)],
)
def test_visible_devices_select_and_renumber(fake_nvml, monkeypatch, visible, nvml_index):
    fake_nvml.add_gpu(UUID_A)
    fake_nvml.add_gpu(UUID_B)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    meter = NvmlMeter(fake_nvml)
    assert meter.components() == ["gpu:0"]  # the first visible GPU is cuda:0
    assert meter.gpus[0]["nvml_index"] == nvml_index
    assert meter.gpus[0]["uuid"] == UUIDS[nvml_index]


def test_visible_devices_argument_wins_over_environment(fake_nvml, monkeypatch):
    fake_nvml.add_gpu(UUID_A)
    fake_nvml.add_gpu(UUID_B)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    meter = NvmlMeter(fake_nvml, visible_devices="1,0")
    assert [(g["component"], g["nvml_index"]) for g in meter.gpus] == [("gpu:0", 1), ("gpu:1", 0)]


@pytest.mark.parametrize("visible", ["", "7", "nonsense", "0,0"])
def test_no_visible_gpu_is_unavailable(fake_nvml, monkeypatch, visible):
    fake_nvml.add_gpu(UUID_A)
    fake_nvml.add_gpu(UUID_B)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    meter = NvmlMeter(fake_nvml)
    assert not meter.availability().available
    assert "no GPU visible" in meter.availability().reason
    assert meter.components() == []
    assert fake_nvml.shutdown_calls == 1  # NVML is not left initialized
    with pytest.raises(MeterError, match="CUDA_VISIBLE_DEVICES"):
        NvmlMeter(fake_nvml, required=True)


def test_no_gpu_at_all(fake_nvml):
    meter = NvmlMeter(fake_nvml)
    assert not meter.availability().available
    assert meter.availability().reason == "NVML found no GPU"


def test_init_failure_auto_is_unavailable(broken_nvml):
    meter = NvmlMeter(broken_nvml)
    assert not meter.availability().available
    assert "NVML could not start" in meter.availability().reason
    assert "Driver Not Loaded" in meter.availability().reason
    meter.close()
    assert broken_nvml.shutdown_calls == 0  # never initialized, nothing to shut down


def test_init_failure_when_requested_raises(broken_nvml):
    with pytest.raises(MeterError, match="Driver Not Loaded"):
        NvmlMeter(broken_nvml, required=True)


def test_query_failure_after_init_shuts_nvml_down(fake_nvml, monkeypatch):
    fake_nvml.add_gpu(UUID_A)

    def fail(handle):
        raise fake_nvml.NVMLError("GPU is lost")

    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetUUID", fail)
    meter = NvmlMeter(fake_nvml)
    assert not meter.availability().available
    assert "GPU is lost" in meter.availability().reason
    assert fake_nvml.shutdown_calls == 1


def test_close_calls_shutdown_once(fake_nvml):
    fake_nvml.add_gpu(UUID_A)
    meter = NvmlMeter(fake_nvml)
    meter.close()
    meter.close()
    assert fake_nvml.shutdown_calls == 1


# --- through the monitor --------------------------------------------------------------------
def test_monitor_window_energy_is_the_counter_delta(fake_nvml):
    gpu0 = fake_nvml.add_gpu(UUID_A, energy_mj=10_000_000)
    gpu1 = fake_nvml.add_gpu(UUID_B, energy_mj=20_000_000)
    monitor = EnergyMonitor(MonitorConfig(sample_hz=50), meters=[NvmlMeter(fake_nvml)], sync=None)
    with monitor:
        monitor.begin_window("w")
        gpu0.energy_mj += 42_500
        gpu1.energy_mj += 1_000
        m = monitor.end_window("w")
    assert m.component("gpu:0").energy_j == pytest.approx(42.5)
    assert m.component("gpu:1").energy_j == pytest.approx(1.0)
    assert m.total_energy_j == pytest.approx(43.5)
    assert m.energy_j_by_kind()["gpu"] == pytest.approx(43.5)
    assert m.component("gpu:0").provenance.label == "measured:nvml"
    assert fake_nvml.shutdown_calls == 1  # closing the monitor closes its meters


def test_monitor_integrates_power_without_counter(fake_nvml):
    fake_nvml.add_gpu(UUID_A, energy_mj=None, power_mw=100_000)  # constant 100 W
    with (
        EnergyMonitor(
            MonitorConfig(sample_hz=20), meters=[NvmlMeter(fake_nvml)], sync=None
        ) as monitor,
        monitor.window("w") as w,
    ):
        time.sleep(0.5)
    m = w.measurement
    gpu = m.component("gpu:0")
    assert gpu.energy_j == pytest.approx(100.0 * m.duration_s, rel=1e-6)
    assert gpu.energy_j == pytest.approx(50.0, rel=0.15)
    assert gpu.avg_power_w == pytest.approx(100.0)
    assert gpu.peak_power_w == pytest.approx(100.0)
    assert m.peak_power_w == pytest.approx(100.0)
    assert "power samples" in gpu.provenance.detail
    assert m.samples >= 3


def test_monitor_tracks_peak_gpu_memory_per_window(fake_nvml):
    gpu = fake_nvml.add_gpu(UUID_A, used_bytes=1 * 2**30)
    with EnergyMonitor(
        MonitorConfig(sample_hz=50), meters=[NvmlMeter(fake_nvml)], sync=None
    ) as monitor:
        with monitor.window("quiet") as quiet:
            time.sleep(0.1)
        with monitor.window("spike") as spike:
            gpu.used_bytes = 5 * 2**30
            time.sleep(0.3)
            gpu.used_bytes = 2 * 2**30
    assert quiet.measurement.peak_gpu_memory_bytes == {"gpu:0": 1 * 2**30}
    assert spike.measurement.peak_gpu_memory_bytes == {"gpu:0": 5 * 2**30}
