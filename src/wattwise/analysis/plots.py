"""Plots of a study: each one computes its data (a small NamedTuple), then renders it.

    data = pareto_data(store.records("ok"), by="train")   # ParetoData: points and fronts
    fig = render_pareto(data)                               # a matplotlib Figure
    fig.savefig("pareto.png")
    save_all(store.records(), "report/plots")               # every plot as PNG and SVG

Figures are ``matplotlib.figure.Figure`` objects with an Agg canvas: pyplot is never imported,
so the user's backend and pyplot state are untouched and nothing opens a window. Only ``ok``
trials are plotted. A plot without data renders a figure that says why (e.g. "no timeline
recorded"), so every file always exists.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from wattwise.analysis.metrics import (
    CONFIG_KEYS,
    TrialMetrics,
    VariantSummary,
    as_record,
    config_label,
    pareto_front,
    summarize,
    trial_metrics,
)
from wattwise.analysis.stats import mean_ci
from wattwise.experiment.record import TrialRecord

Records = Iterable[TrialRecord | Mapping[str, Any]]

#: GPU memory capacities drawn on the memory plot (GB = 2**30 bytes, as ``gpu_memory_gb``).
CAPACITIES_GB = (4, 8, 16, 32)
_GB = 2**30
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_COLORS += ("#7f7f7f", "#bcbd22", "#17becf")


def _ok(records: Records) -> list[TrialRecord]:
    return [r for r in (as_record(x) for x in records) if r.status == "ok"]


def _series_label(m: TrialMetrics | VariantSummary, several_tasks: bool) -> str:
    parts = [m.dataset, m.model, m.technique] if several_tasks else [m.technique]
    return " · ".join(str(p) for p in parts if p) or "(unnamed)"


def _several_tasks(items: Sequence[TrialMetrics | VariantSummary]) -> bool:
    return len({(m.dataset, m.model) for m in items}) > 1


def _colors(labels: Iterable[str]) -> dict[str, str]:
    return {label: _COLORS[i % len(_COLORS)] for i, label in enumerate(sorted(set(labels)))}


def _figure(ncols: int = 1, *, width: float = 7.0, height: float = 4.5) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _message_figure(title: str, message: str) -> Figure:
    fig, (ax,) = _figure(height=2.5)
    ax.set_axis_off()
    ax.set_title(title)
    text = "\n".join(textwrap.wrap(message, 80))
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    return fig


def _config_label(m: TrialMetrics | VariantSummary, several_tasks: bool) -> str:
    """The configuration, without dataset and model when the study has a single one."""
    values = {k: getattr(m, k) for k in CONFIG_KEYS}
    if not several_tasks:
        values.pop("dataset")
        values.pop("model")
    return config_label(values)


def _log_if_wide(ax: Any, values: Sequence[float], axis: str = "x") -> None:
    positive = [v for v in values if v and v > 0]
    if len(positive) >= 2 and max(positive) / min(positive) > 30:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


# --- accuracy vs energy, with the Pareto front ---------------------------------------------------


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


def pareto_data(records: Records, *, by: str = "train") -> ParetoData:
    """Accuracy against energy of each configuration (mean over seeds) and the Pareto front of
    each dataset × model. ``by``: ``train`` (kJ of training) or ``inference`` (mJ per image)."""
    if by not in ("train", "inference"):
        raise ValueError(f"by must be 'train' or 'inference', got {by!r}")
    variants = summarize(_ok(records))
    several = _several_tasks(variants)
    scale, x_label = (
        (1e-3, "training energy (kJ)") if by == "train" else (1e3, "inference (mJ/image)")
    )
    points: list[ParetoPoint] = []
    tasks: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    for v in variants:
        energy = v.energy(by)  # type: ignore[arg-type]
        if v.accuracy is None or energy is None:
            continue
        tasks[(v.dataset, v.model)].append(len(points))
        points.append(ParetoPoint(v.label, _series_label(v, several), v.accuracy, energy * scale))
    fronts = []
    for members in tasks.values():
        front = pareto_front([(points[i].accuracy, points[i].energy) for i in members])
        fronts.append(tuple(members[i] for i in front))
    message = None if points else f"no finished trial has accuracy and {x_label}"
    return ParetoData(by, x_label, tuple(points), tuple(fronts), message)


def render_pareto(data: ParetoData) -> Figure:
    title = f"Accuracy vs {'training' if data.by == 'train' else 'inference'} energy"
    if data.message:
        return _message_figure(title, data.message)
    fig, (ax,) = _figure(width=9.0)
    colors = _colors(p.series for p in data.points)
    for series, color in colors.items():
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
    _log_if_wide(ax, [p.energy for p in data.points])
    ax.set_xlabel(data.x_label + " — lower is better")
    ax.set_ylabel("test accuracy — higher is better")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --- per-epoch history ---------------------------------------------------------------------------


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


def history_data(records: Records, *, max_series: int = 10) -> HistoryData:
    """Accuracy and cumulative training energy after each epoch, per configuration (mean over
    seeds at each epoch), from the records' per-epoch ``history``."""
    ok = [r for r in _ok(records) if r.history]
    has_val = any(e.get("val_accuracy") is not None for r in ok for e in r.history)
    key = "val_accuracy" if has_val else "train_accuracy"
    metrics = [trial_metrics(r) for r in ok]
    several = _several_tasks(metrics)
    groups: dict[str, tuple[str, list[TrialRecord]]] = {}
    for rec, m in zip(ok, metrics, strict=True):
        label = _config_label(m, several)
        groups.setdefault(label, (_series_label(m, several), []))[1].append(rec)
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
    title = "Accuracy and cumulative energy per epoch"
    if data.message:
        return _message_figure(title, data.message)
    fig, (ax_acc, ax_energy) = _figure(2, width=13)
    colors = _colors(s.series for s in data.series)
    for s in data.series:
        style = {"color": colors[s.series], "marker": "o", "markersize": 3, "linewidth": 1.2}
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


