"""Terminal presentation: rich tables and lines for every command, and number formatting.

Each function turns a library value (a Measurement, a device description, epoch records, recipe
variants, search candidates, trial records, a study summary) into something ``rich`` prints;
nothing here measures or decides.

Size: about 750 lines: the presentation of every command in one place, so that every table
formats numbers, units and markup the same way; each function is small and independent. Live
displays (progress bars) are in :mod:`wattwise.cli.progress`. Number columns keep their line
(``no_wrap``) and text columns wrap, so that a narrow terminal wraps text and never cuts a
number to ``…``; the results table (about 240 lines) chooses its columns for the width.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.console import Console, Group
from rich.markup import escape as _escape_markup
from rich.table import Table
from rich.text import Text

from wattwise.energy.base import Measurement
from wattwise.units import format_energy, format_mass


def fmt_bytes(value: int | None) -> str:
    """Bytes in binary units (``1.0 KiB``, ``3.0 GiB``); ``None`` is ``-``."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def fmt_energy(joules: float | None) -> str:
    """Joules in the unit of their size (:func:`wattwise.units.format_energy`: mJ, J, kJ, kWh)
    with three decimals; ``None`` is ``-``."""
    return format_energy(joules, spec=".3f", missing="-")


def fmt_float(value: float | None, digits: int = 2, unit: str = "") -> str:
    """``value`` with ``digits`` decimals and an optional unit; ``None`` is ``-``."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def measurement_table(m: Measurement) -> Table:
    """Energy by component with provenance, then totals, time and memory.

    How each number was made (the provenance details) goes into the caption, one line per
    component, so that the table stays narrow.
    """
    table = Table(title=f"{m.name}: {m.duration_s:.2f} s", title_justify="left")
    table.add_column("component", overflow="fold")
    for col in ("energy", "avg power", "peak power"):
        table.add_column(col, justify="right", no_wrap=True, overflow="fold")
    table.add_column("provenance", overflow="fold")
    notes: list[str] = []
    for comp in m.components:
        if comp.nested_in is None:
            name = comp.component
        elif comp.nested_in == "platform":
            name = f"  {comp.component} (contains the rest; not summed)"
        else:
            name = f"  {comp.component} (inside {comp.nested_in})"
        table.add_row(
            name,
            fmt_energy(comp.energy_j),
            fmt_float(comp.avg_power_w, 2, "W"),
            fmt_float(comp.peak_power_w, 2, "W"),
            comp.provenance.label,
        )
        if comp.provenance.detail:
            notes.append(f"{comp.component} ({comp.provenance.label}): {comp.provenance.detail}")
    table.add_row(
        "[bold]total[/bold]",
        f"[bold]{fmt_energy(m.total_energy_j)}[/bold]",
        fmt_float(m.avg_power_w, 2, "W"),
        fmt_float(m.peak_power_w, 2, "W"),
        m.total_provenance,
        end_section=True,
    )
    extras: list[tuple[str, str]] = [("peak RSS", fmt_bytes(m.peak_rss_bytes))]
    for comp, used in sorted(m.peak_gpu_memory_bytes.items()):
        extras.append((f"peak {comp} memory", fmt_bytes(used)))
    if m.peak_cuda_allocated_bytes is not None:
        extras.append(("peak CUDA allocated", fmt_bytes(m.peak_cuda_allocated_bytes)))
        extras.append(("peak CUDA reserved", fmt_bytes(m.peak_cuda_reserved_bytes)))
    if m.carbon is not None:
        extras.append(("CO2e", format_mass(m.carbon.co2e_g)))
        notes.append(
            f"CO2e: {m.carbon.intensity_g_per_kwh:g} g/kWh ({m.carbon.source}), "
            f"PUE {m.carbon.pue:g}"
        )
    for label, value in extras:
        table.add_row(label, value, "", "", "")
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table


def devices_table(info: dict[str, Any]) -> Table:
    """Every meter of ``describe_devices()``: its provenance (green when it measures, red
    ``unavailable`` when not) and the components it reads. How each measures, or why not, is in
    :func:`devices_notes`, printed under the table at the terminal's full width, so that a
    detail such as a path is not wrapped inside a narrow column.
    """
    table = Table(title="meters", title_justify="left")
    for col in ("meter", "provenance", "components"):
        table.add_column(col, no_wrap=True)
    for meter in info["meters"]:
        available = meter["available"]
        table.add_row(
            meter["meter"],
            f"[green]{escape(meter['provenance'])}[/green]"
            if available
            else "[red]unavailable[/red]",
            ", ".join(meter["components"]) or "-",
        )
    return table


def devices_notes(info: dict[str, Any]) -> list[str]:
    """One line per meter of ``describe_devices()``: ``meter: how it measures, or why not``."""
    return [f"{escape(m['meter'])}: {escape(m['detail'])}" for m in info["meters"]]


def print_rows(console: Console, title: str, rows: Sequence[tuple[str, str]]) -> None:
    """Prints ``(key, value)`` rows as a two-column table without a header."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


