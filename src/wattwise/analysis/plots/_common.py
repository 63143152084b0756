"""What the plots share: labels and colours of series, figures with an Agg canvas, messages.

Figures are ``matplotlib.figure.Figure`` objects with an Agg canvas: pyplot is never imported, so
the user's backend and pyplot state are untouched and nothing opens a window.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wattwise.analysis.metrics import CONFIG_KEYS, TrialMetrics, VariantSummary, config_label

#: Bytes per GiB on the memory plot (2**30 bytes, the unit of ``gpu_memory_gib``).
GIB = 2**30
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_COLORS += ("#7f7f7f", "#bcbd22", "#17becf")


def series_label(m: TrialMetrics | VariantSummary, several_tasks: bool) -> str:
    """The colour group of a trial or variant: its technique (with dataset · model when the
    study has several)."""
    parts = [m.dataset, m.model, m.technique] if several_tasks else [m.technique]
    return " · ".join(str(p) for p in parts if p) or "(unnamed)"


def several_tasks(items: Sequence[TrialMetrics | VariantSummary]) -> bool:
    """Whether the items span more than one dataset × model."""
    return len({(m.dataset, m.model) for m in items}) > 1


def short_config_label(m: TrialMetrics | VariantSummary, several_tasks: bool) -> str:
    """The configuration, without dataset and model when the study has a single one."""
    values = {k: getattr(m, k) for k in CONFIG_KEYS}
    if not several_tasks:
        values.pop("dataset")
        values.pop("model")
    return config_label(values)


def colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour per distinct label, in sorted order (the same label, the same colour)."""
    return {label: _COLORS[i % len(_COLORS)] for i, label in enumerate(sorted(set(labels)))}


def figure(ncols: int = 1, *, width: float = 7.0, height: float = 4.5) -> tuple[Figure, list[Any]]:
    """A figure with an Agg canvas and ``ncols`` axes in one row (width and height in inches)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def message_figure(title: str, message: str) -> Figure:
    """A figure that says why a plot has nothing to draw (so every file always exists)."""
    fig, (ax,) = figure(height=2.5)
    ax.set_axis_off()
    ax.set_title(title)
    text = "\n".join(textwrap.wrap(message, 80))
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    return fig


def log_if_wide(ax: Any, values: Sequence[float], axis: str = "x") -> None:
    """A log scale when the positive values span more than a factor of 30."""
    positive = [v for v in values if v and v > 0]
    if len(positive) >= 2 and max(positive) / min(positive) > 30:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
