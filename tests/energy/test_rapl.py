"""RAPL over fake powercap sysfs trees: discovery, unwrapping, permissions, roots, the monitor."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from wattwise.energy import rapl
from wattwise.energy.base import Measurement
from wattwise.energy.meters import MeterSettings, create_meters
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.rapl import PERMISSION_FIX, RaplMeter, discover_zones
from wattwise.errors import ConfigError, MeterError, MeterPermissionError, WattwiseError


def _deny_energy_reads(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Make every ``energy_uj`` under ``root`` unreadable (as since Linux 5.10 for non-root).

    Tests may run as root, where ``chmod 000`` does not deny reads, so the read is patched.
    """
    real_read_text = Path.read_text

    def read_text(self: Path, *args, **kwargs):
        if self.name == "energy_uj" and root in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


# --- discovery ------------------------------------------------------------------------------
def test_one_socket_reports_package_and_dram_with_core_uncore_nested(powercap):
    powercap.one_socket()
    meter = RaplMeter(powercap.root)
    assert meter.availability().available
    assert meter.components() == ["cpu:0", "dram:0"]
    assert meter.nested_components() == {"cpu:0/core": "cpu:0", "cpu:0/uncore": "cpu:0"}
    assert meter.provenance("cpu:0").label == "measured:rapl"
    assert "intel-rapl:0" in meter.provenance("cpu:0").detail
    assert meter.provenance("dram:0").label == "measured:rapl"


def test_two_sockets_and_psys(powercap):
    powercap.two_sockets()
    meter = RaplMeter(powercap.root)
    assert sorted(meter.components()) == ["cpu:0", "cpu:1", "dram:0", "dram:1"]
    nested = meter.nested_components()
    assert nested["cpu:0/core"] == "cpu:0"
    assert nested["cpu:1/core"] == "cpu:1"
    # psys contains the packages and more: informational, never a top-level component.
    psys = [c for c in nested if c.startswith("psys")]
    assert len(psys) == 1
    assert psys[0] not in meter.components()


def test_zone_socket_comes_from_package_name(powercap):
    powercap.two_sockets(psys=False)
    zones = {z.component: z for z in discover_zones(powercap.root)}
    assert zones["dram:1"].path.name == "intel-rapl:1:1"
    assert zones["dram:1"].socket == 1
    assert zones["cpu:1/core"].parent == "cpu:1"
    assert zones["dram:1"].parent is None


def test_mmio_duplicate_of_the_package_is_ignored(powercap):
    """Client CPUs also expose package-0 as intel-rapl-mmio:0; counting it would double cpu:0."""
    powercap.one_socket(dram=False)
    mmio = powercap.root / "intel-rapl-mmio:0"
    mmio.mkdir()
    (mmio / "name").write_text("package-0\n")
    (mmio / "energy_uj").write_text("5\n")
    (mmio / "max_energy_range_uj").write_text("262143328850\n")
    meter = RaplMeter(powercap.root)
    assert meter.components() == ["cpu:0"]
    assert all(z.path.name.startswith("intel-rapl:") for z in meter.zones)


def test_read_is_cumulative_since_construction(powercap):
    powercap.one_socket()
    meter = RaplMeter(powercap.root)
    first = meter.read()
    assert first.energy_j == {"cpu:0": 0.0, "cpu:0/core": 0.0, "cpu:0/uncore": 0.0, "dram:0": 0.0}
    powercap.add_energy("intel-rapl:0", 2_500_000)
    powercap.add_energy("intel-rapl:0:2", 750_000)
    second = meter.read()
    assert second.energy_j["cpu:0"] == pytest.approx(2.5)
    assert second.energy_j["dram:0"] == pytest.approx(0.75)
    assert second.energy_j["cpu:0/core"] == 0.0
    assert second.power_w == {}


def test_counter_wraparound_is_unwrapped(powercap):
    max_range = 1_000_000
    powercap.add_zone("intel-rapl:0", "package-0", 999_000, max_range)
    meter = RaplMeter(powercap.root)
    powercap.set_energy("intel-rapl:0", 500)  # wrapped: 999000 -> 1000000 == 0 -> 500
    assert meter.read().energy_j["cpu:0"] == pytest.approx((500 - 999_000 + max_range) / 1e6)
    powercap.set_energy("intel-rapl:0", 2_500)  # and counting goes on normally after a wrap
    assert meter.read().energy_j["cpu:0"] == pytest.approx((1_500 + 2_000) / 1e6)


def test_corrupt_counter_makes_rapl_unavailable(powercap):
    powercap.one_socket()
    (powercap.root / "intel-rapl:0" / "energy_uj").write_text("garbage\n")
    availability = RaplMeter(powercap.root).availability()
    assert not availability.available
    assert "counter" in availability.reason


