"""The report's tables as files: CSV and Parquet carry every column the report shows, LaTeX is
booktabs with escaped names and units in the headers."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.analysis.analysis_fixtures import make_record, variant, write_study
from wattwise import cli
from wattwise.analysis.report import load_study, report_data
from wattwise.analysis.tables import escape_latex, latex_table, report_tables

TEMPLATE = Path(__file__).parents[2] / "src/wattwise/analysis/templates/report.html"


def _shown(table_id: str, var: str) -> set[str]:
    """The attributes of ``var`` (``v``, ``t``, ``p``) that the HTML table ``table_id`` shows."""
    html = TEMPLATE.read_text(encoding="utf-8")
    start = html.index(f'id="{table_id}"')
    body = html[start : html.index("</table>", start)]
    return set(re.findall(rf"\b{var}\.(\w+)", body)) - {"to_dict", "label"}


@pytest.mark.parametrize(
    ("name", "table_id", "var"),
    [("variants", "variants-table", "v"), ("trials", "trials-table", "t"),
     ("paybacks", "payback-table", "p")],
)  # fmt: skip
def test_the_exports_carry_every_column_the_report_shows(
    estimated_report: Any, name: str, table_id: str, var: str
) -> None:
    shown = _shown(table_id, var)
    assert {"accuracy_low", "technique_energy_j"} <= shown or name == "paybacks"
    tables = estimated_report.out_dir / "tables"
    with open(tables / f"{name}.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    columns = set(rows[0])
    assert shown <= columns, sorted(shown - columns)
    parquet = pq.read_table(tables / f"{name}.parquet")
    assert parquet.column_names == list(rows[0])
    assert parquet.num_rows == len(rows) > 0


def test_the_variants_export_holds_the_reports_numbers(tmp_path: Path) -> None:
    compared = (variant("baseline", 0.95, 0.002),
                variant("quantize:int8", 0.9, 0.001, optimization_energy_j=40.0))  # fmt: skip
    records = [make_record(f"q{s}", technique="quantize:int8", seed=s, variants=compared)
               for s in range(2)]  # fmt: skip
    data = report_data(load_study(write_study(tmp_path / "s", records, study="numbers")))
    frame = report_tables(data)["variants"].frame()
    assert len(frame) == len(data.variants) == 1
    (v,) = data.variants
    row = frame.iloc[0]
    for key in ("accuracy_low", "accuracy_high", "co2e_g", "co2e_technique_g",
                "technique_energy_j", "energy_per_correct_j"):  # fmt: skip
        assert getattr(v, key) is not None and row[key] == pytest.approx(getattr(v, key)), key
    assert str(frame["n"].dtype) == "Int64" and str(frame["saving_significant"].dtype) == "boolean"
    assert {"pareto_train", "pareto_inference", "flags"} <= set(frame.columns)
    assert bool(row["pareto_inference"]) is True  # the only variant: on its front


def test_latex_escapes_names() -> None:
    assert escape_latex("prune_structured 50% & #1 {x} ~ ^ \\") == (
        r"prune\_structured 50\% \& \#1 \{x\} \textasciitilde{} \textasciicircum{} "
        r"\textbackslash{}"
    )
    assert escape_latex("µJ · ×2 <b>") == r"\textmu{}J $\cdot$ $\times$2 \textless{}b\textgreater{}"


def _latex_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Structure of one booktabs tabular: the rules in order and the cells of each row."""
    body = text[text.index(r"\begin{tabular}") : text.index(r"\end{tabular}")]
    rules = re.findall(r"\\(toprule|midrule|bottomrule)", body)
    lines = [ln.strip() for ln in body.splitlines()[1:] if ln.strip().endswith(r"\\")]
    cells = [re.split(r"(?<!\\)&", ln[:-2]) for ln in lines]
    return rules, [[c.strip() for c in row] for row in cells]


def test_latex_tables_are_booktabs_with_units_in_the_headers(tmp_path: Path) -> None:
    records = [
        make_record("b0", technique="prune_x:0.5", seed=0, train_energy_j=2.6),
        make_record("b1", technique="prune_x:0.5", seed=1, train_energy_j=2.8),
    ]
    folder = write_study(tmp_path / "s", records, study="under_score & 100%")
    data = report_data(load_study(folder))
    text = latex_table(report_tables(data)["variants"])
    assert "\\begin{table}" in text and "\\end{table}" in text
    rules, rows = _latex_rows(text)
    assert rules == ["toprule", "midrule", "bottomrule"]
    header, *body = rows
    assert len(body) == 1 and all(len(r) == len(header) for r in rows)
    (columns,) = re.findall(r"\\begin\{tabular\}\{([lrc]+)\}", text)
    assert len(columns) == len(header)
    assert "training energy (J)" in header  # 2.6 and 2.8 J: in J, not 0.0027 kJ
    assert any(h.startswith("inference energy (mJ/image)") for h in header)
    assert "prune\\_x:0.5" in body[0][0] and "prune_x" not in text.replace("prune\\_x", "")
    assert "2.7" in body[0]  # the mean of 2.6 and 2.8 J
    assert "under\\_score \\& 100\\%" in text  # the study's name in the caption, escaped


def test_report_latex_writes_the_tables(
    estimated_report: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sorted(p.name for p in estimated_report.tables) == [
        f"{n}.{ext}" for n in ("paybacks", "trials", "variants") for ext in ("csv", "parquet")
    ]  # no LaTeX unless asked for
    folder = write_study(tmp_path / "s", [make_record("a"), make_record("b", seed=1)], study="x")
    assert cli.main(["report", str(folder), "--out", str(tmp_path / "r"), "--latex"]) == 0
    out = capsys.readouterr().out
    tables = tmp_path / "r" / "tables"
    assert f"tables: {tables} (8 files: CSV, Parquet, LaTeX)" in out
    assert sorted(p.name for p in tables.glob("*.tex")) == ["trials.tex", "variants.tex"]
    assert "\\toprule" in (tables / "variants.tex").read_text(encoding="utf-8")
