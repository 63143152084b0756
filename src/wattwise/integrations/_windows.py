"""What the training-framework callbacks share: the windows of a fit, their figures, the table.

Windows (their names in the monitor and on the Measurements):

* ``fit``: the whole fit (Lightning's ``Trainer.fit``, Transformers' ``Trainer.train``).
* ``train/epoch{N}``: epoch N's training (N from 1). A validation that runs while the epoch is
  open pauses it: the epoch's window is closed when the validation begins and opened again when
  it ends, and the epoch's Measurement adds up its parts (:func:`combine`). Training and
  validation are therefore apart, wherever the framework runs the validation.
* ``validation/epoch{N}``: a validation during (or right after) epoch N; a second one in the
  same epoch is ``validation/epoch{N}.2``, and so on.

A finished window becomes figures named ``energy/{phase}_{quantity}_{unit}``
(:func:`window_metrics`) that each callback hands to its framework's loggers, and a row of the
table printed when the fit ends (:func:`energy_table`). The framework adapters
(:mod:`wattwise.integrations.lightning`, :mod:`wattwise.integrations.transformers`) only map
their hooks onto :class:`FitWindows` and deliver the figures.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from wattwise.cli.render import fmt_bytes, fmt_energy, fmt_float
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.segments import combine

#: The phase names in metric names: ``energy/train_epoch_j``, ``energy/validation_j``,
#: ``energy/fit_j``.
TRAIN_EPOCH, VALIDATION, FIT = "train_epoch", "validation", "fit"
#: The name of the logged provenance (a string: ``cpu=estimated:tdp; dram=...``).
PROVENANCE_KEY = "energy/provenance"
#: How many processes (distributed ranks) the logged figures cover: 1 without DDP.
PROCESSES_KEY = "energy/processes"


class WindowRecord:
    """Finished windows: ``epochs``, ``validations`` and ``fit`` (see :class:`FitWindows`)."""

    def __init__(self) -> None:
        self.epochs: list[Measurement] = []
        self.validations: list[Measurement] = []
        self.fit: Measurement | None = None

    def finished(self) -> list[Measurement]:
        """Epochs and validations in the order they began, then the fit (when it ended)."""
        rows = sorted([*self.epochs, *self.validations], key=lambda m: m.start_unix_s)
        return [*rows, self.fit] if self.fit is not None else rows


class FitWindows(WindowRecord):
    """The open and finished windows of one fit, over a monitor of the user's or its own.

    Args:
        monitor: An EnergyMonitor to measure with (left open: its owner closes it).
        config: Settings of the monitor to create instead, one per fit, closed when the fit
            ends or fails (default ``MonitorConfig()``).

    Attributes:
        epochs: Each train epoch's Measurement (its training only), in order.
        validations: Each validation's Measurement, in order (the sanity check is none).
        fit: The whole fit's Measurement once it ended (or failed), else ``None``.
        monitor: The monitor in use; ``None`` while the callback's own one is closed.
    """

    def __init__(self, monitor: EnergyMonitor | None = None, config: MonitorConfig | None = None):
        if monitor is not None and config is not None:
            raise ValueError("pass an EnergyMonitor or the settings of one (config), not both")
        super().__init__()
        self._owned = monitor is None
        self._config = config
        self.monitor: EnergyMonitor | None = monitor
        self._fit_open = False
        self._epoch: int | None = None  # the open train epoch
        self._parts: list[Measurement] = []  # its finished parts
        self._running = False  # its window is open in the monitor (not paused)
        self._validation: str | None = None  # the open validation window
        self._validation_epoch = 0  # the epoch it belongs to
        self._validation_counts: dict[int, int] = {}

    # --- the fit ------------------------------------------------------------------------------
    def begin_fit(self) -> None:
        """Start the ``fit`` window; what a previous, failed fit left open is closed first."""
        self.abort()
        self.epochs, self.validations, self.fit = [], [], None
        self._validation_counts = {}
        self._open_monitor().begin_window("fit")
        self._fit_open = True

    def end_fit(self) -> Measurement:
        """End the fit (and an epoch or validation still open); returns the fit's Measurement."""
        if self._validation is not None:
            self.end_validation()
        self.end_epoch()
        if not self._fit_open:
            raise ValueError("no fit is being measured")
        self.fit = self._end("fit")
        self._fit_open = False
        self._release_if_idle()
        return self.fit

    # --- train epochs -------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Start measuring the training of ``epoch`` (1-based)."""
        self.end_epoch()
        self._epoch, self._parts = epoch, []
        self._open_monitor()
        self._resume()

    def end_epoch(self) -> Measurement | None:
        """End the open epoch; returns its Measurement (``None`` when none was open)."""
        if self._epoch is None:
            return None
        self._pause()
        measurement = combine(self._epoch_name, self._parts)
        self.epochs.append(measurement)
        self._epoch, self._parts = None, []
        self._release_if_idle()
        return measurement

    # --- validations --------------------------------------------------------------------------
    def begin_validation(self, epoch: int) -> None:
        """Start a validation during ``epoch``; it pauses the epoch's training window. Nothing
        happens while a validation is already open."""
        if self._validation is not None:
            return
        monitor = self._open_monitor()
        self._pause()
        count = self._validation_counts[epoch] = self._validation_counts.get(epoch, 0) + 1
        name = f"validation/epoch{epoch}" + (f".{count}" if count > 1 else "")
        monitor.begin_window(name)
        self._validation, self._validation_epoch = name, epoch

    def end_validation(self) -> Measurement | None:
        """End the open validation and resume the epoch it paused; returns its Measurement
        (``None`` when none was open)."""
        if self._validation is None:
            return None
        measurement = self._end(self._validation)
        self._validation = None
        self.validations.append(measurement)
        self._resume()
        self._release_if_idle()
        return measurement

    def cancel_validation(self) -> None:
        """Drop a validation that was announced but did not run (its name is given again to
        the next one), and resume the epoch."""
        if self._validation is None:
            return
        self._end(self._validation)
        self._validation_counts[self._validation_epoch] -= 1
        self._validation = None
        self._resume()
        self._release_if_idle()

    # --- failures -----------------------------------------------------------------------------
    def abort(self) -> None:
        """Close every open window (a failed fit): what they measured until now is kept, as the
        monitor's ``window()`` keeps it when its body raises. Then the callback's own monitor is
        closed; a monitor passed in stays open."""
        if self._validation is not None:
            self.validations.append(self._end(self._validation))
            self._validation = None
        if self._epoch is not None:
            self._pause()
            self.epochs.append(combine(self._epoch_name, self._parts))
            self._epoch, self._parts = None, []
        if self._fit_open:
            self.fit = self._end("fit")
            self._fit_open = False
        self._release_if_idle()

    # --- internals ----------------------------------------------------------------------------
    @property
    def _epoch_name(self) -> str:
        return f"train/epoch{self._epoch}"

    def _open_monitor(self) -> EnergyMonitor:
        if self.monitor is None:
            self.monitor = EnergyMonitor(self._config)
        return self.monitor

    def _end(self, name: str) -> Measurement:
        assert self.monitor is not None  # a window is open, so is its monitor
        return self.monitor.end_window(name)

    def _pause(self) -> None:
        if self._running:
            self._parts.append(self._end(self._epoch_name))
            self._running = False

    def _resume(self) -> None:
        if self._epoch is not None and not self._running:
            self._open_monitor().begin_window(self._epoch_name)
            self._running = True

    def _release_if_idle(self) -> None:
        idle = not (self._fit_open or self._running or self._validation)
        if self._owned and idle and self.monitor is not None:
            self.monitor.close()
            self.monitor = None


