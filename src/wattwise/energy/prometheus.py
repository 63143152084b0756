"""Prometheus exporter: serve one window of an EnergyMonitor over HTTP while it is measured.

    with EnergyMonitor() as monitor, serve_metrics(monitor, "train", port=9464) as server:
        print(server.url)                        # http://127.0.0.1:9464/metrics
        with monitor.window("train"):
            train()

Each scrape computes the metrics from :meth:`EnergyMonitor.progress` (the window as of the
monitor's last meter read; a scrape never reads a meter itself), through a custom collector on a
registry of the exporter's own: the global default registry is left alone, so several exporters
can run in one process and none serves Python's process or GC metrics.

* ``wattwise_energy_joules_total{component, provenance, source}``: energy of each top-level
  component since the window began, in joules (a counter: it only grows within a window, its
  ``_created`` is the window's start). ``provenance`` is ``measured`` or ``estimated``, ``source``
  the backend (``rapl``, ``nvml``, ``tdp``...). Nested domains (RAPL core/uncore) are left out,
  so that ``sum()`` is the window's total; a component without a value is left out too.
* ``wattwise_power_watts{component}``: power at the latest background sample, in watts.
* ``wattwise_memory_bytes{kind, component}``: ``kind="peak_rss"`` (resident memory of the
  measured process tree, peak so far, ``component=""``) and ``kind="peak_gpu"`` (device memory
  in use, peak so far, ``component="gpu:N"``), in bytes.
* ``wattwise_elapsed_seconds``: the window's duration up to that same read.
* ``wattwise_up``: 1 while the window is open, else 0 (before it begins, after it ends); the
  other metrics are served only while it is open.

``prometheus_client`` is imported when a server starts, not before: without it,
:func:`serve_metrics` raises a :class:`~wattwise.errors.ConfigError` that says how to install it.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from typing import Any

from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError

#: How to install the optional dependency.
INSTALL_HINT = "pip install 'wattwise[prometheus]'"

#: The address served on by default: this machine only.
DEFAULT_ADDR = "127.0.0.1"

#: The highest TCP port.
MAX_PORT = 65535


class WindowCollector:
    """A ``prometheus_client`` collector of window ``window`` of ``monitor``, read at scrape time.

    Args:
        monitor: The monitor that measures the window.
        window: The window's name; it may open and close while the collector is registered.
    """

    def __init__(self, monitor: EnergyMonitor, window: str):
        self.monitor = monitor
        self.window = window

    def collect(self) -> Iterator[Any]:
        """The metric families of the window now (see the module's docstring)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        progress = self.monitor.progress(self.window)
        yield GaugeMetricFamily(
            "wattwise_up",
            "1 while the measured window is open, else 0",
            value=0.0 if progress is None else 1.0,
        )
        if progress is None:
            return
        m = progress.measurement
        yield GaugeMetricFamily(
            "wattwise_elapsed_seconds",
            "Duration of the window so far, up to the monitor's last meter read",
            value=m.duration_s,
        )
        energy = CounterMetricFamily(
            "wattwise_energy_joules",
            "Energy of each top-level component since the window began",
            labels=("component", "provenance", "source"),
            unit="joules",
        )
        for comp in m.summed_components:
            prov = comp.provenance
            labels = (comp.component, prov.kind, prov.source)
            energy.add_metric(labels, comp.energy_j or 0.0, created=m.start_unix_s)
        yield energy
        power = GaugeMetricFamily(
            "wattwise_power_watts",
            "Power of each top-level component at the latest background sample",
            labels=("component",),
            unit="watts",
        )
        for component, watts in progress.power_w.items():
            power.add_metric((component,), watts)
        yield power
        memory = GaugeMetricFamily(
            "wattwise_memory_bytes",
            "Peak memory in the window so far: peak_rss of the measured process tree, "
            "peak_gpu per GPU",
            labels=("kind", "component"),
            unit="bytes",
        )
        if m.peak_rss_bytes is not None:
            memory.add_metric(("peak_rss", ""), m.peak_rss_bytes)
        for component, used in m.peak_gpu_memory_bytes.items():
            memory.add_metric(("peak_gpu", component), used)
        yield memory


class MetricsServer:
    """A running exporter: where it serves, and :meth:`close` (or ``with``) to stop it."""

    def __init__(self, httpd: Any, thread: threading.Thread, registry: Any):
        self._httpd = httpd
        self._thread = thread
        #: The exporter's own ``prometheus_client.CollectorRegistry``.
        self.registry = registry
        self.addr: str = httpd.server_address[0]
        self.port: int = httpd.server_address[1]
        self._closed = False

    @property
    def url(self) -> str:
        """The address to scrape, e.g. ``http://127.0.0.1:9464/metrics``."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (waits for the serving thread; idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(
    monitor: EnergyMonitor, window: str, port: int, *, addr: str = DEFAULT_ADDR
) -> MetricsServer:
    """Serves window ``window`` of ``monitor`` at ``http://ADDR:PORT/metrics`` in a thread.

    Args:
        monitor: The monitor that measures (or will measure) the window.
        window: The window's name.
        port: TCP port, 0 to 65535; 0 picks a free one (``MetricsServer.port`` says which).
        addr: Address to listen on (default: this machine only).

    Returns:
        The running :class:`MetricsServer`; close it when the window has ended.

    Raises:
        ConfigError: ``prometheus_client`` is not installed, the port is out of range, in use
            or not allowed, or the address cannot be listened on.
    """
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"a Prometheus port must be 0 to {MAX_PORT} (0: a free one), got {port}")
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            f"serving Prometheus metrics needs prometheus_client: {INSTALL_HINT}"
        ) from None
    registry = prometheus_client.CollectorRegistry()
    registry.register(WindowCollector(monitor, window))
    try:
        httpd, thread = prometheus_client.start_http_server(port, addr=addr, registry=registry)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot serve Prometheus metrics: port {port} on {addr} is already in use "
                f"(choose another port, or 0 for a free one)"
            ) from None
        raise ConfigError(
            f"cannot serve Prometheus metrics on {addr} port {port}: {err.strerror or err}"
        ) from None
    return MetricsServer(httpd, thread, registry)
