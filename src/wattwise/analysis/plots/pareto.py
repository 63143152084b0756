"""Accuracy against energy of each configuration, with the Pareto front of each dataset × model.

    data = pareto_data(analysis, by="train")   # ParetoData: points and fronts
    fig = render_pareto(data)

The fronts are the analysis' own (:attr:`~wattwise.analysis.metrics.Analysis.fronts`): the plot and
the report's tables mark the same variants.
"""

from __future__ import annotations

from typing import NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import BASIS_METRICS, Analysis, Records, as_analysis
from wattwise.analysis.plots._common import (
    colors,
    figure,
    log_if_wide,
    message_figure,
    series_label,
    several_tasks,
)


class ParetoPoint(NamedTuple):
    label: str  # the configuration
    series: str  # colour group: the technique (with dataset · model when several)
    accuracy: float
    energy: float  # in the unit of ParetoData.x_label


class ParetoData(NamedTuple):
    by: str  # "train" or "inference"
    x_label: str
    points: tuple[ParetoPoint, ...]
    fronts: tuple[tuple[int, ...], ...]  # one per dataset × model, indices into points
    message: str | None


def pareto_data(study: Analysis | Records, *, by: str = "train") -> ParetoData:
    """Accuracy against energy of each configuration (mean over seeds) and the Pareto front of
    each dataset × model, as the analysis computed them. ``by``: ``train`` (kJ of training) or
    ``inference`` (mJ per image)."""
    if by not in BASIS_METRICS:
        raise ValueError(f"by must be 'train' or 'inference', got {by!r}")
    analysis = as_analysis(study)
    several = several_tasks(analysis.variants)
    scale, x_label = (
        (1e-3, "training energy (kJ)") if by == "train" else (1e3, "inference (mJ/image)")
    )
    points: list[ParetoPoint] = []
    point_of: dict[int, int] = {}  # variant index -> point index
    for i, v in enumerate(analysis.variants):
        energy = v.energy(by)  # type: ignore[arg-type]
        if v.accuracy is None or energy is None:
            continue
        point_of[i] = len(points)
        points.append(ParetoPoint(v.label, series_label(v, several), v.accuracy, energy * scale))
    fronts = tuple(tuple(point_of[i] for i in front) for front in analysis.fronts[by] if front)
    message = None if points else f"no finished trial has accuracy and {x_label}"
    return ParetoData(by, x_label, tuple(points), fronts, message)


def render_pareto(data: ParetoData) -> Figure:
    """Accuracy (higher is better) against energy (lower is better), the fronts drawn as steps."""
    title = f"Accuracy vs {'training' if data.by == 'train' else 'inference'} energy"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax,) = figure(width=9.0)
    palette = colors(p.series for p in data.points)
    for series, color in palette.items():
        pts = [p for p in data.points if p.series == series]
        ax.scatter(
            [p.energy for p in pts],
            [p.accuracy for p in pts],
            color=color,
            label=series,
            alpha=0.8,
            s=36,
            zorder=3,
        )
    for i, front in enumerate(data.fronts):
        pts = [data.points[j] for j in front]
        ax.step(
            [p.energy for p in pts],
            [p.accuracy for p in pts],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1,
            zorder=2,
        )
        ax.scatter(
            [p.energy for p in pts],
            [p.accuracy for p in pts],
            s=110,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            label="Pareto front" if i == 0 else None,
            zorder=4,
        )
    log_if_wide(ax, [p.energy for p in data.points])
    ax.set_xlabel(data.x_label + " — lower is better")
    ax.set_ylabel("test accuracy — higher is better")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
