"""The live predictions: the line `wattwise train` prints after each of the first epochs, the
record that keeps them, and what a sweep's display shows of them."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wattwise.cli import main
from wattwise.cli.progress import StudyProgress, TrainBar, prediction_line
from wattwise.config import MeasurementSettings
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec
from wattwise.train.config import TrainConfig
from wattwise.train.predict import Prediction

LINE = re.compile(
    r"after epoch (\d) of 3: predicted total ([\d.]+) (m?J|kJ) \(([\d.]+)-([\d.]+)\), "
    r"([\d.]+) s \(([\d.]+)-([\d.]+)\)"
)


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False), out


def _prediction(after: int = 1, **changes: Any) -> Prediction:
    values: dict[str, Any] = {
        "after_epoch": after, "epochs": 5, "predicted_energy_j": 1234.0, "energy_low_j": 900.0,
        "energy_high_j": 1600.0, "predicted_duration_s": 190.0, "duration_low_s": 160.0,
        "duration_high_s": 230.0, "method": "first_epoch_band",
    }  # fmt: skip
    return Prediction(**(values | changes))


def test_the_prediction_line_gives_energy_and_time_with_their_intervals():
    assert prediction_line(_prediction()) == (
        "after epoch 1 of 5: predicted total 1.23 kJ (0.9-1.6), 3 min 10 s (2:40-3:50)"
    )
    short = _prediction(
        predicted_energy_j=9.36, energy_low_j=7.9, energy_high_j=11.2,
        predicted_duration_s=2.1, duration_low_s=1.8, duration_high_s=2.5,
    )  # fmt: skip
    assert prediction_line(short).endswith("predicted total 9.36 J (7.9-11.2), 2.1 s (1.8-2.5)")
    hours = _prediction(predicted_duration_s=7500.0, duration_low_s=6600, duration_high_s=8400)
    assert prediction_line(hours).endswith("2 h 05 min (1:50-2:20)")
    no_energy = _prediction(predicted_energy_j=None, energy_low_j=None, energy_high_j=None)
    assert "energy unknown, 3 min 10 s" in prediction_line(no_energy)


def test_train_prints_the_prediction_and_the_record_keeps_it_with_the_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    out_dir = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--model", "small_cnn", "--epochs", "3"]
    argv += ["--out", str(out_dir), "--inference-seconds", "0", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    shown = LINE.findall(out)
    assert [int(m[0]) for m in shown] == [1, 2], out  # after epochs 1 and 2, not after the last
    record = json.loads((out_dir / "run.json").read_text())
    stored = record["details"]["prediction"]
    assert [p["after_epoch"] for p in stored] == [1, 2]
    assert [p["method"] for p in stored] == ["first_epoch_band", "steady_band"]
    for line, p in zip(shown, stored, strict=True):  # what was shown is what is kept
        assert float(line[5]) == pytest.approx(p["predicted_duration_s"], rel=0.01, abs=0.01)
        assert p["energy_low_j"] <= p["predicted_energy_j"] <= p["energy_high_j"]
    # ... and the outcome it is compared with: the train phase (training + validation passes)
    assert record["train_energy_j"] == pytest.approx(record["phases"]["train"]["total_energy_j"])
    assert record["phases"]["train"]["duration_s"] > 0


def test_the_training_bar_predicts_only_after_the_first_epochs_of_a_run():
    console, out = _console()
    bar = TrainBar(console)
    for e in range(1, 6):
        bar.on_epoch_start(e, 5, 10)
        bar.on_epoch_end(e)
        bar.on_record({"epoch": e, "duration_s": 1.0, "energy_j": 5.0})
    lines = [line for line in out.getvalue().splitlines() if line.strip()]  # the bars: blank
    assert [line.split(":")[0] for line in lines] == [f"after epoch {k} of 5" for k in (1, 2, 3)]
    assert "predicted total 25 J (17-31), 5 s (3.4-6.2)" in lines[0]
    bar.on_epoch_start(1, 2, 10)  # a new run starts over
    bar.on_record({"epoch": 1, "duration_s": 1.0, "energy_j": 5.0})
    assert "after epoch 1 of 2" in out.getvalue().splitlines()[-1]


def _finished(predictions: list[dict[str, Any]]) -> TrialRecord:
    spec = {"dataset": "digits", "model": "small_cnn", "technique": "baseline", "epochs": 5}
    return TrialRecord(
        trial_id="t1",
        spec=spec,
        accuracy=0.9,
        train_energy_j=1300.0,
        train_energy_provenance="estimated",
        phases={"train": {"name": "train", "duration_s": 200.0, "components": []}},
        history=tuple({"epoch": e} for e in range(1, 6)),
        details={"prediction": predictions},
    )


def test_a_sweep_shows_each_trials_prediction_against_its_outcome():
    console, out = _console()
    reporter = StudyProgress(console)
    reporter.on_study_start("s", 1, 0, "local")
    reporter.on_trial_end(_finished([_prediction().to_dict()]), 1, 1)
    reporter.stop()
    text = out.getvalue()
    assert "predicted after epoch 1: 1.23 kJ (-5.1 %), 3 min 10 s (-5.0 %)" in text
    console, out = _console()
    StudyProgress(console).on_trial_end(_finished([]), 1, 1)
    assert "predicted" not in out.getvalue()


def test_a_running_trials_prediction_shows_in_the_status_line():
    console, _ = _console()
    reporter = StudyProgress(console)

    spec = TrialSpec(
        study="s", dataset="digits", model="small_cnn", technique="baseline",
        train=TrainConfig(epochs=5), measurement=MeasurementSettings(), image_size=None,
        width=1.0, weights=None, val_fraction=0.1,
    )  # fmt: skip
    reporter.on_trial_start(spec, 0, 1)
    reporter.on_trial_prediction(spec.trial_id, _prediction())
    line = _console()
    line[0].print(reporter.status)
    assert "running: digits small_cnn baseline" in line[1].getvalue()
    assert "after epoch 1 of 5: predicted total 1.23 kJ" in line[1].getvalue()
    reporter.on_trial_end(replace(_finished([]), trial_id=spec.trial_id), 1, 1)
    assert reporter.predictions == {}
