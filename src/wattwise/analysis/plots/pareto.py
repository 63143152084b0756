"""Accuracy against energy of each configuration, with the Pareto front of each dataset × model
and the recommended variant marked and named.

    data = pareto_data(analysis, by="train")   # ParetoData: points, fronts, the recommendation
    fig = render_pareto(data)

The fronts are the analysis' own (:attr:`~wattwise.analysis.metrics.Analysis.fronts`): the plot and
the report's tables mark the same variants. The recommended variants are the report's (it passes
the labels its recommendation chose, at its floor); without them, :func:`recommend` at the default
floor chooses. Colour: the technique; marker: the configuration within it (two learning rates of
one technique are two markers). Points are translucent, and points that coincide are labelled
with their count (``×2``), so that none hides another.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import BASIS_METRICS, Analysis, Records, as_analysis
from wattwise.analysis.plots._common import (
    POINT_ALPHA,
    colors,
    figure,
    log_if_wide,
    markers,
    message_figure,
    series_label,
    settings_labels,
    several_tasks,
)
from wattwise.units import Unit, energy_unit, header


class ParetoPoint(NamedTuple):
    label: str  # the configuration
    series: str  # colour group: the technique (with dataset · model when several)
    accuracy: float
    energy: float  # in ParetoData.unit
    settings: str = ""  # marker group within the series: "bs 32 · lr 0.01 · 3 ep"
    n: int = 1  # trials (seeds) averaged


class ParetoData(NamedTuple):
    by: str  # "train" or "inference"
    x_label: str  # with its unit: "training energy (kJ)", "inference energy (mJ/image)"
    points: tuple[ParetoPoint, ...]
    fronts: tuple[tuple[int, ...], ...]  # one per dataset × model, indices into points
    message: str | None
    unit: Unit = Unit("J", 1.0)  # of every point's energy: picked from the largest
    recommended: tuple[int, ...] = ()  # indices into points of the recommended variants


def pareto_data(
    study: Analysis | Records, *, by: str = "train", recommended: Sequence[str] | None = None
) -> ParetoData:
    """Accuracy against energy of each configuration (mean over seeds), the Pareto front of each
    dataset × model as the analysis computed them, and the recommended variants. ``by``:
    ``train`` (training energy) or ``inference`` (energy per image); the energy axis takes the
    unit of its largest value (:func:`~wattwise.units.energy_unit`). ``recommended``: labels of
    the recommended variants (the report's); ``None``: :func:`recommend` chooses, ranked by
    ``by`` at the default floor."""
    if by not in BASIS_METRICS:
        raise ValueError(f"by must be 'train' or 'inference', got {by!r}")
    analysis = as_analysis(study)
    several = several_tasks(analysis.variants)
    energies = [v.energy(by) for v in analysis.variants]  # type: ignore[arg-type]
    unit = energy_unit(energies)
    x_label = (
        header("training energy", unit)
        if by == "train"
        else header("inference energy", unit, per="image")
    )
    points: list[ParetoPoint] = []
    point_of: dict[int, int] = {}  # variant index -> point index
    settings = settings_labels(analysis.variants)
    for i, (v, energy) in enumerate(zip(analysis.variants, energies, strict=True)):
        if v.accuracy is None or energy is None:
            continue
        point_of[i] = len(points)
        points.append(
            ParetoPoint(
                v.label, series_label(v, several), v.accuracy, unit.of(energy),
                settings[i], v.n,
            )
        )  # fmt: skip
    fronts = tuple(tuple(point_of[i] for i in front) for front in analysis.fronts[by] if front)
    if recommended is None:
        from wattwise.analysis.recommendation import recommend

        chosen = recommend(analysis.variants, by=by)  # type: ignore[arg-type]
        recommended = [r.chosen.label for r in chosen if r.chosen is not None]
    marked = tuple(i for i, p in enumerate(points) if p.label in set(recommended))
    message = None if points else f"no finished trial has accuracy and {x_label}"
    return ParetoData(by, x_label, tuple(points), fronts, message, unit, marked)


def _coinciding(points: Sequence[ParetoPoint]) -> dict[tuple[float, float], int]:
    """How many points sit at each position (to 4 significant digits), where more than one."""
    counts: dict[tuple[float, float], int] = defaultdict(int)
    for p in points:
        counts[(float(f"{p.energy:.4g}"), float(f"{p.accuracy:.4g}"))] += 1
    return {xy: n for xy, n in counts.items() if n > 1}


def _inside(ax: Any, x: float, y: float) -> dict[str, Any]:
    """Where a point's label goes so that it stays inside the axes (never over the title or the
    legend): towards the middle of the plot from the point, right or left, below or above."""
    fx, fy = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))
    right, below = fx < 0.6, fy > 0.5
    return {
        "xytext": (14 if right else -14, -16 if below else 16),
        "ha": "left" if right else "right",
        "va": "top" if below else "bottom",
    }


def render_pareto(data: ParetoData) -> Figure:
    """Accuracy (higher is better) against energy (lower is better), the fronts drawn as steps,
    the recommended variants as stars with their names."""
    title = f"Accuracy vs {'training' if data.by == 'train' else 'inference'} energy"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax,) = figure(width=9.0)
    palette = colors(p.series for p in data.points)
    shapes = markers((p.series, p.settings) for p in data.points)
    groups: dict[tuple[str, str], list[ParetoPoint]] = defaultdict(list)
    for p in data.points:
        groups[(p.series, p.settings)].append(p)
    for (series, settings), pts in sorted(groups.items()):
        seeds = sorted({p.n for p in pts})
        n = f", n={seeds[0]}" if len(seeds) == 1 else ""
        ax.scatter(
            [p.energy for p in pts],
            [p.accuracy for p in pts],
            color=palette[series],
            marker=shapes[(series, settings)],
            edgecolors="black",
            linewidths=0.4,
            label=f"{series} · {settings}{n}" if settings else f"{series}{n}",
            alpha=POINT_ALPHA,
            s=40,
            zorder=3,
        )
    for (x, y), count in _coinciding(data.points).items():
        ax.annotate(f"×{count}", (x, y), xytext=(6, -10), textcoords="offset points",
                    fontsize="small", zorder=6)  # fmt: skip
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
            s=120,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            label="Pareto front" if i == 0 else None,
            zorder=4,
        )
    log_if_wide(ax, [p.energy for p in data.points])
    for k, j in enumerate(data.recommended):
        p = data.points[j]
        ax.scatter([p.energy], [p.accuracy], marker="*", s=320, color="gold", edgecolors="black",
                   linewidths=1.0, zorder=5, label="recommended" if k == 0 else None)  # fmt: skip
        name = "\n".join(textwrap.wrap(f"recommended: {p.label}", 44))
        ax.annotate(name, (p.energy, p.accuracy), **_inside(ax, p.energy, p.accuracy),
                    textcoords="offset points", fontsize="small", zorder=6,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "gray", "alpha": 0.9},
                    arrowprops={"arrowstyle": "-", "color": "gray"})  # fmt: skip
    ax.set_xlabel(data.x_label + " — lower is better")
    ax.set_ylabel("test accuracy — higher is better")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