#: The columns of the per-epoch table with their widths, fixed so that the one-row tables
#: printed epoch after epoch line up: each fits its widest usual value (``100.00%``,
#: ``0.000123``, ``9999.9 s``, ``999.999 kJ``, ``unavailable``, ``1023.0 MiB``).
EPOCH_COLUMNS = (
    ("epoch", 5),
    ("loss", 7),
    ("acc", 7),
    ("val acc", 7),
    ("lr", 8),
    ("time", 8),
    ("energy", 10),
    ("source", 11),
    ("peak RSS", 10),
)
#: Left out, in this order, while the epoch table is wider than the terminal (peak memory is
#: in the run's summary too).
EPOCH_DROPPED = ("peak RSS", "lr", "time")


def epoch_table(
    records: Sequence[Any] = (), *, header: bool = True, width: int | None = None
) -> Table:
    """One row per epoch: loss, accuracy, time, energy with provenance, peak memory.

    Args:
        records: Epoch records.
        header: Print the header (the first epoch's table only).
        width: The terminal's width: the columns of :data:`EPOCH_DROPPED` are left out while
            the table is wider (``None``: every column). A value wider than its column wraps
            onto a second line; nothing is cut.
    """
    names = [name for name, _ in EPOCH_COLUMNS]
    widths = dict(EPOCH_COLUMNS)
    for name in EPOCH_DROPPED:
        if width is None or sum(widths[n] for n in names) + 2 * (len(names) - 1) <= width:
            break
        names.remove(name)
    table = Table(show_header=header, box=None, pad_edge=False, padding=(0, 1))
    for name in names:
        table.add_column(name, justify="right", width=widths[name], overflow="fold")
    for r in records:
        cells = {
            "epoch": str(r.epoch),
            "loss": f"{r.train_loss:.4f}",
            "acc": f"{r.train_accuracy:.2%}",
            "val acc": "-" if r.val_accuracy is None else f"{r.val_accuracy:.2%}",
            "lr": f"{r.lr:.3g}",
            "time": f"{r.duration_s:.1f} s",
            "energy": fmt_energy(r.energy_j),
            "source": r.energy_provenance,
            "peak RSS": fmt_bytes(r.peak_rss_bytes),
        }
        table.add_row(*(cells[name] for name in names))
    return table


def summary_rows(record: Any) -> list[tuple[str, str]]:
    """The headline of a trial record: accuracy, energy, efficiency (with units), inference."""
    train = record.phases.get("train") or {}
    rows = [("status", record.status + (f" ({record.reason})" if record.reason else ""))]
    if record.accuracy is not None:
        rows.append(("test accuracy", f"{record.accuracy:.2%}"))
    if record.train_energy_j is not None:
        duration = train.get("duration_s")
        took = f" in {duration:.1f} s" if duration is not None else ""
        rows.append(
            (
                "training energy",
                f"{fmt_energy(record.train_energy_j)} ({record.train_energy_provenance}){took}",
            )
        )
    if record.accuracy_per_kj_train is not None:
        rows.append(
            ("efficiency (training)", f"{record.accuracy_per_kj_train:.4g} accuracy per kJ")
        )
    if record.inference_energy_per_image_j is not None:
        rows.append(
            (
                "inference",
                f"{record.inference_energy_per_image_j * 1e3:.4g} mJ/image "
                f"({record.inference_energy_provenance}), "
                f"{record.images_per_s:.0f} images/s, "
                f"p50 {record.latency_p50_ms:.2f} ms, "
                f"p95 {record.latency_p95_ms:.2f} ms per batch",
            )
        )
        if record.accuracy_per_j_per_image is not None:
            rows.append(
                (
                    "efficiency (inference)",
                    f"{record.accuracy_per_j_per_image:.4g} correct predictions per J",
                )
            )
    rows.append(("peak RSS", fmt_bytes(record.peak_rss_bytes)))
    return rows


