"""The prediction error over a study: stored predictions against the measured train phase, and
the report's "Predictions" section."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.analysis_fixtures import make_record
from wattwise.analysis.markdown import render_markdown
from wattwise.analysis.prediction import (
    prediction_errors,
    prediction_summary,
    trial_prediction_errors,
)
from wattwise.analysis.report import StudyData, render_html, report_data
from wattwise.experiment.record import TrialRecord


def _p(after: int, energy: tuple[float, float, float], duration: tuple[float, float, float],
       epochs: int = 3) -> dict[str, Any]:  # fmt: skip
    return {
        "after_epoch": after, "epochs": epochs, "method": "steady_band",
        "predicted_energy_j": energy[0], "energy_low_j": energy[1], "energy_high_j": energy[2],
        "predicted_duration_s": duration[0], "duration_low_s": duration[1],
        "duration_high_s": duration[2],
    }  # fmt: skip


def _trial(trial_id: str, predictions: list[dict[str, Any]], **changes: Any) -> TrialRecord:
    """A 3-epoch trial that measured 1000 J in 10 s in its train phase."""
    record = make_record(trial_id, train_energy_j=1000.0, epochs=3, seed=len(trial_id))
    details = {**record.details, "prediction": predictions}
    return replace(record, details=details, **changes)


def study() -> list[TrialRecord]:
    a = _trial("a", [_p(1, (1100, 900, 1300), (9, 8, 12)), _p(2, (950, 900, 1000), (10.5, 10, 11))])
    b = _trial("b", [_p(1, (800, 700, 900), (12, 11, 13)), _p(2, (1000, 990, 1010), (10, 9, 11))])
    stopped = _trial("stopped", [_p(1, (1000, 900, 1100), (10, 9, 11))])
    stopped = replace(stopped, history=stopped.history[:2])  # early stopping after epoch 2
    without = _trial("without", [])
    failed = _trial("failed", [_p(1, (5000, 4000, 6000), (50, 40, 60))]).failed("diverged")
    return [a, b, stopped, without, failed]


def test_each_prediction_is_compared_with_the_measured_train_phase():
    (one, two) = trial_prediction_errors(study()[0])
    assert (one.after_epoch, one.measured_energy_j, one.measured_duration_s) == (1, 1000.0, 10.0)
    assert one.energy_error == pytest.approx(0.10) and one.energy_in_interval is True
    assert one.duration_error == pytest.approx(-0.10) and one.duration_in_interval is True
    assert two.energy_error == pytest.approx(-0.05) and two.energy_in_interval is True  # the edge
    assert two.duration_error == pytest.approx(0.05)
    (miss, _) = trial_prediction_errors(study()[1])
    assert miss.energy_error == pytest.approx(-0.2) and miss.energy_in_interval is False
    assert miss.duration_error == pytest.approx(0.2) and miss.duration_in_interval is False


def test_the_summary_is_the_mean_absolute_error_with_n_over_comparable_trials():
    report = prediction_summary(study())
    assert (report.trials, report.stopped_early, report.without) == (4, 1, 1)  # failed: not ok
    first, second = report.summaries
    assert (first.after_epoch, first.n, first.energy_n, first.duration_n) == (1, 2, 2, 2)
    assert first.energy_mae == pytest.approx(0.15) and first.energy_covered == 1
    assert first.duration_mae == pytest.approx(0.15) and first.duration_covered == 1
    assert (second.after_epoch, second.n) == (2, 2)
    assert second.energy_mae == pytest.approx(0.025) and second.energy_covered == 2
    assert second.duration_mae == pytest.approx(0.025) and second.duration_covered == 2
    assert {e.trial_id for e in prediction_errors(study())} == {"a", "b"}


def test_records_without_predictions_or_energy_give_no_error():
    assert prediction_summary([make_record("old")]).summaries == ()
    no_energy = _p(1, (0, 0, 0), (9, 8, 12)) | {"predicted_energy_j": None, "energy_low_j": None}
    (e,) = trial_prediction_errors(_trial("x", [no_energy, {"after_epoch": "?"}]))
    assert e.energy_error is None and e.energy_in_interval is None
    assert e.duration_error == pytest.approx(-0.1)
    summary = prediction_summary([_trial("x", [no_energy])]).summaries[0]
    assert (summary.energy_n, summary.energy_mae, summary.duration_n) == (0, None, 1)


def test_the_report_shows_the_prediction_error_in_a_small_table():
    data = report_data(StudyData(Path("x.sqlite"), "predicted", tuple(study())))
    assert [s.after_epoch for s in data.predictions.summaries] == [1, 2]
    page = render_html(data)
    assert '<a href="#predictions">Predictions</a>' in page
    table = page[page.index('id="predictions-table"') :]
    table = table[: table.index("</table>")]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in table.split("<tr>")[2:]]
    assert rows == [
        ["1", "2", "15.0 %", "1 of 2", "15.0 %", "1 of 2"],
        ["2", "2", "2.5 %", "2 of 2", "2.5 %", "2 of 2"],
    ]
    assert "1 trial(s) that stopped early" in page
    md = render_markdown(data)
    assert "## Predictions" in md
    assert "| 1 | 2 | 15.0 % | 1 of 2 | 15.0 % | 1 of 2 |" in md
    assert "| 2 | 2 | 2.5 % | 2 of 2 | 2.5 % | 2 of 2 |" in md


def test_a_report_without_predictions_says_so():
    data = report_data(StudyData(Path("x.sqlite"), "old", (make_record("a"),)))
    assert "No trial stored a prediction" in render_html(data)
    assert "No trial stored a prediction" in render_markdown(data)
