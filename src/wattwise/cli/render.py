"""Terminal presentation: rich tables and lines for every command, and number formatting.

Each function turns a library value (a Measurement, a device description, epoch records, recipe
variants, search candidates, trial records, a study summary) into something ``rich`` prints;
nothing here measures or decides.

Size: about 540 lines: the presentation of every command in one place, so that every table
formats numbers, units and markup the same way; each function is small and independent. Live
displays (progress bars) are in :mod:`wattwise.cli.progress`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.markup import escape as _escape_markup
from rich.table import Table

from wattwise.energy.base import Measurement


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
    """Joules as J, kJ or kWh with three decimals; ``None`` is ``-``."""
    if joules is None:
        return "-"
    if abs(joules) >= 3.6e6:
        return f"{joules / 3.6e6:.3f} kWh"
    if abs(joules) >= 1e3:
        return f"{joules / 1e3:.3f} kJ"
    return f"{joules:.3f} J"


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
    table.add_column("component")
    table.add_column("energy", justify="right")
    table.add_column("avg power", justify="right")
    table.add_column("peak power", justify="right")
    table.add_column("provenance")
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
        extras.append(("CO2e", f"{m.carbon.co2e_g:.3g} g"))
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
    """Every meter of ``describe_devices()``: available or not, provenance, components, why."""
    table = Table(title="meters", title_justify="left")
    for col in ("meter", "available", "provenance", "components"):
        table.add_column(col)
    table.add_column("detail / reason", overflow="fold", max_width=80)
    for meter in info["meters"]:
        table.add_row(
            meter["meter"],
            "[green]yes[/green]" if meter["available"] else "[red]no[/red]",
            meter["provenance"] if meter["available"] else "unavailable",
            ", ".join(meter["components"]) or "-",
            meter["detail"],
        )
    return table


def print_rows(console: Console, title: str, rows: Sequence[tuple[str, str]]) -> None:
    """Prints ``(key, value)`` rows as a two-column table without a header."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def epoch_table(records: Sequence[Any] = (), *, header: bool = True) -> Table:
    """One row per epoch: loss, accuracy, time, energy with provenance, peak memory."""
    table = Table(show_header=header, box=None, pad_edge=False, padding=(0, 1))
    for col, width in (
        ("epoch", 5),
        ("loss", 7),
        ("acc", 7),
        ("val acc", 7),
        ("lr", 7),
        ("time", 7),
        ("energy", 10),
        ("source", 9),
        ("peak RSS", 9),
    ):
        table.add_column(col, justify="right", width=width, no_wrap=True)
    for r in records:
        table.add_row(
            str(r.epoch),
            f"{r.train_loss:.4f}",
            f"{r.train_accuracy:.2%}",
            "-" if r.val_accuracy is None else f"{r.val_accuracy:.2%}",
            f"{r.lr:.3g}",
            f"{r.duration_s:.1f} s",
            fmt_energy(r.energy_j),
            r.energy_provenance,
            fmt_bytes(r.peak_rss_bytes),
        )
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
                    f"{record.accuracy_per_j_per_image:.4g} accuracy per (J/image)",
                )
            )
    rows.append(("peak RSS", fmt_bytes(record.peak_rss_bytes)))
    return rows


def variants_table(variants: Sequence[Any], references: Sequence[Any] = ()) -> Group:
    """Before/after: one row per recipe step (and fair reference), all measured side by side
    by the comparison protocol; savings with their intervals and verdicts.

    Three narrow tables (what the model is; what it costs; what it saves) that fit 80 columns.
    A step marked ``!`` was measured while the machine was noisy (see the caption).
    """
    rows = [*variants, *references]
    what = Table(title="variants: accuracy and size", title_justify="left")
    for col in ("step", "accuracy", "params", "MACs", "size"):
        what.add_column(col, justify="left" if col == "step" else "right", no_wrap=True)
    cost = Table(
        title="inference: median of the rounds (latency in ms per batch)", title_justify="left"
    )
    for col in ("step", "mJ/img", "CV", "img/s", "p50", "p95", "rank"):
        cost.add_column(col, justify="left" if col == "step" else "right", no_wrap=True)
    shared = Counter(getattr(v, "rank", None) for v in rows)
    saves = Table(
        title="saving in J/image (95 % interval) and payback (images)", title_justify="left"
    )
    for col in ("step", "vs fp32 eager", "vs best fp32", "payback"):
        saves.add_column(col, justify="left" if col == "step" else "right", no_wrap=True)
    for v in rows:
        name = v.step + (" !" if getattr(v, "noisy", False) else "")
        what.add_row(
            name,
            f"{v.accuracy:.2%}",
            f"{v.params:,}",
            "-" if v.macs is None else f"{v.macs / 1e6:.3g} M",
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


def results_table(records: Sequence[Any], *, title: str = "trials") -> Table:
    """One row per trial: id, point of the grid, status (or reason), accuracy, training energy
    in joules with its provenance, and inference energy per image."""
    table = Table(title=f"{title} ({len(records)} trials)", title_justify="left")
    for name in ("id", "dataset", "model", "technique", "bs", "lr", "epochs", "seed"):
        table.add_column(name, no_wrap=name in ("id", "technique"))
    table.add_column("status / reason", overflow="fold", max_width=48)
    table.add_column("accuracy", justify="right")
    table.add_column("train energy J", justify="right")
    table.add_column("J/image", justify="right")
    for r in records:
        s = r.spec
        status = r.status if r.status != "failed" else f"[red]failed[/red]: {escape(r.reason)}"
        if r.status == "running":
            status = "[yellow]running[/yellow] (interrupted? resumes)"
        energy = "-"
        if r.train_energy_j is not None:
            energy = f"{r.train_energy_j:.4g} ({r.train_energy_provenance})"
        per_image = "-"
        if r.inference_energy_per_image_j is not None:
            per_image = f"{r.inference_energy_per_image_j:.3g} ({r.inference_energy_provenance})"
        table.add_row(
            r.trial_id,
            str(s.get("dataset", "-")),
            str(s.get("model", "-")),
            escape(str(s.get("technique", "-"))),
            str(s.get("batch_size", "-")),
            f"{float(s['lr']):g}" if s.get("lr") is not None else "-",
            str(s.get("epochs", "-")),
            str(s.get("seed", "-")),
            status,
            f"{r.accuracy:.2%}" if r.accuracy is not None else "-",
            energy,
            per_image,
        )
    return table


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
        co2e = f", CO2e {summary.co2e_g:.3g} g" if summary.co2e_g is not None else ""
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
        parts.append(f"train {record.train_energy_j:.4g} J ({record.train_energy_provenance})")
    if record.inference_energy_per_image_j is not None:
        parts.append(f"{record.inference_energy_per_image_j:.3g} J/image")
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
    table.add_column("ft", justify="right")
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
