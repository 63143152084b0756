"""The Prometheus exporter: a scrape over HTTP reads the open window's energy so far, with its
provenance, the latest sampled power and the peak memory; the server is gone once it is closed;
a port in use and a missing ``prometheus_client`` are one clear error each."""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.prometheus import INSTALL_HINT, serve_metrics
from wattwise.errors import ConfigError

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

FAST = MonitorConfig(sample_hz=100)
QUIET = MonitorConfig(sample_hz=0.1)  # the sampler never fires during a short test


def scrape(url: str) -> dict[str, dict[str, list]]:
    """``{family: {sample name: [(labels, value), ...]}}`` of one scrape of ``url``."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    families: dict[str, dict[str, list]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            families.setdefault(family.name, {}).setdefault(sample.name, []).append(
                (sample.labels, sample.value)
            )
    return families


def by_component(families: dict, family: str, sample: str) -> dict[str, tuple[dict, float]]:
    return {labels["component"]: (labels, value) for labels, value in families[family][sample]}


def scrape_until(url: str, done: Callable[[dict], bool], timeout_s: float = 5.0) -> dict:
    """Scrapes until ``done(families)`` (the sampler runs in its own thread)."""
    deadline = time.monotonic() + timeout_s
    while True:
        families = scrape(url)
        if done(families) or time.monotonic() > deadline:
            return families
        time.sleep(0.02)


def _energy(families: dict, component: str) -> float | None:
    samples = families.get("wattwise_energy_joules", {}).get("wattwise_energy_joules_total", [])
    values = [value for labels, value in samples if labels["component"] == component]
    return values[0] if values else None


def _up(families: dict) -> float:
    ((_, value),) = families["wattwise_up"]["wattwise_up"]
    return value


def test_a_scrape_reads_the_open_windows_energy_power_and_memory(meters):
    cpu = meters.Counter("fake-rapl", cpu=100.0)
    dram = meters.Counter("fake-dram-model", dram=10.0)
    dram.kind = "estimated"
    gpu = meters.Power("fake-gpu", **{"gpu:0": 50.0})
    gpu.memory_bytes = {"gpu:0": 3 * 2**30}
    with (
        EnergyMonitor(FAST, meters=[cpu, dram, gpu], sync=None) as monitor,
        serve_metrics(monitor, "job", port=0) as server,
    ):
        assert server.url == f"http://127.0.0.1:{server.port}/metrics" and server.port > 0
        before = scrape(server.url)
        assert _up(before) == 0.0 and "wattwise_energy_joules" not in before
        with monitor.window("job") as window:
            cpu.energy_j["cpu"] = 105.0
            dram.energy_j["dram"] = 12.5
            first = scrape_until(
                server.url, lambda f: _energy(f, "cpu") == 5.0 and _energy(f, "dram") == 2.5
            )
            cpu.energy_j["cpu"] = 112.0  # a later scrape reads the value of that moment
            later = scrape_until(server.url, lambda f: _energy(f, "cpu") == 12.0)
        after_window = scrape(server.url)
    assert window.measurement is not None

    energy = by_component(first, "wattwise_energy_joules", "wattwise_energy_joules_total")
    assert set(energy) == {"cpu", "dram", "gpu:0"}
    assert energy["cpu"] == (
        {"component": "cpu", "provenance": "measured", "source": "fake-rapl"},
        5.0,
    )
    assert energy["dram"][0]["provenance"] == "estimated"
    assert energy["dram"][0]["source"] == "fake-dram-model"
    assert energy["dram"][1] == 2.5
    # power is integrated up to the same read as the elapsed time: 50 W x elapsed exactly
    ((_, elapsed),) = first["wattwise_elapsed_seconds"]["wattwise_elapsed_seconds"]
    assert elapsed > 0
    assert energy["gpu:0"][1] == pytest.approx(50.0 * elapsed, rel=1e-9)
    # (the text format serves a counter's creation time as a gauge of its own)
    created = {
        v for _, v in first["wattwise_energy_joules_created"]["wattwise_energy_joules_created"]
    }
    assert created == {window.measurement.start_unix_s}
    assert _up(first) == 1.0

    power = by_component(first, "wattwise_power_watts", "wattwise_power_watts")
    assert power["gpu:0"][1] == 50.0
    assert {"cpu", "dram"} <= set(power)  # counters: their increase over the last interval

    memory = {
        (labels["kind"], labels["component"]): value
        for labels, value in first["wattwise_memory_bytes"]["wattwise_memory_bytes"]
    }
    assert memory[("peak_gpu", "gpu:0")] == 3 * 2**30
    assert memory[("peak_rss", "")] > 0

    # the last scrape in the window agrees with what the window measured
    assert _energy(later, "cpu") == 12.0 == window.measurement.component("cpu").energy_j
    assert _energy(later, "dram") == 2.5 == window.measurement.component("dram").energy_j
    # between windows the server answers, with nothing to report but "not up"
    assert _up(after_window) == 0.0
    assert "wattwise_energy_joules" not in after_window
    assert "wattwise_power_watts" not in after_window
    # closed: nobody listens on the port any more
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_nested_components_are_not_served_so_that_a_sum_is_the_total(meters):
    counter = meters.Counter(**{"cpu:0": 0.0, "cpu:0/core": 0.0})
    counter.nested = {"cpu:0/core": "cpu:0"}
    with (
        EnergyMonitor(QUIET, meters=[counter], sync=None) as monitor,
        serve_metrics(monitor, "w", port=0) as server,
        monitor.window("w"),
    ):
        families = scrape(server.url)
    assert set(
        by_component(families, "wattwise_energy_joules", "wattwise_energy_joules_total")
    ) == {"cpu:0"}


def test_a_scrape_reads_no_meter_and_changes_no_window(meters):
    gpu = meters.Power(**{"gpu:0": 80.0})
    with EnergyMonitor(QUIET, meters=[gpu], sync=None) as monitor:
        with serve_metrics(monitor, "w", port=0) as server, monitor.window("w") as window:
            reads = gpu.reads
            for _ in range(3):
                scrape(server.url)
            assert gpu.reads == reads
            progress = monitor.progress("w")
        assert progress is not None and progress.measurement.name == "w"
        assert progress.power_w == {}  # the sampler never ran: no sampled power yet
        assert progress.measurement.timeline is None
        assert monitor.progress("w") is None  # ended
        assert list(monitor.history) == [window.measurement]


def test_exporters_use_registries_of_their_own(meters):
    """Two exporters in one process do not clash, and the global registry stays untouched."""
    with (
        EnergyMonitor(QUIET, meters=[meters.Counter()], sync=None) as monitor,
        serve_metrics(monitor, "a", port=0) as first,
        serve_metrics(monitor, "b", port=0) as second,
    ):
        assert first.port != second.port
        served = scrape(first.url)
    assert all(name.startswith("wattwise_") for name in served)  # no process/GC collectors
    global_names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("wattwise_") for name in global_names)


def test_a_port_in_use_is_a_config_error(meters):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            EnergyMonitor(QUIET, meters=[meters.Counter()], sync=None) as monitor,
            pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"),
        ):
            serve_metrics(monitor, "w", port=port)


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_a_config_error(meters, port):
    with (
        EnergyMonitor(QUIET, meters=[meters.Counter()], sync=None) as monitor,
        pytest.raises(ConfigError, match="0 to 65535"),
    ):
        serve_metrics(monitor, "w", port=port)


def test_without_prometheus_client_the_error_says_how_to_install_it(meters, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with (
        EnergyMonitor(QUIET, meters=[meters.Counter()], sync=None) as monitor,
        pytest.raises(ConfigError) as err,
    ):
        serve_metrics(monitor, "w", port=0)
    assert INSTALL_HINT in str(err.value)
    assert "pip install 'wattwise[prometheus]'" in str(err.value)