# --- energy and efficiency against a hyperparameter ----------------------------------------------


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


def hyperparameter_data(records: Records, param: str) -> HyperparameterData:
    """Training energy (kJ) and accuracy per kJ of training against ``param`` (``batch_size`` or
    ``lr``), per technique: mean and 95 % CI over the seeds (and the other swept settings) at
    each value."""
    if param not in ("batch_size", "lr"):
        raise ValueError(f"param must be 'batch_size' or 'lr', got {param!r}")
    metrics = [trial_metrics(r) for r in _ok(records)]
    several = _several_tasks(metrics)
    cells: dict[str, dict[float, list[TrialMetrics]]] = defaultdict(lambda: defaultdict(list))
    for m in metrics:
        x = getattr(m, param)
        if x is not None and m.train_energy_j is not None:
            cells[_series_label(m, several)][float(x)].append(m)
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
    name = {"batch_size": "batch size", "lr": "learning rate"}[data.param]
    title = f"Energy and efficiency vs {name} (mean ± 95 % CI)"
    if data.message:
        return _message_figure(title, data.message)
    fig, (ax_e, ax_f) = _figure(2, width=11)
    colors = _colors(line.series for line in data.lines)
    for line in data.lines:
        for ax, values in ((ax_e, line.energy_kj), (ax_f, line.efficiency)):
            mean = [math.nan if v[0] is None else v[0] for v in values]
            low = [m if v[1] is None else v[1] for m, v in zip(mean, values, strict=True)]
            high = [m if v[2] is None else v[2] for m, v in zip(mean, values, strict=True)]
            ax.plot(line.x, mean, color=colors[line.series], marker="o", label=line.series)
            ax.fill_between(line.x, low, high, color=colors[line.series], alpha=0.15, linewidth=0)
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


# --- efficiency bars -----------------------------------------------------------------------------


class EfficiencyData(NamedTuple):
    metric: str  # "accuracy_per_kj_train" or "accuracy_per_j_per_image"
    y_label: str
    labels: tuple[str, ...]
    means: tuple[float, ...]
    lows: tuple[float | None, ...]
    highs: tuple[float | None, ...]
    n: tuple[int, ...]
    message: str | None


_EFFICIENCY_LABELS = {
    "accuracy_per_kj_train": "accuracy per kJ of training (1/kJ)",
    "accuracy_per_j_per_image": "accuracy per J/image (image/J)",
}


