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
#: Markers of the configurations within one colour group; the star is the recommendation's.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = ("-", "--", "-.", ":")
#: How transparent a point is, so that one drawn over another still shows.
POINT_ALPHA = 0.7
#: How opaque a confidence band is (under its line, readable where bands overlap).
BAND_ALPHA = 0.2


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


def settings_labels(items: Sequence[TrialMetrics | VariantSummary]) -> list[str]:
    """What tells apart the configurations of one colour group, per item: the training settings
    that vary among ``items`` (``bs 32 · lr 0.01``), without dataset, model and technique."""
    keys = [k for k in CONFIG_KEYS if k not in ("dataset", "model", "technique")]
    varying = [k for k in keys if len({getattr(m, k) for m in items}) > 1]
    return [config_label({k: getattr(m, k) for k in varying}) if varying else "" for m in items]


def colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour per distinct label, in sorted order (the same label, the same colour)."""
    return {label: _COLORS[i % len(_COLORS)] for i, label in enumerate(sorted(set(labels)))}


def markers(groups: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A marker per ``(colour group, configuration)``: configurations of one colour group (e.g.
    the same technique at two learning rates) get distinct markers, in sorted order."""
    by_group: dict[str, list[str]] = {}
    for group, config in sorted(set(groups)):
        by_group.setdefault(group, []).append(config)
    return {
        (group, config): MARKERS[i % len(MARKERS)]
        for group, configs in by_group.items()
        for i, config in enumerate(configs)
    }


def linestyle(marker: str) -> str:
    """The line style that goes with ``marker`` (a second cue where markers are small)."""
    return LINESTYLES[MARKERS.index(marker) % len(LINESTYLES)] if marker in MARKERS else "-"


def wrapped(text: str, width_in: float, fontsize_pt: float = 10.0) -> str:
    """``text`` wrapped, line by line, to fit ``width_in`` inches at ``fontsize_pt`` (an average
    character is about 0.55 em wide), so that a title is never cut at the figure's edge."""
    chars = max(20, int(width_in * 72 / (0.55 * fontsize_pt)))
    return "\n".join("\n".join(textwrap.wrap(line, chars)) or line for line in text.split("\n"))


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