class WindowsCallback:
    """What both callbacks do apart from their framework's hooks: the settings, the windows and
    the Measurements they leave on the callback for Python users.

    Args:
        monitor: An EnergyMonitor to measure with (left open).
        config: Settings of the monitor the callback creates for each fit instead (and closes
            when the fit ends or fails).
        print_table: Print the table of every window when the fit ends (rank 0 only).
    """

    def __init__(
        self,
        monitor: EnergyMonitor | None = None,
        config: MonitorConfig | None = None,
        *,
        print_table: bool = True,
    ):
        self.windows = FitWindows(monitor, config)
        self.print_table = print_table

    @property
    def epochs(self) -> list[Measurement]:
        """Each train epoch's Measurement (its training only)."""
        return self.windows.epochs

    @property
    def validations(self) -> list[Measurement]:
        """Each validation's Measurement."""
        return self.windows.validations

    @property
    def fit(self) -> Measurement | None:
        """The whole fit's Measurement, once it ended or failed."""
        return self.windows.fit

    def close(self) -> None:
        """Close every window still open (see :meth:`FitWindows.abort`)."""
        self.windows.abort()


def measured_share(m: Measurement) -> float | None:
    """The share of ``m``'s total energy that was measured (0: all estimated, 1: all measured);
    ``None`` when the total is zero."""
    total = m.total_energy_j
    if total <= 0:
        return None
    measured = sum(
        c.energy_j or 0.0 for c in m.summed_components if c.provenance.kind == "measured"
    )
    return measured / total