def variants_table(variants: Sequence[Any], references: Sequence[Any] = ()) -> Group:
    """Before/after: one row per recipe step (and fair reference), all measured side by side
    by the comparison protocol; savings with their intervals and verdicts.

    Three narrow tables (what the model is; what it costs; what it saves) that fit 80 columns:
    the numbers keep their line and a long step name wraps. A step marked ``!`` was measured
    while the machine was noisy (see the caption).
    """
    rows = [*variants, *references]
    what = Table(title="variants: accuracy and size", title_justify="left")
    cost = Table(
        title="inference: median of the rounds (latency in ms per batch)", title_justify="left"
    )
    saves = Table(
        title="saving in J/image (95 % interval) and payback (images)", title_justify="left"
    )
    for table, numbers in (
        (what, ("accuracy", "params", "MACs", "size")),
        (cost, ("mJ/img", "CV", "img/s", "p50", "p95", "rank")),
        (saves, ("vs fp32 eager", "vs best fp32", "payback")),
    ):
        table.add_column("step", overflow="fold")
        for col in numbers:
            table.add_column(col, justify="right", no_wrap=True, overflow="fold")
    shared = Counter(getattr(v, "rank", None) for v in rows)
    for v in rows:
        name = v.step + (" !" if getattr(v, "noisy", False) else "")
        what.add_row(
            name,
            f"{v.accuracy:.2%}",
            f"{v.params:,}",
            "-" if v.macs is None else fmt_count(v.macs),
            fmt_bytes(v.model_bytes),
        )
        j = v.inference_energy_per_image_j
        cv = v.stats.cv_j_per_image if getattr(v, "stats", None) is not None else None
        cost.add_row(
            name,
            _num(j * 1e3 if j is not None else None, "{:.4g}"),
            _num(cv * 100 if cv is not None else None, "{:.0f} %"),
            _num(v.images_per_s, "{:,.0f}"),
            _num(v.latency_p50_ms, "{:.3g}"),
            _num(v.latency_p95_ms, "{:.3g}"),
            _rank(getattr(v, "rank", None), shared),
        )
        if v.step != "baseline":
            saves.add_row(
                name,
                _ratio(getattr(v, "saving", None)),
                _ratio(getattr(v, "saving_vs_best_fp32", None)),
                "-" if v.reference else _payback(v),
            )
    if rows:
        noisy = [v for v in rows if getattr(v, "noisy", False)]
        cost.caption = (
            f"energy {rows[0].inference_energy_provenance or 'not measured'}; rank by J/image, "
            "'=' shared: no significant difference"
        )
        best = next((v.best_fp32 for v in rows if getattr(v, "best_fp32", None)), None)
        saves.caption = (
            "saving = reference J/image / variant J/image (>1: less energy); '~' = no "
            f"significant difference; best fp32 = {best or '-'}; payback = energy spent "
            "optimizing / energy saved per image, 'never' unless the saving is significant"
            + "".join(f"\n! {v.step}: {'; '.join(v.stats.noise)}" for v in noisy)
        )
        cost.caption_justify = saves.caption_justify = "left"
    return Group(what, cost, saves)


def _rank(rank: int | None, shared: Counter[int | None]) -> str:
    """``1``, or ``2=`` for a rank that several variants share; ``-`` when not ranked."""
    if rank is None:
        return "-"
    return f"{rank}=" if shared[rank] > 1 else str(rank)