# --- permissions ----------------------------------------------------------------------------
def test_permission_denied_auto_is_unavailable_with_the_fix(powercap, monkeypatch):
    powercap.one_socket()
    _deny_energy_reads(monkeypatch, powercap.root)
    availability = RaplMeter(powercap.root).availability()
    assert not availability.available
    assert "permission denied" in availability.reason.lower()
    assert "energy_uj" in availability.reason
    assert PERMISSION_FIX in availability.reason
    assert "chmod -R a+r" in availability.reason


def test_permission_denied_when_requested_raises(powercap, monkeypatch):
    powercap.one_socket()
    _deny_energy_reads(monkeypatch, powercap.root)
    with pytest.raises(MeterPermissionError) as info:
        RaplMeter(powercap.root, required=True)
    assert isinstance(info.value, PermissionError)
    assert isinstance(info.value, MeterError)
    assert isinstance(info.value, WattwiseError)
    assert "chmod" in str(info.value)


def test_permission_denied_through_create_meters(powercap, monkeypatch, broken_nvml, no_smi):
    powercap.one_socket()
    _deny_energy_reads(monkeypatch, powercap.root)
    settings = MeterSettings(powercap_root=str(powercap.root), nvml=broken_nvml)
    with pytest.raises(MeterPermissionError):
        create_meters(["rapl"], settings)
    # Auto mode degrades to the labelled estimate, and keeps the reason with the fix.
    auto = create_meters(None, settings)
    assert [m.name for m in auto.meters] == ["cpu-estimate", "dram-estimate"]
    assert not auto.probed["rapl"].available
    assert PERMISSION_FIX in auto.probed["rapl"].reason
    auto.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_with_chmod(powercap):
    powercap.one_socket()
    counter = powercap.root / "intel-rapl:0" / "energy_uj"
    counter.chmod(0)
    try:
        availability = RaplMeter(powercap.root).availability()
        assert not availability.available
        assert PERMISSION_FIX in availability.reason
        with pytest.raises(MeterPermissionError):
            RaplMeter(powercap.root, required=True)
    finally:
        counter.chmod(0o644)


# --- roots ----------------------------------------------------------------------------------
def test_environment_root_is_honoured(powercap, monkeypatch):
    powercap.one_socket()
    monkeypatch.setenv("WATTWISE_POWERCAP_ROOT", str(powercap.root))
    meter = RaplMeter()
    assert meter.root == powercap.root
    assert meter.availability().available
    assert meter.components() == ["cpu:0", "dram:0"]


def test_argument_root_wins_over_environment(powercap, tmp_path, monkeypatch):
    powercap.one_socket()
    monkeypatch.setenv("WATTWISE_POWERCAP_ROOT", str(tmp_path / "elsewhere"))
    assert RaplMeter(powercap.root).root == powercap.root


@pytest.mark.parametrize("required", [False, True])
def test_chosen_root_that_does_not_exist_is_a_config_error(tmp_path, required):
    with pytest.raises(ConfigError, match="does not exist"):
        RaplMeter(tmp_path / "missing", required=required)


def test_environment_root_that_does_not_exist_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTWISE_POWERCAP_ROOT", str(tmp_path / "missing"))
    with pytest.raises(ConfigError):
        RaplMeter()


def test_chosen_root_that_is_a_file_is_a_config_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a directory")
    with pytest.raises(ConfigError, match="not a readable directory"):
        RaplMeter(path)


def test_default_root_missing_is_unavailable_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rapl, "DEFAULT_POWERCAP_ROOT", tmp_path / "no-powercap")
    availability = RaplMeter().availability()
    assert not availability.available
    assert "no powercap interface" in availability.reason
    with pytest.raises(MeterError):
        RaplMeter(required=True)


def test_root_without_zones(tmp_path):
    empty = tmp_path / "powercap"
    empty.mkdir()
    meter = RaplMeter(empty)
    assert not meter.availability().available
    assert "no intel-rapl zones" in meter.availability().reason
    assert meter.components() == []
    with pytest.raises(MeterError) as info:
        RaplMeter(empty, required=True)
    assert not isinstance(info.value, MeterPermissionError)


# --- through the monitor --------------------------------------------------------------------
def _rapl_monitor(root: Path, sample_hz: float = 50.0) -> EnergyMonitor:
    config = MonitorConfig(
        meters=("rapl",),
        sample_hz=sample_hz,
        meter_settings=MeterSettings(powercap_root=str(root)),
    )
    return EnergyMonitor(config, sync=None)


