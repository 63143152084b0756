"""Peak memory of each configuration against the GPU memory capacities a study compares.

render_memory(memory_data(analysis))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import Analysis, Records, as_analysis
from wattwise.analysis.plots._common import (
    GIB,
    figure,
    message_figure,
    several_tasks,
    short_config_label,
    wrapped,
)
from wattwise.train.config import GPU_MEMORY_CAPACITIES_GIB


class MemoryBar(NamedTuple):
    label: str
    peak_gib: float
    source: str  # "CUDA allocated" or "RSS"
    cap_gib: float | None
    enforced: bool


class MemoryData(NamedTuple):
    bars: tuple[MemoryBar, ...]
    capacities_gib: tuple[float, ...]
    note: str | None  # e.g. on CPU: the cap was not enforced
    message: str | None


def memory_data(
    study: Analysis | Records, *, capacities_gib: Sequence[float] = GPU_MEMORY_CAPACITIES_GIB
) -> MemoryData:
    """Peak memory of each configuration (highest over seeds; GiB = 2**30 bytes): peak CUDA
    allocation on GPU runs, peak resident memory (RSS) of the process tree on CPU runs. The cap
    and whether it was enforced come from each record's ``memory_cap``."""
    analysis = as_analysis(study)
    peaks: dict[str, MemoryBar] = {}
    not_enforced = False
    several = several_tasks(analysis.trials)
    for rec, m in zip(analysis.records, analysis.trials, strict=True):
        cap_record = rec.memory_cap
        enforced = cap_record is not None and cap_record.enforced
        cap = cap_record.gpu_memory_gib if cap_record is not None else m.gpu_memory_gib
        if cap is not None and not enforced:
            not_enforced = True
        if rec.peak_cuda_allocated_bytes:
            peak, source = rec.peak_cuda_allocated_bytes, "CUDA allocated"
        elif rec.peak_rss_bytes:
            peak, source = rec.peak_rss_bytes, "RSS"
        else:
            continue
        label = short_config_label(m, several)
        bar = MemoryBar(label, peak / GIB, source, cap, enforced)
        if label not in peaks or bar.peak_gib > peaks[label].peak_gib:
            peaks[label] = bar
    notes = []
    if any(b.source == "RSS" for b in peaks.values()):
        notes.append(
            "CPU run: a GPU memory cap is not enforced on CPU; hatched bars show the peak "
            "resident memory (RSS) of the process tree"
        )
    if not_enforced and not notes:
        notes.append("a GPU memory cap was set but not enforced in some trials")
    note = "; ".join(notes) or None
    message = None if peaks else "no peak memory recorded in the finished trials"
    return MemoryData(tuple(peaks.values()), tuple(capacities_gib), note, message)


def render_memory(data: MemoryData) -> Figure:
    """One bar per configuration (red above its cap, hatched for RSS) and the capacities as
    dashed lines."""
    title = "Peak memory against GPU memory capacities"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax,) = figure(width=max(6.0, 0.5 * len(data.bars) + 3), height=5)
    fills = ["#d62728" if b.cap_gib and b.peak_gib > b.cap_gib else "#1f77b4" for b in data.bars]
    hatches = ["" if b.source == "CUDA allocated" else "//" for b in data.bars]
    xs = list(range(len(data.bars)))
    for x, bar, color, hatch in zip(xs, data.bars, fills, hatches, strict=True):
        ax.bar(x, bar.peak_gib, color=color, hatch=hatch, edgecolor="white")
    top = max(b.peak_gib for b in data.bars)
    above = [c for c in sorted(data.capacities_gib) if c >= top]
    y_max = max(top * 1.15, (above[0] * 1.08) if above else top * 1.15)
    for cap in data.capacities_gib:
        if cap <= y_max:
            ax.axhline(cap, color="gray", linestyle="--", linewidth=1)
            ax.text(len(xs) - 0.5, cap, f" {cap:g} GiB", va="bottom", ha="right", fontsize="small")
    hidden = [f"{c:g}" for c in data.capacities_gib if c > y_max]
    ax.set_ylim(0, y_max)
    ax.set_xticks(xs, [b.label for b in data.bars], rotation=30, ha="right", fontsize="x-small")
    sources = sorted({b.source for b in data.bars})
    ax.set_ylabel(f"peak memory (GiB = 2^30 bytes; {', '.join(sources)})")
    lines = [title]
    if hidden:
        lines.append(f"capacities above the axis: {', '.join(hidden)} GiB")
    if data.note:
        lines.append(data.note)
    ax.set_title(wrapped("\n".join(lines), fig.get_figwidth() * 0.9, 10.0), fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return fig