def rank_line(ranks: Mapping[str, int | None]) -> str | None:
    """``ranked by J/image: 1 a · 2= b, c · 4 baseline`` (ties: no significant difference)."""
    ranked = sorted((r, name) for name, r in ranks.items() if r is not None)
    if not ranked:
        return None
    groups: dict[int, list[str]] = {}
    for r, name in ranked:
        groups.setdefault(r, []).append(escape(name))
    parts = [
        f"{r}{'=' if len(names) > 1 else ''} {', '.join(names)}" for r, names in groups.items()
    ]
    return "ranked by J/image (= : no significant difference): " + " · ".join(parts)


def _ratio(ratio: Any) -> str:
    """``2.31x 2.10-2.54``, or ``~1.02x 0.95-1.08`` when not significant."""
    if ratio is None or ratio.saving is None:
        return "-"
    mark = "" if ratio.significant else "~"
    if ratio.low is None or ratio.high is None:
        return f"{mark}{ratio.saving:.2f}x"
    return f"{mark}{ratio.saving:.2f}x {ratio.low:.2f}-{ratio.high:.2f}"


def _payback(v: Any) -> str:
    """``1.5M 1.1M-2.1M`` images (``never`` when the saving is not significant)."""
    if v.payback_inferences is None:
        return "never"
    high = "never" if v.payback_high is None else fmt_count(v.payback_high)
    low = "-" if v.payback_low is None else fmt_count(v.payback_low)
    return f"{fmt_count(v.payback_inferences)} {low}-{high}"


