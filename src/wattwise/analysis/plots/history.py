"""Accuracy and cumulative training energy after each epoch, per configuration.

render_history(history_data(analysis))

Colour: the technique; marker and line style: the configuration within it (two learning rates of
one technique are two markers). The energy axis takes the unit of its largest value.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import NamedTuple

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from wattwise.analysis.metrics import Analysis, Records, as_analysis
from wattwise.analysis.plots._common import (
    colors,
    figure,
    linestyle,
    markers,
    message_figure,
    series_label,
    several_tasks,
    short_config_label,
)
from wattwise.analysis.stats import mean_ci
from wattwise.experiment.record import TrialRecord
from wattwise.units import Unit, energy_unit, header


class HistorySeries(NamedTuple):
    label: str
    series: str
    epochs: tuple[int, ...]
    accuracy: tuple[float | None, ...]
    cumulative_energy_j: tuple[float | None, ...]


class HistoryData(NamedTuple):
    accuracy_key: str  # "val_accuracy", or "train_accuracy" when no validation was recorded
    series: tuple[HistorySeries, ...]
    omitted: int  # configurations not drawn (beyond max_series)
    message: str | None
    unit: Unit = Unit("J", 1.0)  # of the energy axis, picked from its largest value


def history_data(study: Analysis | Records, *, max_series: int = 10) -> HistoryData:
    """Accuracy and cumulative training energy after each epoch, per configuration (mean over
    seeds at each epoch), from the records' per-epoch ``history``."""
    analysis = as_analysis(study)
    pairs = [(r, m) for r, m in zip(analysis.records, analysis.trials, strict=True) if r.history]
    has_val = any(e.get("val_accuracy") is not None for r, _ in pairs for e in r.history)
    key = "val_accuracy" if has_val else "train_accuracy"
    several = several_tasks([m for _, m in pairs])
    groups: dict[str, tuple[str, list[TrialRecord]]] = {}
    for rec, m in pairs:
        label = short_config_label(m, several)
        groups.setdefault(label, (series_label(m, several), []))[1].append(rec)
    series = []
    for label, (group, recs) in list(groups.items())[:max_series]:
        acc: dict[int, list[float]] = defaultdict(list)
        energy: dict[int, list[float]] = defaultdict(list)
        for rec in recs:
            total = 0.0
            for i, epoch in enumerate(rec.history):
                n = int(epoch.get("epoch", i + 1))
                total += float(epoch.get("energy_j") or 0.0)
                energy[n].append(total)
                if epoch.get(key) is not None:
                    acc[n].append(float(epoch[key]))
        epochs = tuple(sorted(energy))
        series.append(
            HistorySeries(
                label,
                group,
                epochs,
                tuple(mean_ci(acc.get(e, [])).mean for e in epochs),
                tuple(mean_ci(energy[e]).mean for e in epochs),
            )
        )
    message = None if series else "no per-epoch history recorded in the finished trials"
    unit = energy_unit(e for s in series for e in s.cumulative_energy_j)
    return HistoryData(key, tuple(series), max(0, len(groups) - max_series), message, unit)


def render_history(data: HistoryData) -> Figure:
    """Accuracy (left) and cumulative training energy (right) against the epoch."""
    title = "Accuracy and cumulative energy per epoch"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax_acc, ax_energy) = figure(2, width=13)
    palette = colors(s.series for s in data.series)
    shapes = markers((s.series, s.label) for s in data.series)
    for s in data.series:
        marker = shapes[(s.series, s.label)]
        style = {"color": palette[s.series], "marker": marker, "markersize": 4,
                 "linewidth": 1.2, "linestyle": linestyle(marker), "alpha": 0.85}  # fmt: skip
        energy = [math.nan if e is None else data.unit.of(e) for e in s.cumulative_energy_j]
        ax_acc.plot(
            s.epochs, [math.nan if a is None else a for a in s.accuracy], **style, label=s.label
        )
        ax_energy.plot(s.epochs, energy, **style)
    ax_acc.set_ylabel(data.accuracy_key.replace("_", " "))
    ax_energy.set_ylabel(header("cumulative training energy", data.unit))
    for ax in (ax_acc, ax_energy):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_energy.legend(*ax_acc.get_legend_handles_labels(), fontsize="x-small", loc="upper left",
                     bbox_to_anchor=(1.01, 1.0))  # fmt: skip
    more = f" ({data.omitted} more configurations not drawn)" if data.omitted else ""
    fig.suptitle(title + more)
    return fig