def efficiency_data(records: Records, *, metric: str = "accuracy_per_kj_train") -> EfficiencyData:
    """Mean efficiency per technique with its 95 % CI over every trial of the technique."""
    if metric not in _EFFICIENCY_LABELS:
        raise ValueError(f"metric must be one of {', '.join(_EFFICIENCY_LABELS)}, got {metric!r}")
    metrics = [trial_metrics(r) for r in _ok(records)]
    several = _several_tasks(metrics)
    groups: dict[str, list[float]] = defaultdict(list)
    for m in metrics:
        value = getattr(m, metric)
        if value is not None:
            groups[_series_label(m, several)].append(value)
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
    title = "Efficiency per technique (mean ± 95 % CI)"
    if data.message:
        return _message_figure(title, data.message)
    fig, (ax,) = _figure(width=max(6.0, 1.2 * len(data.labels) + 2))
    colors = _colors(data.labels)
    lower = [m - lo if lo is not None else 0 for m, lo in zip(data.means, data.lows, strict=True)]
    upper = [hi - m if hi is not None else 0 for m, hi in zip(data.means, data.highs, strict=True)]
    xs = range(len(data.labels))
    ax.bar(
        xs,
        data.means,
        yerr=[lower, upper],
        capsize=4,
        color=[colors[label] for label in data.labels],
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


# --- power timeline ------------------------------------------------------------------------------


class TimelineData(NamedTuple):
    trial_id: str | None
    phase: str | None
    t_s: tuple[float, ...]
    power_w: Mapping[str, tuple[float, ...]]  # component -> watts at each t_s
    message: str | None


def timeline_data(
    records: Records, *, trial_id: str | None = None, phase: str | None = None
) -> TimelineData:
    """The sampled power of one phase of one trial (the first ``ok`` trial that kept a timeline,
    preferring the ``train`` phase). Trial records keep the training phase's timeline (thinned to
    at most 600 samples); where none was kept, ``message`` says so."""
    for rec in _ok(records):
        if trial_id is not None and rec.trial_id != trial_id:
            continue
        names = [phase] if phase else ["train", *sorted(rec.phases)]
        for name in names:
            samples = (rec.phases.get(name) or {}).get("timeline")
            if samples:
                comps = sorted({c for s in samples for c in (s.get("power_w") or {})})
                return TimelineData(
                    rec.trial_id,
                    name,
                    tuple(float(s["t_s"]) for s in samples),
                    {
                        c: tuple(float((s.get("power_w") or {}).get(c, math.nan)) for s in samples)
                        for c in comps
                    },
                    None,
                )
    which = f" for trial {trial_id}" if trial_id else ""
    return TimelineData(
        trial_id,
        phase,
        (),
        {},
        f"no timeline recorded{which}: only the training phase keeps its power samples "
        "(measure a run with `wattwise monitor --json` to keep one)",
    )


def render_timeline(data: TimelineData) -> Figure:
    title = "Power timeline"
    if data.message:
        return _message_figure(title, data.message)
    fig, (ax,) = _figure()
    colors = _colors(data.power_w)
    for comp, watts in data.power_w.items():
        ax.plot(data.t_s, watts, color=colors[comp], label=comp, linewidth=1)
    ax.set_xlabel("time since the phase began (s)")
    ax.set_ylabel("power (W)")
    ax.set_title(f"{title}: trial {data.trial_id}, phase {data.phase}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# --- peak memory against GPU capacities ----------------------------------------------------------


class MemoryBar(NamedTuple):
    label: str
    peak_gb: float
    source: str  # "CUDA allocated" or "RSS"
    cap_gb: float | None
    enforced: bool


class MemoryData(NamedTuple):
    bars: tuple[MemoryBar, ...]
    capacities_gb: tuple[float, ...]
    note: str | None  # e.g. on CPU: the cap was not enforced
    message: str | None


def memory_data(records: Records, *, capacities_gb: Sequence[float] = CAPACITIES_GB) -> MemoryData:
    """Peak memory of each configuration (highest over seeds; GB = 2**30 bytes): peak CUDA
    allocation on GPU runs, peak resident memory (RSS) of the process tree on CPU runs."""
    peaks: dict[str, MemoryBar] = {}
    not_enforced = False
    ok = _ok(records)
    several = _several_tasks([trial_metrics(r) for r in ok])
    for rec in ok:
        enforced = bool((rec.details.get("memory_cap") or {}).get("enforced"))
        cap = rec.spec.get("gpu_memory_gb")
        if cap is not None and not enforced:
            not_enforced = True
        if rec.peak_cuda_allocated_bytes:
            peak, source = rec.peak_cuda_allocated_bytes, "CUDA allocated"
        elif rec.peak_rss_bytes:
            peak, source = rec.peak_rss_bytes, "RSS"
        else:
            continue
        label = _config_label(trial_metrics(rec), several)
        bar = MemoryBar(label, peak / _GB, source, cap, enforced)
        if label not in peaks or bar.peak_gb > peaks[label].peak_gb:
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
    return MemoryData(tuple(peaks.values()), tuple(capacities_gb), note, message)


def render_memory(data: MemoryData) -> Figure:
    title = "Peak memory against GPU memory capacities"
    if data.message:
        return _message_figure(title, data.message)
    fig, (ax,) = _figure(width=max(6.0, 0.5 * len(data.bars) + 3), height=5)
    colors = ["#d62728" if b.cap_gb and b.peak_gb > b.cap_gb else "#1f77b4" for b in data.bars]
    hatches = ["" if b.source == "CUDA allocated" else "//" for b in data.bars]
    xs = list(range(len(data.bars)))
    for x, bar, color, hatch in zip(xs, data.bars, colors, hatches, strict=True):
        ax.bar(x, bar.peak_gb, color=color, hatch=hatch, edgecolor="white")
    top = max(b.peak_gb for b in data.bars)
    above = [c for c in sorted(data.capacities_gb) if c >= top]
    y_max = max(top * 1.15, (above[0] * 1.08) if above else top * 1.15)
    for cap in data.capacities_gb:
        if cap <= y_max:
            ax.axhline(cap, color="gray", linestyle="--", linewidth=1)
            ax.text(len(xs) - 0.5, cap, f" {cap:g} GB", va="bottom", ha="right", fontsize="small")
    hidden = [f"{c:g}" for c in data.capacities_gb if c > y_max]
    ax.set_ylim(0, y_max)
    ax.set_xticks(xs, [b.label for b in data.bars], rotation=30, ha="right", fontsize="x-small")
    sources = sorted({b.source for b in data.bars})
    ax.set_ylabel(f"peak memory (GB = 2^30 bytes; {', '.join(sources)})")
    lines = [title]
    if hidden:
        lines.append(f"capacities above the axis: {', '.join(hidden)} GB")
    if data.note:
        lines.append(data.note)
    ax.set_title("\n".join(lines), fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return fig


# --- everything at once --------------------------------------------------------------------------


class PlotSpec(NamedTuple):
    name: str
    title: str


#: The plots :func:`save_all` writes, in order (file stem, caption).
PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec("pareto_train", "Accuracy vs training energy, with the Pareto front"),
    PlotSpec("pareto_inference", "Accuracy vs inference energy per image, with the Pareto front"),
    PlotSpec("history", "Accuracy and cumulative training energy per epoch"),
    PlotSpec("batch_size", "Energy and efficiency vs batch size"),
    PlotSpec("lr", "Energy and efficiency vs learning rate"),
    PlotSpec("efficiency_train", "Accuracy per kJ of training, per technique"),
    PlotSpec("efficiency_inference", "Accuracy per J/image, per technique"),
    PlotSpec("timeline", "Power timeline of one trial"),
    PlotSpec("memory", "Peak memory against 4/8/16/32 GB capacities"),
)


def figures(records: Records) -> dict[str, Figure]:
    """Every plot of :data:`PLOTS`, rendered, by name."""
    recs = [as_record(r) for r in records]
    return {
        "pareto_train": render_pareto(pareto_data(recs, by="train")),
        "pareto_inference": render_pareto(pareto_data(recs, by="inference")),
        "history": render_history(history_data(recs)),
        "batch_size": render_hyperparameter(hyperparameter_data(recs, "batch_size")),
        "lr": render_hyperparameter(hyperparameter_data(recs, "lr")),
        "efficiency_train": render_efficiency(efficiency_data(recs)),
        "efficiency_inference": render_efficiency(
            efficiency_data(recs, metric="accuracy_per_j_per_image")
        ),
        "timeline": render_timeline(timeline_data(recs)),
        "memory": render_memory(memory_data(recs)),
    }


def save_all(
    records: Records,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 100,
) -> list[Path]:
    """Renders every plot of :data:`PLOTS` into ``out_dir`` (created if missing), once per format.

    Returns:
        The files written, plot by plot, in the order of ``formats``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(records).items():
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            metadata = {"Date": None} if fmt == "svg" else {"Software": "wattwise"}
            fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
            paths.append(path)
    return paths
