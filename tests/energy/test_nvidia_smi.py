"""nvidia-smi: CSV parsing, and the meter over a fake ``nvidia-smi`` script first on PATH."""

from __future__ import annotations

import time

import psutil
import pytest

from wattwise.energy.meters import MeterSettings, create_meters
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.nvidia_smi import QUERY_FIELDS, NvidiaSmiMeter, SmiRow, parse_query_output
from wattwise.errors import MeterError

MIB = 2**20


# --- parse_query_output ---------------------------------------------------------------------
def test_parse_noheader_nounits():
    rows = parse_query_output(
        "0, GPU-0a1b2c3d-1111, NVIDIA A100-SXM4-40GB, 71.23, 1024, 40960\n"
        "1, GPU-9f8e7d6c-2222, Tesla V100-SXM2-16GB, 40.00, 0, 16160\n"
    )
    assert rows == [
        SmiRow(0, "GPU-0a1b2c3d-1111", "NVIDIA A100-SXM4-40GB", 71.23, 1024 * MIB, 40960 * MIB),
        SmiRow(1, "GPU-9f8e7d6c-2222", "Tesla V100-SXM2-16GB", 40.0, 0, 16160 * MIB),
    ]


def test_parse_with_header_units_blank_lines_and_na():
    output = (
        "index, uuid, name, power.draw [W], memory.used [MiB], memory.total [MiB]\n"
        "\n"
        "0, GPU-aaaa, NVIDIA GeForce RTX 3090, 351.07 W, 23000 MiB, 24576 MiB\n"
        "   \n"
        "1, GPU-bbbb, NVIDIA T4, [N/A], [N/A], 15360 MiB\n"
        "2, GPU-cccc, Quadro K620, [Not Supported], 12 MiB, [Not Supported]\n"
    )
    rows = parse_query_output(output)
    assert [r.index for r in rows] == [0, 1, 2]
    assert rows[0].power_w == pytest.approx(351.07)
    assert rows[0].memory_used_bytes == 23000 * MIB
    assert rows[0].memory_total_bytes == 24576 * MIB
    assert rows[0].name == "NVIDIA GeForce RTX 3090"
    assert rows[1].power_w is None
    assert rows[1].memory_used_bytes is None
    assert rows[1].memory_total_bytes == 15360 * MIB
    assert rows[2].power_w is None
    assert rows[2].memory_used_bytes == 12 * MIB
    assert rows[2].memory_total_bytes is None


def test_parse_empty_output():
    assert parse_query_output("") == []
    assert parse_query_output("\n\n") == []


@pytest.mark.parametrize(
    "line",
    [
        "No devices were found",
        "0, GPU-aaaa, NVIDIA A100",  # too few fields
        "zero, GPU-aaaa, NVIDIA A100, 71.2, 1024, 40960",  # index is not a number
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    ],
)
def test_parse_malformed_line_raises(line):
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_query_output(f"0, GPU-aaaa, NVIDIA A100, 71.2, 1024, 40960\n{line}\n")


# --- the meter over a fake program ----------------------------------------------------------
def test_meter_over_fake_program(fake_smi):
    meter = NvidiaSmiMeter()
    assert meter.executable == str(fake_smi.path)
    assert meter.availability().available
    assert "gpu:0=NVIDIA A100-SXM4-40GB (power sampling)" in meter.availability().reason
    assert meter.components() == ["gpu:0", "gpu:1"]
    assert meter.nested_components() == {}
    assert meter.provenance("gpu:1").label == "measured:nvidia-smi"
    assert "power.draw samples" in meter.provenance("gpu:1").detail
    reading = meter.read()
    assert reading.power_w == {"gpu:0": pytest.approx(71.23), "gpu:1": pytest.approx(55.5)}
    assert reading.memory_bytes == {"gpu:0": 1024 * MIB, "gpu:1": 2048 * MIB}
    assert reading.energy_j == {}
    # The program was asked for exactly the fields the parser expects, without header/units.
    call = fake_smi.calls()[-1]
    assert f"--query-gpu={','.join(QUERY_FIELDS)}" in call
    assert "--format=csv,noheader,nounits" in call


def test_meter_reads_follow_the_program(fake_smi):
    meter = NvidiaSmiMeter()
    fake_smi.write(
        "0, GPU-0a1b2c3d-1111-2222-3333-444455556666, NVIDIA A100-SXM4-40GB, 250.5, 30000, 40960\n"
        "1, GPU-9f8e7d6c-1111-2222-3333-444455556666, NVIDIA A100-SXM4-40GB, [N/A], [N/A], 40960\n"
    )
    reading = meter.read()
    assert reading.power_w == {"gpu:0": pytest.approx(250.5)}  # gpu:1 has no value this time
    assert reading.memory_bytes == {"gpu:0": 30000 * MIB}