def fmt_count(value: float) -> str:
    """A count in 3 significant digits with k/M/G (``1,541,123`` -> ``1.54M``)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def escape(text: str | None) -> str:
    """``text`` with rich markup characters escaped (``None``: an empty string)."""
    return _escape_markup(text or "")


def machine_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """The machine part of ``describe_devices()``: CPU, memory, how the CPU is estimated."""
    machine, power = info["machine"], info["cpu_power_model"]
    return [
        ("CPU model", machine["cpu_model"]),
        ("logical CPUs / cores", f"{machine['logical_cpus']} / {machine['physical_cores']}"),
        ("memory", fmt_bytes(machine["memory_bytes"])),
        ("CPU estimate", power["description"]),
        ("TDP source", power["source"]),
        ("powercap root", info["powercap_root"]),
    ]


def gpu_lines(info: dict[str, Any]) -> list[str]:
    """One line per GPU of ``describe_devices()``: name, NVML index, UUID, energy counter."""
    return [
        f"{gpu['component']}: {gpu['name']} (NVML index {gpu['nvml_index']}, {gpu['uuid']}), "
        f"energy counter: {'yes' if gpu['energy_counter'] else 'no'}"
        for gpu in info["gpus"]
    ]


def model_rows(stats: Any) -> list[tuple[str, str]]:
    """Parameters, MACs, FLOPs and size of a :class:`~wattwise.models.inspect.ModelStats`."""
    return [
        ("parameters", f"{stats.params:,} ({stats.params / 1e6:.2f} M)"),
        ("MACs (multiply-accumulates)", f"{stats.macs:,} ({stats.macs / 1e9:.3f} G)"),
        ("FLOPs (= 2 x MACs)", f"{stats.flops:,} ({stats.flops / 1e9:.3f} G)"),
        ("serialized size", f"{stats.size_bytes:,} bytes"),
    ]


def command_status(result: Any) -> str | None:
    """How a measured command ended when it did not succeed (``None`` when it exited 0)."""
    if result.returncode == 0:
        return None
    how = "was interrupted" if result.interrupted else f"exited with code {result.exit_code}"
    return f"[yellow]the command {how}[/yellow]"


def variant_line(variant: Any) -> str:
    """One line as a recipe variant is measured: its step, accuracy and mJ/image."""
    j = variant.inference_energy_per_image_j
    cost = f"{j * 1e3:.4g} mJ/image" if j is not None else "inference not measured"
    return f"  measured {variant.step}: accuracy {variant.accuracy:.2%}, {cost}"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


class ResultsColumn(NamedTuple):
    """A column of ``wattwise results``: its ``--columns`` name, its header, its cell text, and
    whether it holds numbers (right-aligned)."""

    name: str
    header: str
    cell: Callable[[Any], str]
    number: bool = False


def _spec_cell(key: str) -> Callable[[Any], str]:
    return lambda r: str(r.spec.get(key, "-"))


def _lr_text(lr: Any) -> str:
    return "-" if lr is None else f"{float(lr):g}"


def _mj_text(record: Any) -> str:
    j = record.inference_energy_per_image_j
    return "-" if j is None else f"{j * 1e3:.3g}"


#: Every column of ``wattwise results``, in the order the table shows them.
RESULTS_COLUMNS = (
    ResultsColumn("id", "id", lambda r: r.trial_id),
    ResultsColumn("dataset", "dataset", _spec_cell("dataset")),
    ResultsColumn("model", "model", _spec_cell("model")),
    ResultsColumn("technique", "technique", _spec_cell("technique")),
    ResultsColumn("bs", "bs", _spec_cell("batch_size"), number=True),
    ResultsColumn("lr", "lr", lambda r: _lr_text(r.spec.get("lr")), number=True),
    ResultsColumn("epochs", "epochs", _spec_cell("epochs"), number=True),
    ResultsColumn("seed", "seed", _spec_cell("seed"), number=True),
    ResultsColumn("status", "status", lambda r: r.status),
    ResultsColumn("accuracy", "accuracy", lambda r: _num(r.accuracy, "{:.2%}"), number=True),
    ResultsColumn(
        "train_energy", "train energy", lambda r: fmt_energy(r.train_energy_j), number=True
    ),
    ResultsColumn("mj_per_image", "mJ/image", _mj_text, number=True),
)
_RESULTS_COLUMN = {c.name: c for c in RESULTS_COLUMNS}
#: The columns shown at any width without ``--columns`` (``train_energy`` takes the place of
#: ``mj_per_image`` when no trial measured inference); then, in this order, each of the others
#: whose values differ between trials while the terminal has room, and those whose value is the
#: same in every trial when they all fit (else that value is named under the table).
RESULTS_CORE = ("id", "technique", "accuracy", "mj_per_image", "status")
RESULTS_OPTIONAL = ("seed", "train_energy", "lr", "bs", "epochs", "model", "dataset")
#: Techniques longer than this are shown as ``T1``, ``T2``... with the full recipe under the
#: table, unless the whole text fits.
TECHNIQUE_LABEL_CHARS = 14
_ENERGY_COLUMNS = ("train_energy", "mj_per_image")
_STATUS_STYLE = {"failed": "red", "running": "yellow"}  # only status cells hold these words


class ResultsTable(NamedTuple):
    """The ``wattwise results`` table and the lines printed under it, each whole (print them
    with ``soft_wrap=True``): the recipe of each short technique label, failure reasons,
    energy provenance, and the columns left out."""

    table: Table
    legend: tuple[str, ...]


def parse_results_columns(text: str) -> tuple[str, ...]:
    """``"id,technique,accuracy"`` as column names, checked (see :data:`RESULTS_COLUMNS`).

    Raises:
        ValueError: An empty, unknown or repeated name (the message lists the valid ones).
    """
    names = tuple(part.strip() for part in text.split(","))
    check_results_columns(names)
    return names


def check_results_columns(names: Sequence[str]) -> None:
    """Raises ValueError unless ``names`` are known column names, each at most once."""
    valid = ", ".join(_RESULTS_COLUMN)
    for i, name in enumerate(names):
        if not name:
            raise ValueError(f"empty column name; columns: {valid}")
        if name not in _RESULTS_COLUMN:
            raise ValueError(f"unknown column {name!r}; columns: {valid}")
        if name in names[:i]:
            raise ValueError(f"column {name!r} twice; columns: {valid}")


def results_table(
    records: Sequence[Any],
    *,
    title: str = "trials",
    width: int | None = None,
    columns: Sequence[str] | None = None,
) -> ResultsTable:
    """One row per trial, laid out for a terminal ``width`` characters wide.

    Without ``columns``: :data:`RESULTS_CORE`, then as many of :data:`RESULTS_OPTIONAL` as fit
    (``width=None``: all). No cell is cut: a technique too long for the width is shown as a
    label (``T1``) whose recipe goes under the table, and so do failure reasons; a column left
    out whose value is the same in every trial is named there with its value. Energy
    provenance goes under the table when a column holds one kind, else into each cell. When
    the ``columns`` asked for are wider than ``width``, cells wrap instead of being cut.

    Raises:
        ValueError: An unknown or repeated column name.
    """
    if columns is not None:
        check_results_columns(columns)
    cells = {c.name: [c.cell(r) for r in records] for c in RESULTS_COLUMNS}
    for name in _ENERGY_COLUMNS:
        cells[name] = _with_provenance(name, records, cells[name])
    limit = width if width is not None else sys.maxsize
    shown, hidden, labels = _layout(records, cells, limit, columns)
    one_line = _table_width(shown, cells, labels) <= limit
    table = Table(title=f"{escape(title)} ({len(records)} trials)", title_justify="left")
    for name in shown:
        column = _RESULTS_COLUMN[name]
        justify = "right" if column.number else "left"
        table.add_column(column.header, justify=justify, no_wrap=one_line, overflow="fold")
    for i in range(len(records)):
        row = {n: labels[cells[n][i]] if n == "technique" else cells[n][i] for n in shown}
        table.add_row(*(Text(row[n], style=_STATUS_STYLE.get(row[n], "")) for n in shown))
    legend = [f"{label} = {t}" for t, label in labels.items() if label != t]
    legend += [
        f"failed {r.trial_id}: {r.reason or 'no reason recorded'}"
        for r in records
        if r.status == "failed"
    ]
    if any(r.status == "running" for r in records):
        legend.append("running: started and not finished (interrupted?); a resumed sweep runs it")
    legend += _provenance_line([n for n in shown if n in _ENERGY_COLUMNS], records)
    same = [n for n in hidden if records and len(set(cells[n])) == 1]
    if same:
        legend.append("same in every trial: " + ", ".join(f"{n} {cells[n][0]}" for n in same))
    if others := [n for n in hidden if n not in same]:
        legend.append(f"not shown at this width: {', '.join(others)} (see --columns)")
    return ResultsTable(table, tuple(legend))


def _layout(
    records: Sequence[Any],
    cells: Mapping[str, list[str]],
    limit: int,
    columns: Sequence[str] | None,
) -> tuple[list[str], list[str], dict[str, str]]:
    """The columns shown (in table order), those left out for want of room, and the label of
    each technique (itself, or ``T1``... when the whole texts do not fit in ``limit``)."""
    core, optional = list(RESULTS_CORE), list(RESULTS_OPTIONAL)
    if not any(r.inference_energy_per_image_j is not None for r in records):
        swap = dict(zip(_ENERGY_COLUMNS, _ENERGY_COLUMNS[::-1], strict=True))
        core, optional = [swap.get(n, n) for n in core], [swap.get(n, n) for n in optional]
    shown = list(columns) if columns is not None else core
    techniques = list(dict.fromkeys(cells["technique"]))
    labels = {t: t for t in techniques}
    if _table_width(shown, cells, labels) > limit:
        labels = technique_labels(techniques)
    if "technique" not in shown:
        labels = {t: t for t in techniques}  # no labels to explain
    hidden: list[str] = []
    if columns is None:
        optional = [n for n in optional if set(cells[n]) != {"-"}]  # nothing to show
        for name in [n for n in optional if len(set(cells[n])) > 1]:  # values that differ
            fits = _table_width([*shown, name], cells, labels) <= limit
            (shown if fits else hidden).append(name)
        same = [n for n in optional if len(set(cells[n])) <= 1]  # all shown, or all named
        fits = _table_width([*shown, *same], cells, labels) <= limit
        (shown if fits else hidden).extend(same)
        order = list(_RESULTS_COLUMN)
        shown.sort(key=order.index)
        hidden.sort(key=order.index)
    return shown, hidden, labels


def _table_width(
    names: Sequence[str], cells: Mapping[str, list[str]], labels: Mapping[str, str]
) -> int:
    """Characters the results table takes with columns ``names`` and no cell wrapped: each
    column its widest cell or header, a space either side and a rule, and the first rule."""
    total = 1
    for name in names:
        texts = [labels[t] for t in cells[name]] if name == "technique" else cells[name]
        total += max(cell_len(t) for t in (_RESULTS_COLUMN[name].header, *texts)) + 3
    return total


def technique_labels(techniques: Sequence[str]) -> dict[str, str]:
    """Technique -> the label a narrow table shows: itself when at most
    :data:`TECHNIQUE_LABEL_CHARS` long, else ``T1``, ``T2``... in order."""
    labels: dict[str, str] = {}
    count = 0
    for technique in techniques:
        if len(technique) > TECHNIQUE_LABEL_CHARS:
            count += 1
            labels[technique] = f"T{count}"
        else:
            labels[technique] = technique
    return labels


def _energy_provenance(name: str, record: Any) -> str | None:
    """The provenance of ``record``'s value in energy column ``name`` (``None``: no value)."""
    if name == "train_energy":
        value, provenance = record.train_energy_j, record.train_energy_provenance
    else:
        value, provenance = record.inference_energy_per_image_j, record.inference_energy_provenance
    return None if value is None else provenance or "unknown"