def test_monitor_reports_exact_joules_per_component(powercap):
    powercap.two_sockets()
    with _rapl_monitor(powercap.root) as monitor:
        monitor.begin_window("w")
        powercap.add_energy("intel-rapl:0", 3_000_000)
        powercap.add_energy("intel-rapl:0:0", 2_500_000)  # core: inside package-0 already
        powercap.add_energy("intel-rapl:0:1", 1_000_000)
        powercap.add_energy("intel-rapl:1", 5_000_000)
        powercap.add_energy("intel-rapl:1:0", 4_000_000)
        powercap.add_energy("intel-rapl:1:1", 2_000_000)
        powercap.add_energy("intel-rapl:2", 20_000_000)  # psys: contains everything
        m = monitor.end_window("w")
    energies = {c.component: c.energy_j for c in m.components}
    assert energies["cpu:0"] == pytest.approx(3.0)
    assert energies["cpu:1"] == pytest.approx(5.0)
    assert energies["dram:0"] == pytest.approx(1.0)
    assert energies["dram:1"] == pytest.approx(2.0)
    assert energies["cpu:0/core"] == pytest.approx(2.5)
    assert energies["cpu:1/core"] == pytest.approx(4.0)
    assert m.total_energy_j == pytest.approx(11.0)  # neither core nor psys is added
    assert m.energy_j_by_kind() == {
        "cpu": pytest.approx(8.0),
        "dram": pytest.approx(3.0),
        "gpu": None,
    }
    assert m.component("cpu:0/core").nested_in == "cpu:0"
    assert m.component("cpu:0").nested_in is None
    for name in ("cpu:0", "cpu:1", "dram:0", "dram:1"):
        assert m.component(name).provenance.label == "measured:rapl"
    assert m.total_provenance == "measured"
    assert m.carbon is not None
    assert m.carbon.co2e_g == pytest.approx(11.0 / 3.6e6 * m.carbon.intensity_g_per_kwh)


def test_monitor_unwraps_a_counter_that_wraps_inside_the_window(powercap):
    max_range = 10_000_000
    powercap.add_zone("intel-rapl:0", "package-0", 9_000_000, max_range)
    with _rapl_monitor(powercap.root, sample_hz=0.1) as monitor:
        monitor.begin_window("w")
        powercap.set_energy("intel-rapl:0", 9_900_000)
        monitor.begin_window("inner")
        powercap.set_energy("intel-rapl:0", 400_000)  # wrapped
        inner = monitor.end_window("inner")
        outer = monitor.end_window("w")
    assert inner.component("cpu:0").energy_j == pytest.approx(0.5)
    assert outer.component("cpu:0").energy_j == pytest.approx(1.4)


def test_monitor_without_dram_zone_uses_the_dram_estimate_in_auto_mode(
    powercap, broken_nvml, no_smi
):
    powercap.one_socket(dram=False)
    settings = MeterSettings(powercap_root=str(powercap.root), nvml=broken_nvml)
    meter_set = create_meters(None, settings)
    assert [m.name for m in meter_set.meters] == ["rapl", "dram-estimate"]
    with EnergyMonitor(meters=meter_set, sync=None) as monitor, monitor.window("w") as w:
        powercap.add_energy("intel-rapl:0", 1_000_000)
    m = w.measurement
    assert m.component("cpu:0").energy_j == pytest.approx(1.0)
    assert m.component("dram").provenance.label == "estimated:dram-rss"
    assert m.total_provenance == "mixed"
    assert m.component("gpu").energy_j is None


# --- implausible deltas: restarts, double wraps, the sampling interval ----------------------
class _Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_counter_restart_is_not_read_as_a_wrap(powercap):
    """A counter that restarts (driver reload, suspend/resume) goes down by far less than a
    wrap; unwrapping it as one read 262 kJ for a 3 s sleep."""
    powercap.add_zone("intel-rapl:0", "package-0", 100_000_000)  # 100 J
    clock = _Clock()
    meter = RaplMeter(powercap.root, clock=clock)
    clock.t += 3.0
    powercap.set_energy("intel-rapl:0", 500_000)  # restarted from 0; 0.5 J since
    reading = meter.read()
    assert reading.energy_j["cpu:0"] == pytest.approx(0.5)
    assert "restart" in reading.suspect["cpu:0"]
    assert "1000 W" in reading.suspect["cpu:0"]  # the bound it broke, and where it came from
    clock.t += 0.1  # counting goes on normally afterwards, without a flag
    powercap.add_energy("intel-rapl:0", 2_000_000)
    again = meter.read()
    assert again.energy_j["cpu:0"] == pytest.approx(2.5)
    assert again.suspect == {}


