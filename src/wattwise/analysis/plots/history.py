"""Accuracy and cumulative training energy after each epoch, per configuration.

render_history(history_data(analysis))
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
    message_figure,
    series_label,
    several_tasks,
    short_config_label,
)
from wattwise.analysis.stats import mean_ci
from wattwise.experiment.record import TrialRecord


class HistorySeries(NamedTuple):
    label: str
    series: str
    epochs: tuple[int, ...]
    accuracy: tuple[float | None, ...]
    cumulative_energy_kj: tuple[float | None, ...]


class HistoryData(NamedTuple):
    accuracy_key: str  # "val_accuracy", or "train_accuracy" when no validation was recorded
    series: tuple[HistorySeries, ...]
    omitted: int  # configurations not drawn (beyond max_series)
    message: str | None


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
                energy[n].append(total / 1e3)
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
    return HistoryData(key, tuple(series), max(0, len(groups) - max_series), message)


def render_history(data: HistoryData) -> Figure:
    """Accuracy (left) and cumulative training energy (right) against the epoch."""
    title = "Accuracy and cumulative energy per epoch"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax_acc, ax_energy) = figure(2, width=13)
    palette = colors(s.series for s in data.series)
    for s in data.series:
        style = {"color": palette[s.series], "marker": "o", "markersize": 3, "linewidth": 1.2}
        ax_acc.plot(
            s.epochs, [math.nan if a is None else a for a in s.accuracy], **style, label=s.label
        )
        ax_energy.plot(
            s.epochs, [math.nan if e is None else e for e in s.cumulative_energy_kj], **style
        )
    ax_acc.set_ylabel(data.accuracy_key.replace("_", " "))
    ax_energy.set_ylabel("cumulative training energy (kJ)")
    for ax in (ax_acc, ax_energy):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_energy.legend(*ax_acc.get_legend_handles_labels(), fontsize="x-small", loc="upper left",
                     bbox_to_anchor=(1.01, 1.0))  # fmt: skip
    more = f" ({data.omitted} more configurations not drawn)" if data.omitted else ""
    fig.suptitle(title + more)
    return fig
