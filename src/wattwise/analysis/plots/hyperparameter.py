"""Training energy and efficiency against batch size or learning rate, per technique.

render_hyperparameter(hyperparameter_data(analysis, "batch_size"))
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import Analysis, Records, TrialMetrics, as_analysis
from wattwise.analysis.plots._common import (
    colors,
    figure,
    message_figure,
    series_label,
    several_tasks,
)
from wattwise.analysis.stats import mean_ci


class HyperparameterLine(NamedTuple):
    series: str
    x: tuple[float, ...]
    energy_kj: tuple[tuple[float | None, float | None, float | None], ...]  # mean, low, high
    efficiency: tuple[tuple[float | None, float | None, float | None], ...]
    n: tuple[int, ...]


class HyperparameterData(NamedTuple):
    param: str  # "batch_size" or "lr"
    lines: tuple[HyperparameterLine, ...]
    message: str | None


def hyperparameter_data(study: Analysis | Records, param: str) -> HyperparameterData:
    """Training energy (kJ) and accuracy per kJ of training against ``param`` (``batch_size`` or
    ``lr``), per technique: mean and 95 % CI over the seeds (and the other swept settings) at
    each value."""
    if param not in ("batch_size", "lr"):
        raise ValueError(f"param must be 'batch_size' or 'lr', got {param!r}")
    metrics = as_analysis(study).trials
    several = several_tasks(metrics)
    cells: dict[str, dict[float, list[TrialMetrics]]] = defaultdict(lambda: defaultdict(list))
    for m in metrics:
        x = getattr(m, param)
        if x is not None and m.train_energy_j is not None:
            cells[series_label(m, several)][float(x)].append(m)
    lines = []
    for series, by_x in sorted(cells.items()):
        xs = tuple(sorted(by_x))
        energy, eff = [], []
        for x in xs:
            e = mean_ci(m.train_energy_j / 1e3 for m in by_x[x] if m.train_energy_j is not None)
            f = mean_ci(m.accuracy_per_kj_train for m in by_x[x])
            energy.append((e.mean, e.low, e.high))
            eff.append((f.mean, f.low, f.high))
        n = tuple(len(by_x[x]) for x in xs)
        lines.append(HyperparameterLine(series, xs, tuple(energy), tuple(eff), n))
    varies = any(len(line.x) > 1 for line in lines)
    message = None if varies else f"{param} takes a single value in the finished trials"
    return HyperparameterData(param, tuple(lines), message)


def render_hyperparameter(data: HyperparameterData) -> Figure:
    """Training energy (left) and accuracy per kJ (right) against the setting, mean ± 95 % CI."""
    name = {"batch_size": "batch size", "lr": "learning rate"}[data.param]
    title = f"Energy and efficiency vs {name} (mean ± 95 % CI)"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax_e, ax_f) = figure(2, width=11)
    palette = colors(line.series for line in data.lines)
    for line in data.lines:
        for ax, values in ((ax_e, line.energy_kj), (ax_f, line.efficiency)):
            mean = [math.nan if v[0] is None else v[0] for v in values]
            low = [m if v[1] is None else v[1] for m, v in zip(mean, values, strict=True)]
            high = [m if v[2] is None else v[2] for m, v in zip(mean, values, strict=True)]
            ax.plot(line.x, mean, color=palette[line.series], marker="o", label=line.series)
            ax.fill_between(line.x, low, high, color=palette[line.series], alpha=0.15, linewidth=0)
    ax_e.set_ylabel("training energy (kJ)")
    ax_f.set_ylabel("accuracy per kJ of training (1/kJ)")
    for ax in (ax_e, ax_f):
        ax.set_xlabel(name)
        if data.param == "lr":
            ax.set_xscale("log")
        elif data.param == "batch_size":
            ax.set_xscale("log", base=2)
        xs = sorted({x for line in data.lines for x in line.x})
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    ax_e.legend(fontsize="x-small")
    fig.suptitle(title)
    return fig