def test_visible_devices_select_gpus(fake_smi):
    meter = NvidiaSmiMeter(visible_devices="1")
    assert meter.components() == ["gpu:0"]
    assert meter.read().power_w == {"gpu:0": pytest.approx(55.5)}
    by_uuid = NvidiaSmiMeter(visible_devices="GPU-0a1b")
    assert by_uuid.read().power_w == {"gpu:0": pytest.approx(71.23)}
    none = NvidiaSmiMeter(visible_devices="")
    assert not none.availability().available


def test_gpu_without_power_reading_is_skipped(fake_smi):
    fake_smi.write(
        "0, GPU-aaaa, NVIDIA T4, [N/A], 100, 15360\n1, GPU-bbbb, NVIDIA T4, 30.0, 200, 15360\n"
    )
    meter = NvidiaSmiMeter()
    assert meter.components() == ["gpu:1"]  # keeps its CUDA index


def test_failing_program_is_unavailable_with_reason(fake_smi):
    fake_smi.write("", exit_code=9, stderr="NVIDIA-SMI has failed: driver not loaded\n")
    meter = NvidiaSmiMeter()
    assert not meter.availability().available
    reason = meter.availability().reason
    assert "exited 9" in reason
    assert "driver not loaded" in reason
    with pytest.raises(MeterError, match="exited 9"):
        NvidiaSmiMeter(required=True)


def test_garbage_output_is_unavailable(fake_smi):
    fake_smi.write("No devices were found\n")
    meter = NvidiaSmiMeter()
    assert not meter.availability().available
    assert "nvidia-smi failed" in meter.availability().reason


def test_no_program_on_path(no_smi):
    meter = NvidiaSmiMeter()
    assert not meter.availability().available
    assert meter.availability().reason == "nvidia-smi is not on PATH"
    with pytest.raises(MeterError, match="not on PATH"):
        NvidiaSmiMeter(required=True)


def test_explicit_executable_path(fake_smi, no_smi):
    meter = NvidiaSmiMeter(str(fake_smi.path))
    assert meter.availability().available


# --- selection and measuring ----------------------------------------------------------------
def test_auto_picks_nvidia_smi_when_nvml_cannot_start(fake_smi, broken_nvml, tmp_path):
    empty = tmp_path / "powercap"
    empty.mkdir()
    meter_set = create_meters(None, MeterSettings(powercap_root=str(empty), nvml=broken_nvml))
    names = [m.name for m in meter_set.meters]
    assert names == ["cpu-estimate", "dram-estimate", "nvidia-smi"]
    assert not meter_set.probed["nvml"].available
    assert meter_set.probed["nvidia-smi"].available
    assert "gpu" not in meter_set.unavailable
    meter_set.close()


def test_auto_without_any_gpu_meter_reports_both_reasons(no_smi, broken_nvml, tmp_path):
    empty = tmp_path / "powercap"
    empty.mkdir()
    meter_set = create_meters(None, MeterSettings(powercap_root=str(empty), nvml=broken_nvml))
    reason = meter_set.unavailable["gpu"]
    assert "Driver Not Loaded" in reason
    assert "nvidia-smi is not on PATH" in reason


def test_monitor_integrates_nvidia_smi_power(fake_smi):
    meter = NvidiaSmiMeter(visible_devices="0")
    with (
        EnergyMonitor(MonitorConfig(sample_hz=10), meters=[meter], sync=None) as monitor,
        monitor.window("w") as w,
    ):
        time.sleep(0.3)
    m = w.measurement
    assert m.component("gpu:0").energy_j == pytest.approx(71.23 * m.duration_s, rel=1e-6)
    assert m.component("gpu:0").provenance.label == "measured:nvidia-smi"
    assert m.peak_gpu_memory_bytes == {"gpu:0": 1024 * MIB}


def test_a_hanging_nvidia_smi_is_killed_and_the_gpu_unavailable_for_the_window(fake_smi):
    answers = (fake_smi.dir / "output.csv").read_text()
    meter = NvidiaSmiMeter(visible_devices="0", timeout_s=0.2)
    with EnergyMonitor(MonitorConfig(sample_hz=20), meters=[meter], sync=None) as monitor:
        monitor.begin_window("w")
        fake_smi.hang()  # the sampler's next query never answers
        time.sleep(0.5)
        fake_smi.write(answers)  # it answers again before the window ends: too late
        start = time.perf_counter()
        m = monitor.end_window("w")
        assert time.perf_counter() - start < 1.0
    gpu = m.component("gpu:0")
    assert gpu.energy_j is None
    assert gpu.provenance.kind == "unavailable"
    assert "nvidia-smi: query timed out after 0.2 s" in gpu.provenance.detail
    sleeping = [p for p in psutil.Process().children(recursive=True) if p.name() == "sleep"]
    assert sleeping == []  # the hanging program was killed, not left behind
