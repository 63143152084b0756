"""The report's main tables as files: CSV and Parquet with every column the report shows, and
LaTeX (booktabs) for papers.

    tables = report_tables(data)          # "variants", "trials", "paybacks" -> ReportTable
    tables["variants"].frame()            # a pandas DataFrame: base units, the unit in each name
    latex_table(tables["variants"])       # \\begin{table} ... \\toprule ... \\bottomrule ...
    write_tables(tables, out / "tables", latex=True)   # <name>.csv, <name>.parquet, <name>.tex

The rows are the report's own (:class:`~wattwise.analysis.report.ReportData`: the variants,
trials and paybacks computed once), so a file cannot disagree with the page. CSV and Parquet hold
numbers in base units (J, g, fractions) under names that say the unit (``training_energy_j``,
``co2e_g``): each interval is its ``_low``/``_high`` columns, each CO2e figure uses the study's
carbon settings, the technique energy holds the teacher share. LaTeX shows the main columns with
each energy column in the unit of its largest value (:mod:`wattwise.units`), the unit in the
header, and every name escaped.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from wattwise.analysis.base import finite
from wattwise.files import write_bytes_atomic, write_text_atomic
from wattwise.units import ENERGY_UNITS, MASS_UNITS, header, pick_unit

if TYPE_CHECKING:
    import pandas as pd

#: A :class:`~wattwise.analysis.report.ReportData` (not imported: report imports this module).
ReportData = Any

Kind = Literal["text", "int", "float", "bool"]
_PANDAS = {"text": "string", "int": "Int64", "float": "float64", "bool": "boolean"}


@dataclass(frozen=True)
class Column:
    """One exported column: its name (the unit in it) and its type."""

    key: str
    kind: Kind = "float"


def _cols(kind: Kind, *keys: str) -> tuple[Column, ...]:
    return tuple(Column(k, kind) for k in keys)


_CONFIG = (
    *_cols("text", "dataset", "model", "technique"),
    *_cols("int", "batch_size"),
    *_cols("float", "lr"),
    *_cols("int", "epochs"),
    *_cols("float", "gpu_memory_gib"),
    *_cols("text", "device_id"),
)
_ACCURACY = _cols("float", "accuracy", "accuracy_low", "accuracy_high")
_ENERGY = _cols("float", "training_energy_j", "technique_energy_j")
_EFFICIENCY = _cols(
    "float",
    "accuracy_per_kj_cost",
    "inference_energy_per_image_j",
    "accuracy_per_j_per_image",
    "energy_per_correct_j",
)
_CO2E = _cols("float", "co2e_training_g", "co2e_technique_g", "co2e_g")
_SAVING = (
    *_cols("float", "saving", "saving_low", "saving_high"),
    Column("saving_significant", "bool"),
)
_VS_FP32 = (
    *_cols("float", "saving_vs_best_fp32", "saving_vs_best_fp32_low", "saving_vs_best_fp32_high"),
    Column("best_fp32", "text"),
)
_NOISE = (Column("noisy", "bool"), Column("noise", "text"))

#: The export columns of each table, in order.
COLUMNS: dict[str, tuple[Column, ...]] = {
    "variants": (
        Column("label", "text"), *_CONFIG, Column("n", "int"), Column("seeds", "text"),
        *_ACCURACY, *_ENERGY, *_cols("float", "measurement_energy_j", "total_energy_j"),
        *_EFFICIENCY, *_SAVING, *_VS_FP32, Column("rank", "int"), *_CO2E,
        *_cols("bool", "pareto_train", "pareto_inference"), Column("flags", "text"), *_NOISE,
        Column("provenance", "text"),
    ),
    "trials": (
        *_cols("text", "trial_id", "label"), *_CONFIG, Column("seed", "int"), *_ACCURACY,
        *_ENERGY, *_cols("float", "teacher_share_j", "measurement_energy_j", "total_energy_j"),
        *_EFFICIENCY, *_CO2E, *_SAVING, Column("verdict", "text"), *_NOISE,
        Column("params", "int"),
        *_cols("text", "train_energy_provenance", "inference_energy_provenance"),
    ),
    "paybacks": (
        *_cols("text", "trial_id", "step", "applied"), Column("reference", "bool"),
        Column("accuracy"), Column("inference_energy_per_image_j"), *_SAVING,
        Column("verdict", "text"), Column("rank", "int"), *_VS_FP32,
        *_cols("float", "optimization_energy_j", "payback_inferences", "payback_low",
               "payback_high"),
        Column("inference_energy_provenance", "text"), *_NOISE,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class LatexColumn:
    """A column of a LaTeX table: its title, the row key it shows and how (``kind``; energies
    and masses take one unit for the column, named in the header; ``per``: ``image`` for J per
    image). Text columns are left-aligned, numbers right-aligned."""

    title: str
    key: str
    kind: Literal["text", "int", "percent", "interval_pct", "ratio", "energy", "mass"] = "text"
    per: str = ""


#: The main columns of the LaTeX tables (the CSV has every column).
LATEX_COLUMNS: dict[str, tuple[LatexColumn, ...]] = {
    "variants": (
        LatexColumn("configuration", "label"),
        LatexColumn("seeds", "n", "int"),
        LatexColumn("accuracy (%)", "accuracy", "percent"),
        LatexColumn("95 % CI (%)", "accuracy", "interval_pct"),
        LatexColumn("training energy", "training_energy_j", "energy"),
        LatexColumn("technique energy", "technique_energy_j", "energy"),
        LatexColumn("inference energy", "inference_energy_per_image_j", "energy", "image"),
        LatexColumn("energy per correct prediction", "energy_per_correct_j", "energy"),
        LatexColumn("saving vs eager baseline (95 % CI)", "saving", "ratio"),
        LatexColumn("CO2e", "co2e_g", "mass"),
    ),
    "trials": (
        LatexColumn("trial", "trial_id"),
        LatexColumn("configuration", "label"),
        LatexColumn("seed", "seed", "int"),
        LatexColumn("accuracy (%)", "accuracy", "percent"),
        LatexColumn("training energy", "training_energy_j", "energy"),
        LatexColumn("technique energy", "technique_energy_j", "energy"),
        LatexColumn("inference energy", "inference_energy_per_image_j", "energy", "image"),
        LatexColumn("saving vs eager baseline (95 % CI)", "saving", "ratio"),
        LatexColumn("CO2e", "co2e_g", "mass"),
    ),
}

_CAPTIONS = {
    "variants": "Variants of study {study} (mean over seeds; accuracy with its 95 % Wilson "
    "interval; energy per trial; saving = baseline J/image / variant J/image from the "
    "interleaved comparison, with its 95 % interval).",
    "trials": "Trials of study {study} (saving against the trial's own eager baseline, "
    "with its 95 % interval).",
    "paybacks": "Measured variants of each trial of study {study}: saving and payback.",
}


@dataclass(frozen=True)
class ReportTable:
    """One table of the report: its name, caption, export columns and rows (column -> value)."""

    name: str
    caption: str
    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, Any], ...]

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with :attr:`columns` (missing values stay missing)."""
        import pandas as pd

        data = {
            c.key: pd.Series([r.get(c.key) for r in self.rows], dtype=_PANDAS[c.kind])
            for c in self.columns
        }
        return pd.DataFrame(data, columns=[c.key for c in self.columns])


