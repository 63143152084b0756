"""Terminal presentation: tables of measurements and devices (rich), and number formatting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from wattwise.energy.base import Measurement


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def fmt_energy(joules: float | None) -> str:
    if joules is None:
        return "-"
    if abs(joules) >= 3.6e6:
        return f"{joules / 3.6e6:.3f} kWh"
    if abs(joules) >= 1e3:
        return f"{joules / 1e3:.3f} kJ"
    return f"{joules:.3f} J"


def fmt_float(value: float | None, digits: int = 2, unit: str = "") -> str:
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


def summary_rows(outcome: Any) -> list[tuple[str, str]]:
    """The headline of a run: accuracy, energy, efficiency (with units), inference cost."""
    s = outcome.summary()
    rows = [("status", s["status"] + (f" ({s['reason']})" if s["reason"] else ""))]
    if s["test_accuracy"] is not None:
        rows.append(("test accuracy", f"{s['test_accuracy']:.2%}"))
    if s["train_energy_j"] is not None:
        rows.append(
            (
                "training energy",
                f"{fmt_energy(s['train_energy_j'])} ({s['train_energy_provenance']}) in "
                f"{s['train_duration_s']:.1f} s",
            )
        )
    if s["accuracy_per_kj_train"] is not None:
        rows.append(("efficiency (training)", f"{s['accuracy_per_kj_train']:.4g} accuracy per kJ"))
    if "inference_energy_per_image_j" in s:
        rows.append(
            (
                "inference",
                f"{s['inference_energy_per_image_j'] * 1e3:.4g} mJ/image "
                f"({s['inference_energy_provenance']}), "
                f"{s['inference_images_per_s']:.0f} images/s, "
                f"p50 {s['inference_latency_p50_ms']:.2f} ms, "
                f"p95 {s['inference_latency_p95_ms']:.2f} ms per batch",
            )
        )
        if s["accuracy_per_j_per_image"] is not None:
            rows.append(
                (
                    "efficiency (inference)",
                    f"{s['accuracy_per_j_per_image']:.4g} accuracy per (J/image)",
                )
            )
    rows.append(("peak RSS", fmt_bytes(s["peak_rss_bytes"])))
    return rows


def variants_table(variants: Sequence[Any]) -> Group:
    """Before/after: one row per recipe step, all measured by the same inference protocol.

    Two narrow tables (what the model is; what it costs) so that they fit 80 columns.
    """
    base = variants[0] if variants else None
    what = Table(title="variants: accuracy and size", title_justify="left")
    for col in ("step", "accuracy", "params", "MACs", "size"):
        what.add_column(col, justify="left" if col == "step" else "right", no_wrap=True)
    cost = Table(
        title="variants: inference (latency in ms per batch) and payback (in images)",
        title_justify="left",
    )
    for col in ("step", "p50", "p95", "img/s", "mJ/img", "saving", "payback"):
        cost.add_column(col, justify="left" if col == "step" else "right", no_wrap=True)
    for v in variants:
        what.add_row(
            v.step,
            f"{v.accuracy:.2%}",
            f"{v.params:,}",
            "-" if v.macs is None else f"{v.macs / 1e6:.3g} M",
            fmt_bytes(v.size_bytes),
        )
        saving = "-"
        if base is not None and v is not base and v.energy_per_image_j > 0:
            saving = f"{base.energy_per_image_j / v.energy_per_image_j:.2f}x"
        if v is base:
            payback = "-"
        elif v.payback_inferences is None:
            payback = "never"
        else:
            payback = f"{v.payback_inferences:,.0f}"
        cost.add_row(
            v.step,
            f"{v.latency_p50_ms:.3g}",
            f"{v.latency_p95_ms:.3g}",
            f"{v.images_per_s:,.0f}",
            f"{v.energy_per_image_j * 1e3:.4g}",
            saving,
            payback,
        )
    if variants:
        cost.caption = (
            f"energy {variants[-1].energy_provenance}; saving = baseline J/image / variant "
            "J/image; payback = energy spent optimizing (fine-tuning, calibration, compiling) / "
            "energy saved per image"
        )
        cost.caption_justify = "left"
    return Group(what, cost)