def window_metrics(phase: str, m: Measurement) -> dict[str, float]:
    """The figures of one window for a logger: ``energy/{phase}_j``, ``_duration_s``,
    ``_mean_power_w``, ``_peak_power_w``, ``_peak_rss_bytes``, ``_peak_gpu_memory_bytes`` (the
    highest GPU, as the driver reports it), ``_peak_cuda_allocated_bytes``, ``_co2e_g`` and
    ``_measured_share`` (see :func:`measured_share`). A figure the window does not have (no
    sample, no GPU) is left out rather than logged as zero."""
    prefix = f"energy/{phase}"
    figures = {
        f"{prefix}_j": m.total_energy_j,
        f"{prefix}_duration_s": m.duration_s,
        f"{prefix}_mean_power_w": m.avg_power_w,
        f"{prefix}_peak_power_w": m.peak_power_w,
        f"{prefix}_peak_rss_bytes": m.peak_rss_bytes,
        f"{prefix}_peak_gpu_memory_bytes": max(m.peak_gpu_memory_bytes.values(), default=None),
        f"{prefix}_peak_cuda_allocated_bytes": m.peak_cuda_allocated_bytes,
        f"{prefix}_co2e_g": m.carbon.co2e_g if m.carbon is not None else None,
        f"{prefix}_measured_share": measured_share(m),
    }
    return {key: float(value) for key, value in figures.items() if value is not None}


def provenance_text(m: Measurement) -> str:
    """Where each top-level component's energy came from: ``cpu=estimated:tdp; gpu=...``."""
    return "; ".join(
        f"{c.component}={c.provenance.label}" for c in m.components if c.nested_in is None
    )


def energy_table(windows: WindowRecord, title: str = "energy per window") -> Table:
    """One row per finished window (time, energy, mean and peak power, peak RSS, provenance),
    the fit last; the caption says how each component's energy was made. Readable at 80
    columns: numbers keep their line, the window names wrap."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("window", overflow="fold")
    for column in ("time", "energy", "mean", "peak", "peak RSS"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("source", overflow="fold")
    rows = windows.finished()
    for i, m in enumerate(rows):
        table.add_row(
            f"[bold]{m.name}[/bold]" if m is windows.fit else m.name,
            fmt_float(m.duration_s, 2, "s"),
            fmt_energy(m.total_energy_j),
            fmt_float(m.avg_power_w, 1, "W"),
            fmt_float(m.peak_power_w, 1, "W"),
            fmt_bytes(m.peak_rss_bytes),
            m.total_provenance,
            end_section=i + 2 == len(rows) and rows[-1] is windows.fit,  # a line above the fit
        )
    if rows:
        last = rows[-1]
        table.caption = "\n".join(
            f"{c.component} ({c.provenance.label}): {c.provenance.detail}"
            for c in last.components
            if c.nested_in is None and c.provenance.detail
        )
        table.caption_justify = "left"
    return table


def print_energy_table(windows: WindowRecord, title: str = "energy per window") -> None:
    """Print :func:`energy_table` on standard output."""
    Console().print(energy_table(windows, title))