def _text(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return "; ".join(str(v) for v in value) if value else None
    return value


def _row(item: Any, columns: Sequence[Column], extra: Mapping[str, Any]) -> dict[str, Any]:
    row = {c.key: _text(extra[c.key] if c.key in extra else getattr(item, c.key, None))
           for c in columns}  # fmt: skip
    return row


def report_tables(data: ReportData) -> dict[str, ReportTable]:
    """The variants, trials and paybacks of ``data`` as :class:`ReportTable` s."""
    from wattwise.analysis.metrics import config_label

    fronts = {b: set(data.pareto.get(b, ())) for b in ("train", "inference")}

    def variant(v: Any) -> dict[str, Any]:
        return _row(v, COLUMNS["variants"], {
            "pareto_train": v.label in fronts["train"],
            "pareto_inference": v.label in fronts["inference"],
            "flags": data.flags.get(v.label, ()),
        })  # fmt: skip

    def trial(t: Any) -> dict[str, Any]:
        return _row(t, COLUMNS["trials"], {"label": config_label(t.to_dict())})

    def payback(p: Any) -> dict[str, Any]:
        return _row(p, COLUMNS["paybacks"], {})

    made: dict[str, tuple[Iterable[Any], Callable[[Any], dict[str, Any]]]] = {
        "variants": (data.variants, variant),
        "trials": (data.trials, trial),
        "paybacks": (data.paybacks, payback),
    }
    return {
        name: ReportTable(
            name,
            _CAPTIONS[name].format(study=data.study),
            COLUMNS[name],
            tuple(make(item) for item in items),
        )
        for name, (items, make) in made.items()
    }


# --- LaTeX ----------------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "µ": r"\textmu{}", "·": r"$\cdot$",
    "×": r"$\times$", "–": "--", "—": "---", "²": r"\textsuperscript{2}",
}  # fmt: skip