def _with_provenance(name: str, records: Sequence[Any], cells: list[str]) -> list[str]:
    """``cells`` with each value's provenance added when the column holds several kinds."""
    kinds = [_energy_provenance(name, r) for r in records]
    if len({k for k in kinds if k is not None}) <= 1:
        return cells
    return [c if k is None else f"{c} ({k})" for c, k in zip(cells, kinds, strict=True)]


def _provenance_line(names: Sequence[str], records: Sequence[Any]) -> list[str]:
    """``energy: estimated`` (or one kind per column) for the energy columns ``names`` whose
    values have one provenance; columns of several kinds carry it in their cells."""
    single: dict[str, str] = {}
    for name in names:
        kinds = {k for r in records if (k := _energy_provenance(name, r)) is not None}
        if len(kinds) == 1:
            single[_RESULTS_COLUMN[name].header] = kinds.pop()
    if not single:
        return []
    if len(set(single.values())) == 1:
        return [f"energy: {next(iter(single.values()))}"]
    return ["energy: " + "; ".join(f"{header} {kind}" for header, kind in single.items())]


def study_summary_table(summary: Any) -> Table:
    """The end of a study (a :class:`~wattwise.experiment.sweep.StudySummary`): counts, best
    accuracy, lowest training energy, time, paths."""
    title = f"study {summary.study}" + (" (interrupted)" if summary.interrupted else "")
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    table.add_row("trials", f"{summary.total} ({summary.search})")
    table.add_row("ok", str(summary.ok))
    table.add_row("failed", str(summary.failed))
    table.add_row("skipped (finished earlier)", str(summary.skipped))
    table.add_row("run now", str(summary.ran))
    if summary.elsewhere:
        table.add_row("left to another sweep", str(summary.elsewhere))
    if summary.left:
        table.add_row("left to run (resume)", str(summary.left))
    if summary.best_accuracy is not None:
        best = summary.best_accuracy
        table.add_row("best accuracy", f"{best.value:.2%}  {best.label}  [{best.trial_id}]")
    if summary.lowest_train_energy is not None:
        low = summary.lowest_train_energy
        table.add_row(
            "lowest training energy",
            f"{fmt_energy(low.value)} ({low.provenance})  {low.label}  [{low.trial_id}]",
        )
    table.add_row("time", f"{summary.duration_s:.1f} s")
    if summary.ok:
        co2e = f", CO2e {format_mass(summary.co2e_g)}" if summary.co2e_g is not None else ""
        table.add_row("energy (all phases)", f"{fmt_energy(summary.energy_j)}{co2e}")
        table.add_row(
            "trainings",
            f"{summary.trainings} for {summary.ok} ok trials; reuse avoided "
            f"{fmt_energy(summary.training_avoided_j)}",
        )
    for search in getattr(summary, "searches", ()):
        table.add_row("recipe search", escape(f"{search.message} [{search.path}]"))
    if getattr(summary, "searches", ()):
        table.add_row("recipe search energy", fmt_energy(summary.search_energy_j))
        table.add_row("study energy (trials + search)", fmt_energy(summary.total_energy_j))
    table.add_row("results", str(summary.store_path))
    table.add_row("resolved config", str(summary.config_path))
    return table


