"""Mean efficiency per technique, with its 95 % confidence interval.

render_efficiency(efficiency_data(analysis, metric="accuracy_per_j_per_image"))
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import Analysis, Records, as_analysis
from wattwise.analysis.plots._common import (
    colors,
    figure,
    message_figure,
    series_label,
    several_tasks,
)
from wattwise.analysis.stats import mean_ci


class EfficiencyData(NamedTuple):
    metric: str  # "accuracy_per_kj_cost", "accuracy_per_kj_train" or "accuracy_per_j_per_image"
    y_label: str
    labels: tuple[str, ...]
    means: tuple[float, ...]
    lows: tuple[float | None, ...]
    highs: tuple[float | None, ...]
    n: tuple[int, ...]
    message: str | None


_EFFICIENCY_LABELS = {
    "accuracy_per_kj_cost": "accuracy per kJ of training + technique (1/kJ)",
    "accuracy_per_kj_train": "accuracy per kJ of training (1/kJ)",
    "accuracy_per_j_per_image": "correct predictions per joule (1/J)",
}


def efficiency_data(
    study: Analysis | Records, *, metric: str = "accuracy_per_kj_cost"
) -> EfficiencyData:
    """Mean efficiency per technique with its 95 % CI over every trial of the technique."""
    if metric not in _EFFICIENCY_LABELS:
        raise ValueError(f"metric must be one of {', '.join(_EFFICIENCY_LABELS)}, got {metric!r}")
    metrics = as_analysis(study).trials
    several = several_tasks(metrics)
    groups: dict[str, list[float]] = defaultdict(list)
    for m in metrics:
        value = getattr(m, metric)
        if value is not None:
            groups[series_label(m, several)].append(value)
    cis = {k: mean_ci(v) for k, v in sorted(groups.items())}
    message = None if cis else f"no finished trial has {metric}"
    return EfficiencyData(
        metric,
        _EFFICIENCY_LABELS[metric],
        tuple(cis),
        tuple(c.mean for c in cis.values()),  # type: ignore[misc]
        tuple(c.low for c in cis.values()),
        tuple(c.high for c in cis.values()),
        tuple(c.n for c in cis.values()),
        message,
    )


def render_efficiency(data: EfficiencyData) -> Figure:
    """One bar per technique with its confidence interval and number of trials."""
    title = "Efficiency per technique (mean ± 95 % CI)"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax,) = figure(width=max(6.0, 1.2 * len(data.labels) + 2))
    palette = colors(data.labels)
    lower = [m - lo if lo is not None else 0 for m, lo in zip(data.means, data.lows, strict=True)]
    upper = [hi - m if hi is not None else 0 for m, hi in zip(data.means, data.highs, strict=True)]
    xs = range(len(data.labels))
    ax.bar(
        xs,
        data.means,
        yerr=[lower, upper],
        capsize=4,
        color=[palette[label] for label in data.labels],
    )
    ax.set_xticks(
        list(xs),
        [f"{label}\n(n={n})" for label, n in zip(data.labels, data.n, strict=True)],
        fontsize="small",
        rotation=20,
        ha="right",
    )
    ax.set_ylabel(data.y_label)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return fig
