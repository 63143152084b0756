"""The store's exports carry the per-trial columns the report shows (what one record says on its
own; CO2e, teacher shares and accuracy intervals are the study's: ``report/tables/``)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from tests.analysis.analysis_fixtures import make_record, variant
from wattwise.experiment import EXPORT_COLUMNS, ResultsStore


def test_the_export_has_the_reports_per_trial_columns(tmp_path: Path) -> None:
    final = replace(
        variant("quantize:int8", 0.9, 0.001, optimization_energy_j=40.0),
        saving=2.0, saving_low=1.9, saving_high=2.1, saving_significant=True,
        saving_vs_best_fp32=1.5, saving_vs_best_fp32_low=1.4, saving_vs_best_fp32_high=1.6,
        best_fp32="fp32 compiled", verdict="2x less J/image (1.9 to 2.1, 95 %)",
    )  # fmt: skip
    record = make_record("q", technique="quantize:int8",
                         variants=(variant("baseline", 0.95, 0.002), final))  # fmt: skip
    with ResultsStore(tmp_path / "results.sqlite", study="s") as store:
        store.finish_trial(record)
        store.export_csv(tmp_path / "out.csv")
        frame = store.to_dataframe()
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as file:
        (row,) = list(csv.DictReader(file))
    for column in ("training_energy_j", "teacher_energy_j", "verdict", "best_fp32",
                   "saving_vs_best_fp32", "saving_vs_best_fp32_low",
                   "saving_vs_best_fp32_high"):  # fmt: skip
        assert column in EXPORT_COLUMNS and column in row, column
    assert float(row["training_energy_j"]) == pytest.approx(record.training_energy_j)
    assert float(row["teacher_energy_j"]) == 0.0
    assert row["verdict"] == "2x less J/image (1.9 to 2.1, 95 %)"
    assert row["best_fp32"] == "fp32 compiled"
    assert float(row["saving_vs_best_fp32_low"]) == 1.4
    assert frame["saving_vs_best_fp32_high"][0] == 1.6