def failed_lines(summary: Any, retry: str) -> list[str]:
    """The failed trials of a study, one line each, and how to run them again (``retry``: the
    command)."""
    if not summary.failed_trials:
        return []
    lines = [f"[red]failed[/red] {escape(label)} [{tid}]: {escape(reason)}"
             for tid, label, reason in summary.failed_trials]  # fmt: skip
    lines.append(f"{len(lines)} failed trial(s); run them again: {escape(retry)}")
    return lines


def study_start_line(study: str, total: int, done: int, executor: str) -> str:
    """The plan of a study run: trials, those finished earlier, those to run, the executor."""
    return (
        f"study [bold]{escape(study)}[/bold]: {total} trials, {done} finished earlier, "
        f"{total - done} to run ({executor} executor)"
    )


def trial_line(record: Any, done: int, total: int) -> str:
    """One line per finished trial: status, label, accuracy, training energy, J/image, time."""
    from wattwise.experiment.summary import describe_trial

    label = escape(describe_trial(record.spec))
    where = f"{done}/{total}"
    if record.status != "ok":
        return f"[red]failed[/red] {where} {label}: {escape(record.reason or '')}"
    parts = [f"[green]ok[/green]     {where} {label}:"]
    if record.accuracy is not None:
        parts.append(f"acc {record.accuracy:.2%}")
    if record.train_energy_j is not None:
        energy = format_energy(record.train_energy_j, spec=".4g")
        parts.append(f"train {energy} ({record.train_energy_provenance})")
    if record.inference_energy_per_image_j is not None:
        parts.append(format_energy(record.inference_energy_per_image_j, per="image"))
    final = record.final_variant
    if final is not None and final.verdict and final.step != "baseline":
        parts.append(escape(final.verdict))
    if record.duration_s is not None:
        parts.append(f"{record.duration_s:.1f} s")
    if record.noisy:
        flagged = sum(v.noisy for v in record.variants)
        parts.append(f"[yellow]noisy ({flagged} of {len(record.variants)} variants)[/yellow]")
    return "  ".join(parts)