def test_a_window_across_a_counter_restart_is_measured_but_suspect(powercap):
    powercap.one_socket()  # package-0 at 1 J
    with _rapl_monitor(powercap.root) as monitor:
        monitor.begin_window("w")
        powercap.set_energy("intel-rapl:0", 300_000)  # back to 0.3 J: a restart
        m = monitor.end_window("w")
    cpu = m.component("cpu:0")
    assert cpu.energy_j == pytest.approx(0.3)  # not 262 kJ
    assert cpu.provenance.kind == "measured"
    assert cpu.provenance.label == "measured:rapl"
    assert "restart" in cpu.provenance.suspect
    assert "restart" in cpu.provenance.detail  # shown wherever details are (CLI, report)
    assert m.component("dram:0").provenance.suspect == ""
    data = json.loads(json.dumps(m.to_dict()))
    by_name = {c["component"]: c for c in data["components"]}
    assert "restart" in by_name["cpu:0"]["provenance"]["suspect"]
    assert by_name["dram:0"]["provenance"]["suspect"] == ""
    assert len(data["suspect"]) == 1 and data["suspect"][0].startswith("cpu:0: ")
    assert Measurement.from_dict(data) == m


def test_power_bound_comes_from_the_zone_constraints_else_a_default(powercap):
    powercap.add_zone("intel-rapl:0", "package-0", max_power_uw=125_000_000)
    powercap.add_zone("intel-rapl:0:2", "dram")
    zones = {z.component: z for z in discover_zones(powercap.root)}
    assert zones["cpu:0"].max_power_w == pytest.approx(4 * 125.0)
    assert "constraint" in zones["cpu:0"].max_power_source
    assert zones["dram:0"].max_power_w == rapl.DEFAULT_MAX_POWER_W == 1000.0
    assert "default" in zones["dram:0"].max_power_source


def test_poll_interval_is_short_enough_that_a_counter_cannot_wrap_twice(powercap):
    # A 60 J counter, bound 4 x 25 W = 100 W: it can wrap every 0.6 s, so reads every 0.3 s.
    powercap.add_zone("intel-rapl:0", "package-0", 0, 60_000_000, max_power_uw=25_000_000)
    powercap.add_zone("intel-rapl:1", "package-1")  # 262 kJ at 1000 W: 131 s would do
    assert RaplMeter(powercap.root).max_read_interval_s == pytest.approx(0.3)
    config = MonitorConfig(
        meters=("rapl",),
        sample_hz=1,
        meter_settings=MeterSettings(powercap_root=str(powercap.root)),
    )
    with EnergyMonitor(config, sync=None) as monitor:
        assert monitor.sample_interval_s == pytest.approx(0.3)
    with EnergyMonitor(MonitorConfig(sample_hz=10), meters=[RaplMeter(powercap.root)]) as fast:
        assert fast.sample_interval_s == pytest.approx(0.1)  # a faster rate is kept

    # At that interval a counter near the bound wraps every other read, never twice unseen.
    clock = _Clock()
    meter = RaplMeter(powercap.root, clock=clock)
    raw = total = 0
    for _ in range(20):
        clock.t += 0.3
        step = 27_000_000  # 90 W for 0.3 s
        raw, total = (raw + step) % 60_000_000, total + step
        powercap.set_energy("intel-rapl:0", raw)
        reading = meter.read()
        assert reading.suspect == {}
    assert reading.energy_j["cpu:0"] == pytest.approx(total / 1e6)  # 540 J: nine wraps


def test_reads_too_far_apart_to_rule_out_a_double_wrap_are_flagged(powercap):
    powercap.add_zone("intel-rapl:0", "package-0", 0, 60_000_000, max_power_uw=25_000_000)
    clock = _Clock()
    meter = RaplMeter(powercap.root, clock=clock)
    clock.t += 1.5  # up to 150 J at 100 W: two wraps and 30 J would read as 30 J
    powercap.set_energy("intel-rapl:0", 30_000_000)
    reading = meter.read()
    assert reading.energy_j["cpu:0"] == pytest.approx(30.0)  # what the counter shows...
    assert "more than once" in reading.suspect["cpu:0"]  # ...flagged


@pytest.mark.parametrize(
    ("range_uj", "max_power_uw", "dt_s", "raw_uj", "why"),
    [
        (60_000_000_000, 25_000_000, 1.0, 5_000_000_000, "above the 100 W bound"),  # 5 kJ in 1 s
        (60_000_000, None, 0.05, 40_000_000, "more than half"),  # 800 W, but close to a wrap
    ],
)
def test_implausible_rises_are_flagged(powercap, range_uj, max_power_uw, dt_s, raw_uj, why):
    powercap.add_zone("intel-rapl:0", "package-0", 0, range_uj, max_power_uw=max_power_uw)
    clock = _Clock()
    meter = RaplMeter(powercap.root, clock=clock)
    clock.t += dt_s
    powercap.set_energy("intel-rapl:0", raw_uj)
    reading = meter.read()
    assert reading.energy_j["cpu:0"] == pytest.approx(raw_uj / 1e6)
    assert why in reading.suspect["cpu:0"]
