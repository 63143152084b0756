"""What the terminal shows: the study's live progress and summary, the training bar, tables."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wattwise.cli.progress import StudyProgress, TrainBar
from wattwise.cli.render import results_table, study_summary_table, trial_line
from wattwise.config import StudyConfig
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.summary import Highlight, StudySummary
from wattwise.experiment.sweep import run_study


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False), out


def _text(renderable: Any) -> str:
    console, out = _console()
    console.print(renderable)
    return out.getvalue()


def test_a_sweep_prints_its_plan_a_line_per_trial_and_the_summary(tmp_path):
    config = StudyConfig(
        name="sweep",
        output_dir=str(tmp_path),
        width=0.25,
        batch_sizes=[64],
        learning_rates=[0.05, 0.1],
        epochs=[1],
        train={"hflip": False, "augment": False, "num_threads": 1},
        measurement={"inference_s": 0},  # no inference protocol: seconds
    )
    console, out = _console()
    with StudyProgress(console) as reporter:
        run_study(config, reporter=reporter)
    text = out.getvalue()
    assert "study sweep: 2 trials, 0 finished earlier, 2 to run (local executor)" in text
    lines = [line for line in text.splitlines() if line.startswith("ok ")]
    assert len(lines) == 2 and "1/2 digits small_cnn baseline bs64 lr0.05 ep1 seed0" in lines[0]
    for row in ("best accuracy", "lowest training energy", "results.sqlite", "study.yaml"):
        assert row in text
    assert reporter.live is None  # stopped


def test_the_live_display_stops_when_the_study_fails():
    console, _ = _console()
    with pytest.raises(RuntimeError), StudyProgress(console) as reporter:
        reporter.on_study_start("s", 2, 0, "local")
        raise RuntimeError("boom")
    assert reporter.live is None


def test_trial_line_and_results_table_show_markup_in_reasons_as_text():
    spec = {"dataset": "digits", "model": "small_cnn", "technique": "baseline", "lr": 0.01}
    failed = TrialRecord(
        trial_id="0123456789abcdef", spec=spec, status="failed", reason="[bold]x[/bold] broke"
    )
    ok = TrialRecord(
        trial_id="fedcba9876543210",
        spec=spec,
        status="ok",
        accuracy=0.5,
        train_energy_j=12.0,
        train_energy_provenance="estimated",
    )
    table = _text(results_table([failed, ok], title="t"))
    assert "t (2 trials)" in table and "[bold]x[/bold] broke" in table and "50.00%" in table
    assert "12 (estimated)" in table
    assert _text(trial_line(failed, 1, 2)).startswith("failed 1/2 digits small_cnn baseline")
    assert "[bold]x[/bold] broke" in _text(trial_line(failed, 1, 2))
    line = _text(trial_line(ok, 2, 2))
    assert line.startswith("ok     2/2") and "acc 50.00%" in line and "train 12 J" in line


def test_the_summary_table_names_counts_highlights_and_paths(tmp_path: Path):
    summary = StudySummary(
        study="s",
        search="grid",
        study_dir=tmp_path,
        store_path=tmp_path / "results.sqlite",
        config_path=tmp_path / "study.yaml",
        total=4,
        ok=2,
        failed=1,
        running=1,
        left=1,
        skipped=0,
        ran=3,
        duration_s=1.5,
        best_accuracy=Highlight("abc", "digits small_cnn", 0.9),
        lowest_train_energy=Highlight("def", "digits small_cnn", 1500.0, "estimated"),
        interrupted=True,
    )
    text = _text(study_summary_table(summary))
    assert "study s (interrupted)" in text and "left to run (resume)" in text
    assert "90.00%" in text and "1.500 kJ (estimated)" in text and "results.sqlite" in text


def test_the_training_bar_opens_and_closes_once_per_epoch():
    console, _ = _console()
    bar = TrainBar(console)
    for epoch in (1, 2):
        bar.on_epoch_start(epoch, 2, 10)
        assert bar.progress is not None and bar.progress.live.is_started
        bar.on_batch(5, 0.25)
        task = bar.progress.tasks[0]
        assert (task.completed, task.fields["loss"]) == (5, "0.2500")
        bar.on_epoch_end(epoch)
        assert bar.progress is None
    bar.on_batch(1, 0.1)  # between epochs: ignored