def candidate_line(c: Any) -> str:
    """``prune:structured:0.5... ft 1: 95.2 %, 2.31x (2.10-2.54), within the floor``."""
    if c.reason:
        return f"{escape(c.recipe)}: failed ({escape(c.reason)})"
    saving = "-" if c.saving is None else f"{c.saving:.2f}x"
    if c.low is not None and c.high is not None and c.recipe != "baseline":
        saving += f" ({c.low:.2f}-{c.high:.2f})"
    floor = "within the floor" if c.feasible else "below the floor"
    noisy = ", noisy" if c.noisy else ""
    return f"{escape(c.recipe)} ft {c.finetune_epochs}: {c.accuracy:.2%}, {saving}, {floor}{noisy}"


def candidates_table(result: Any) -> Table:
    """Every candidate, best saving first: recipe, fine-tuning, accuracy, saving, marks."""
    table = Table(
        title=f"{len(result.candidates)} candidate(s) by saving (95 % interval)",
        title_justify="left",
        caption="* chosen; P on the accuracy-saving Pareto front; = not significantly "
        "different from the chosen; - below the floor",
        caption_justify="left",
    )
    table.add_column("", no_wrap=True)
    table.add_column("recipe", overflow="fold")
    table.add_column("ft", justify="right", no_wrap=True)
    table.add_column("acc", justify="right", no_wrap=True)
    table.add_column("saving", justify="right", no_wrap=True)
    order = sorted(range(len(result.candidates)),
                   key=lambda i: -(result.candidates[i].saving or 0.0))  # fmt: skip
    for i in order:
        c = result.candidates[i]
        marks = ("*" if i == result.chosen else "") + ("P" if i in result.front else "")
        marks += ("=" if i in result.tied else "") + ("" if c.feasible else "-")
        saving = "-" if c.saving is None else f"{c.saving:.2f}x"
        if c.low is not None and c.high is not None and c.recipe != "baseline":
            saving += f" {c.low:.2f}-{c.high:.2f}"
        accuracy = "-" if c.accuracy is None else f"{c.accuracy:.2%}"
        table.add_row(marks, escape(c.recipe), str(c.finetune_epochs), accuracy, saving)
    return table
