"""Training energy and efficiency against batch size or learning rate, per technique.

render_hyperparameter(hyperparameter_data(analysis, "batch_size"))

One line per technique and per value of the other training settings (against batch size, the
learning rates are separate lines with their own markers, not averaged into one). Learning-rate
and batch-size axes are logarithmic; the energy axis takes the unit of its largest value; each
line's 95 % confidence band lies under every line.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import Analysis, Records, TrialMetrics, as_analysis, config_label
from wattwise.analysis.plots._common import (
    BAND_ALPHA,
    colors,
    figure,
    linestyle,
    markers,
    message_figure,
    series_label,
    several_tasks,
)
from wattwise.analysis.stats import mean_ci
from wattwise.units import Unit, energy_unit, header

#: The training settings besides the plotted one that tell lines apart.
_OTHER_SETTINGS = ("batch_size", "lr", "epochs", "gpu_memory_gib")


class HyperparameterLine(NamedTuple):
    series: str
    x: tuple[float, ...]
    energy_j: tuple[tuple[float | None, float | None, float | None], ...]  # mean, low, high
    efficiency: tuple[tuple[float | None, float | None, float | None], ...]
    n: tuple[int, ...]
    settings: str = ""  # the other training settings of this line: "lr 0.01 · 3 ep"


class HyperparameterData(NamedTuple):
    param: str  # "batch_size" or "lr"
    lines: tuple[HyperparameterLine, ...]
    message: str | None
    unit: Unit = Unit("J", 1.0)  # of the energy axis, picked from its largest value


def _settings(m: TrialMetrics, keys: tuple[str, ...]) -> str:
    """The training settings ``keys`` of ``m``: ``lr 0.01``."""
    return config_label({k: getattr(m, k) for k in keys})


def hyperparameter_data(study: Analysis | Records, param: str) -> HyperparameterData:
    """Training energy (J) and accuracy per kJ of training against ``param`` (``batch_size`` or
    ``lr``), per technique and other training settings: mean and 95 % CI over the seeds at each
    value. Settings that are the same in every trial do not split lines or name them."""
    if param not in ("batch_size", "lr"):
        raise ValueError(f"param must be 'batch_size' or 'lr', got {param!r}")
    metrics = as_analysis(study).trials
    several = several_tasks(metrics)
    cells: dict[tuple[str, str], dict[float, list[TrialMetrics]]] = defaultdict(
        lambda: defaultdict(list)
    )
    keys = tuple(k for k in _OTHER_SETTINGS
                 if k != param and len({getattr(m, k) for m in metrics}) > 1)  # fmt: skip
    for m in metrics:
        x = getattr(m, param)
        if x is not None and m.train_energy_j is not None:
            cells[(series_label(m, several), _settings(m, keys))][float(x)].append(m)
    lines = []
    for (series, settings), by_x in sorted(cells.items()):
        xs = tuple(sorted(by_x))
        energy, eff = [], []
        for x in xs:
            e = mean_ci(m.train_energy_j for m in by_x[x] if m.train_energy_j is not None)
            f = mean_ci(m.accuracy_per_kj_train for m in by_x[x])
            energy.append((e.mean, e.low, e.high))
            eff.append((f.mean, f.low, f.high))
        n = tuple(len(by_x[x]) for x in xs)
        lines.append(HyperparameterLine(series, xs, tuple(energy), tuple(eff), n, settings))
    varies = any(len(line.x) > 1 for line in lines)
    message = None if varies else f"{param} takes a single value in the finished trials"
    unit = energy_unit(v for line in lines for row in line.energy_j for v in row)
    return HyperparameterData(param, tuple(lines), message, unit)


def _band(
    values: tuple[tuple[float | None, float | None, float | None], ...], unit: Unit | None
) -> tuple[list[float], list[float], list[float]]:
    """Mean, low and high of each point (in ``unit``; as they are without one); an unknown
    mean is NaN (a gap), an unknown end is the mean (no band there)."""
    scale = unit.of if unit is not None else float
    mean = [math.nan if v[0] is None else scale(v[0]) for v in values]
    low = [m if v[1] is None else scale(v[1]) for m, v in zip(mean, values, strict=True)]
    high = [m if v[2] is None else scale(v[2]) for m, v in zip(mean, values, strict=True)]
    return mean, low, high


def render_hyperparameter(data: HyperparameterData) -> Figure:
    """Training energy (left) and accuracy per kJ (right) against the setting, mean ± 95 % CI."""
    name = {"batch_size": "batch size", "lr": "learning rate"}[data.param]
    title = f"Energy and efficiency vs {name} (mean ± 95 % CI)"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax_e, ax_f) = figure(2, width=11)
    palette = colors(line.series for line in data.lines)
    shapes = markers((line.series, line.settings) for line in data.lines)
    for i, line in enumerate(data.lines):
        color, marker = palette[line.series], shapes[(line.series, line.settings)]
        label = f"{line.series} · {line.settings}" if line.settings else line.series
        for ax, values, unit in ((ax_e, line.energy_j, data.unit), (ax_f, line.efficiency, None)):
            mean, low, high = _band(values, unit)
            band = "95 % CI of the mean (bands)" if i == 0 else None
            ax.fill_between(line.x, low, high, color=color, alpha=BAND_ALPHA, linewidth=0,
                            zorder=1, label=band)  # fmt: skip
            ax.plot(line.x, mean, color=color, marker=marker, linestyle=linestyle(marker),
                    label=label, zorder=3)  # fmt: skip
    ax_e.set_ylabel(header("training energy", data.unit))
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
