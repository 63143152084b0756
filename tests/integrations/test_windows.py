"""What both training callbacks share: the windows of a fit (a validation pauses the epoch, whose
measurement adds up its parts), their metrics and the table; and that importing the integrations
imports no framework."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from rich.console import Console

from tests.energy.conftest import CounterMeter
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.integrations._windows import FitWindows, energy_table, window_metrics

QUIET = MonitorConfig(sample_hz=0.1)  # no background sample during a short test


def _windows(counter: CounterMeter) -> FitWindows:
    return FitWindows(EnergyMonitor(QUIET, meters=[counter], sync=None))


def test_a_validation_inside_an_epoch_is_not_part_of_its_training():
    counter = CounterMeter(cpu=0.0)
    windows = _windows(counter)
    windows.begin_fit()
    windows.begin_epoch(1)
    counter.energy_j["cpu"] = 2.0  # training
    windows.begin_validation(1)
    counter.energy_j["cpu"] = 7.0  # validation: 5 J
    val = windows.end_validation()
    counter.energy_j["cpu"] = 8.0  # training again: 1 J
    epoch = windows.end_epoch()
    fit = windows.end_fit()
    assert epoch is not None and val is not None
    assert epoch.name == "train/epoch1" and val.name == "validation/epoch1"
    assert epoch.total_energy_j == pytest.approx(3.0)
    assert val.total_energy_j == pytest.approx(5.0)
    assert fit.total_energy_j == pytest.approx(8.0)
    assert epoch.duration_s + val.duration_s <= fit.duration_s
    assert epoch.component("cpu").provenance.label == "measured:fake-counter"
    assert epoch.avg_power_w == pytest.approx(3.0 / epoch.duration_s)
    assert windows.epochs == [epoch] and windows.validations == [val] and windows.fit is fit


def test_second_validation_of_an_epoch_gets_its_own_name():
    windows = _windows(CounterMeter(cpu=0.0))
    windows.begin_fit()
    windows.begin_epoch(1)
    for _ in range(2):
        windows.begin_validation(1)
        windows.end_validation()
    windows.end_epoch()
    windows.end_fit()
    assert [m.name for m in windows.validations] == ["validation/epoch1", "validation/epoch1.2"]


def test_abort_closes_every_window_and_keeps_what_they_measured():
    counter = CounterMeter(cpu=0.0)
    monitor = EnergyMonitor(QUIET, meters=[counter], sync=None)
    windows = FitWindows(monitor)
    windows.begin_fit()
    windows.begin_epoch(1)
    windows.begin_validation(1)
    counter.energy_j["cpu"] = 4.0
    windows.abort()
    for name in ("fit", "train/epoch1", "validation/epoch1"):
        assert monitor.progress(name) is None
    assert windows.fit is not None and windows.fit.total_energy_j == pytest.approx(4.0)
    assert [m.name for m in windows.epochs] == ["train/epoch1"]
    assert [m.name for m in windows.validations] == ["validation/epoch1"]
    windows.abort()  # nothing open: nothing to do
    monitor.begin_window("fit")  # the monitor passed in is still usable
    monitor.end_window("fit")
    monitor.close()


def test_its_own_monitor_is_created_per_fit_and_closed_after_it():
    windows = FitWindows(config=QUIET)
    windows.begin_fit()
    first = windows.monitor
    windows.end_fit()
    assert windows.monitor is None
    windows.begin_fit()
    assert windows.monitor is not None and windows.monitor is not first
    windows.abort()
    assert windows.monitor is None


def test_metrics_carry_units_in_names_and_the_measured_share():
    counter = CounterMeter(cpu=0.0, gpu=0.0)
    counter.kind = "measured"
    windows = _windows(counter)
    windows.begin_fit()
    counter.energy_j.update(cpu=3.0, gpu=1.0)
    fit = windows.end_fit()
    metrics = window_metrics("fit", fit)
    assert metrics["energy/fit_j"] == pytest.approx(4.0)
    assert metrics["energy/fit_duration_s"] == pytest.approx(fit.duration_s)
    assert metrics["energy/fit_mean_power_w"] == pytest.approx(4.0 / fit.duration_s)
    assert metrics["energy/fit_measured_share"] == 1.0
    assert metrics["energy/fit_peak_rss_bytes"] > 0
    assert "energy/fit_peak_power_w" not in metrics  # no sample: no peak, not a zero
    assert all(isinstance(v, float) for v in metrics.values())


def test_the_table_fits_80_columns_and_says_how_the_numbers_were_made():
    counter = CounterMeter(cpu=0.0)
    counter.kind = "estimated"
    windows = _windows(counter)
    windows.begin_fit()
    for epoch in (1, 2):
        windows.begin_epoch(epoch)
        counter.energy_j["cpu"] += 1500.0
        windows.begin_validation(epoch)
        windows.end_validation()
        windows.end_epoch()
    windows.end_fit()
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(energy_table(windows))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for expected in (
        "train/epoch2",
        "validation/epoch1",
        "fit",
        "1.500 kJ",
        "3.000 kJ",
        "estimated",
    ):
        assert expected in text
    assert "fake estimate of cpu" in text  # the provenance detail


def test_importing_the_integrations_imports_no_framework():
    check = (
        "import json, sys\n"
        "import wattwise, wattwise.integrations, wattwise.integrations._windows\n"
        "print(json.dumps([m for m in ('lightning', 'pytorch_lightning', 'transformers', "
        "'torch') if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_a_cancelled_validation_is_not_kept_and_its_name_is_given_again():
    counter = CounterMeter(cpu=0.0)
    windows = _windows(counter)
    windows.begin_fit()
    windows.begin_epoch(1)
    counter.energy_j["cpu"] = 1.0
    windows.begin_validation(1)
    counter.energy_j["cpu"] = 3.0  # counted nowhere but in the fit
    windows.cancel_validation()
    windows.begin_validation(1)
    windows.end_validation()
    epoch = windows.end_epoch()
    windows.end_fit()
    assert [m.name for m in windows.validations] == ["validation/epoch1"]
    assert epoch is not None and epoch.total_energy_j == pytest.approx(1.0)
