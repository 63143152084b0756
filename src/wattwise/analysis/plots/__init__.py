"""Plots of a study: one module per plot, each computes its data (a small NamedTuple), then
renders it (Optuna's layout).

    analysis = analyze(store.records(), carbon)             # computed once
    data = pareto_data(analysis, by="train")                # ParetoData: points and fronts
    fig = render_pareto(data)                               # a matplotlib Figure
    rendered = render_plots(analysis)                       # every plot, PNG and SVG bytes
    save_all(analysis, "report/plots")                      # ... written to files

Every data function also takes records (it analyses them itself). The Pareto plots star the
recommended variants: the report passes those its recommendation chose (``recommended``: basis ->
labels); without them the default recommendation is drawn. Figures are
``matplotlib.figure.Figure`` objects with an Agg canvas: pyplot is never imported, so the user's
backend and pyplot state are untouched and nothing opens a window. Only ``ok`` trials are plotted.
A plot without data renders a figure that says why (e.g. "no timeline recorded"), so every file
always exists. Adding a plot: a module here with its data and render functions, and its entry in
:data:`PLOTS`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import Analysis, Records, as_analysis
from wattwise.analysis.plots.efficiency import EfficiencyData, efficiency_data, render_efficiency
from wattwise.analysis.plots.history import (
    HistoryData,
    HistorySeries,
    history_data,
    render_history,
)
from wattwise.analysis.plots.hyperparameter import (
    HyperparameterData,
    HyperparameterLine,
    hyperparameter_data,
    render_hyperparameter,
)
from wattwise.analysis.plots.memory import MemoryBar, MemoryData, memory_data, render_memory
from wattwise.analysis.plots.pareto import ParetoData, ParetoPoint, pareto_data, render_pareto
from wattwise.analysis.plots.timeline import TimelineData, render_timeline, timeline_data
from wattwise.files import write_bytes_atomic

#: ``train``/``inference`` -> labels of the recommended variants (``None``: the default ones).
Recommended = Mapping[str, Sequence[str]] | None


class PlotSpec(NamedTuple):
    """One plot of :data:`PLOTS`: its file stem, its caption and how it is drawn (from the
    analysis and the recommended variants)."""

    name: str
    title: str
    draw: Callable[[Analysis, Recommended], Figure]


def _recommended(recommended: Recommended, by: str) -> Sequence[str] | None:
    return None if recommended is None else recommended.get(by, ())


#: The plots :func:`render_plots` draws, in order (file stem, caption, drawing).
PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec(
        "pareto_train",
        "Accuracy vs training energy, with the Pareto front",
        lambda a, r: render_pareto(
            pareto_data(a, by="train", recommended=_recommended(r, "train"))
        ),
    ),
    PlotSpec(
        "pareto_inference",
        "Accuracy vs inference energy per image, with the Pareto front",
        lambda a, r: render_pareto(
            pareto_data(a, by="inference", recommended=_recommended(r, "inference"))
        ),
    ),
    PlotSpec(
        "history",
        "Accuracy and cumulative training energy per epoch",
        lambda a, r: render_history(history_data(a)),
    ),
    PlotSpec(
        "batch_size",
        "Energy and efficiency vs batch size",
        lambda a, r: render_hyperparameter(hyperparameter_data(a, "batch_size")),
    ),
    PlotSpec(
        "lr",
        "Energy and efficiency vs learning rate",
        lambda a, r: render_hyperparameter(hyperparameter_data(a, "lr")),
    ),
    PlotSpec(
        "efficiency_train",
        "Accuracy per kJ of training + technique, per technique",
        lambda a, r: render_efficiency(efficiency_data(a)),
    ),
    PlotSpec(
        "efficiency_inference",
        "Correct predictions per joule of inference, per technique",
        lambda a, r: render_efficiency(efficiency_data(a, metric="accuracy_per_j_per_image")),
    ),
    PlotSpec(
        "timeline", "Power timeline of one trial", lambda a, r: render_timeline(timeline_data(a))
    ),
    PlotSpec(
        "memory",
        "Peak memory against 4/8/16/32 GiB capacities",
        lambda a, r: render_memory(memory_data(a)),
    ),
)


class RenderedPlot(NamedTuple):
    """One plot rendered once: format (``png``, ``svg``) -> the file's bytes."""

    name: str
    title: str
    files: Mapping[str, bytes]


def figures(study: Analysis | Records, *, recommended: Recommended = None) -> dict[str, Figure]:
    """Every plot of :data:`PLOTS`, drawn, by name."""
    analysis = as_analysis(study)
    return {spec.name: spec.draw(analysis, recommended) for spec in PLOTS}


def figure_bytes(fig: Figure, fmt: str, *, dpi: int = 100) -> bytes:
    """``fig`` as the bytes of a ``fmt`` file (``png``, ``svg``, ``pdf``...); no date is
    embedded, so the same figure gives the same bytes."""
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": "wattwise"}
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def render_plots(
    study: Analysis | Records,
    *,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 100,
    recommended: Recommended = None,
) -> tuple[RenderedPlot, ...]:
    """Every plot of :data:`PLOTS`, drawn once and rendered once per format; ``recommended``:
    the variants the Pareto plots star (see :data:`Recommended`)."""
    analysis = as_analysis(study)
    rendered = []
    for spec in PLOTS:
        fig = spec.draw(analysis, recommended)
        files = {fmt: figure_bytes(fig, fmt, dpi=dpi) for fmt in formats}
        rendered.append(RenderedPlot(spec.name, spec.title, files))
    return tuple(rendered)


def write_plots(rendered: Sequence[RenderedPlot], out_dir: str | Path) -> list[Path]:
    """Writes each rendered file to ``out_dir/<name>.<format>`` (atomically; the folder is
    created if missing).

    Returns:
        The files written, plot by plot, in the order of their formats.

    Raises:
        OSError: The folder cannot be written.
    """
    out = Path(out_dir)
    return [
        write_bytes_atomic(out / f"{plot.name}.{fmt}", data)
        for plot in rendered
        for fmt, data in plot.files.items()
    ]


def save_all(
    study: Analysis | Records,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 100,
) -> list[Path]:
    """Renders every plot of :data:`PLOTS` into ``out_dir`` (created if missing), once per format.

    Returns:
        The files written, plot by plot, in the order of ``formats``.
    """
    return write_plots(render_plots(study, formats=formats, dpi=dpi), out_dir)


__all__ = [
    "PLOTS",
    "EfficiencyData",
    "HistoryData",
    "HistorySeries",
    "HyperparameterData",
    "HyperparameterLine",
    "MemoryBar",
    "MemoryData",
    "ParetoData",
    "ParetoPoint",
    "PlotSpec",
    "Recommended",
    "RenderedPlot",
    "TimelineData",
    "efficiency_data",
    "figure_bytes",
    "figures",
    "history_data",
    "hyperparameter_data",
    "memory_data",
    "pareto_data",
    "render_efficiency",
    "render_history",
    "render_hyperparameter",
    "render_memory",
    "render_pareto",
    "render_plots",
    "render_timeline",
    "save_all",
    "timeline_data",
    "write_plots",
]