def escape_latex(text: Any) -> str:
    """``text`` safe in LaTeX text mode: the special characters escaped (``_`` -> ``\\_``)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _num(value: Any, spec: str = ".3g") -> str:
    number = finite(value)
    return "--" if number is None else format(number, spec)


def _latex_cells(col: LatexColumn, rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """The header and the cells of one LaTeX column."""
    values = [r.get(col.key) for r in rows]
    if col.kind in ("energy", "mass"):
        unit = pick_unit(values, ENERGY_UNITS if col.kind == "energy" else MASS_UNITS)
        cells = [_num(None if finite(v) is None else unit.of(v)) for v in values]  # type: ignore[arg-type]
        return escape_latex(header(col.title, unit, per=col.per)), cells
    if col.kind == "percent":
        return escape_latex(col.title), [_num(None if finite(v) is None else v * 100, ".2f")
                                         for v in values]  # fmt: skip
    if col.kind == "interval_pct":
        ends = [(finite(r.get(f"{col.key}_low")), finite(r.get(f"{col.key}_high"))) for r in rows]
        return escape_latex(col.title), [
            "--" if lo is None or hi is None else f"{lo * 100:.2f}--{hi * 100:.2f}"
            for lo, hi in ends
        ]
    if col.kind == "ratio":
        cells = []
        for r in rows:
            est, lo, hi = (finite(r.get(f"{col.key}{s}")) for s in ("", "_low", "_high"))
            text = "--" if est is None else f"{est:.3g}$\\times$"
            if est is not None and lo is not None and hi is not None:
                text += f" ({lo:.3g}--{hi:.3g})"
            cells.append(text)
        return escape_latex(col.title), cells
    if col.kind == "int":
        return escape_latex(col.title), ["--" if v is None else str(v) for v in values]
    return escape_latex(col.title), ["--" if v is None else escape_latex(v) for v in values]


def latex_table(table: ReportTable) -> str:
    """``table`` as a LaTeX ``table`` with a booktabs ``tabular`` (``\\usepackage{booktabs}``):
    :data:`LATEX_COLUMNS`, numbers right-aligned, units in the headers, names escaped."""
    columns = LATEX_COLUMNS[table.name]
    made = [_latex_cells(c, table.rows) for c in columns]
    align = "".join("l" if c.kind == "text" else "r" for c in columns)
    lines = [
        f"% wattwise: {table.name} table; needs \\usepackage{{booktabs}}",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{{escape_latex(table.caption)}}}",
        f"\\label{{tab:wattwise-{table.name}}}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(h for h, _ in made) + " \\\\",
        "\\midrule",
        *(" & ".join(cells[i] for _, cells in made) + " \\\\" for i in range(len(table.rows))),
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
        "",
    ]
    return "\n".join(lines)


def write_tables(
    tables: Mapping[str, ReportTable], out_dir: str | Path, *, latex: bool = False
) -> list[Path]:
    """Writes each table as ``<name>.csv`` and ``<name>.parquet`` (and, with ``latex``, the
    tables of :data:`LATEX_COLUMNS` as ``<name>.tex``) into ``out_dir``, atomically.

    Returns:
        The files written.

    Raises:
        OSError: The folder cannot be written.
    """
    out = Path(out_dir)
    paths = []
    for name, table in tables.items():
        frame = table.frame()
        paths.append(write_text_atomic(out / f"{name}.csv", frame.to_csv(index=False)))
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        paths.append(write_bytes_atomic(out / f"{name}.parquet", buffer.getvalue()))
        if latex and name in LATEX_COLUMNS:
            paths.append(write_text_atomic(out / f"{name}.tex", latex_table(table)))
    return paths
