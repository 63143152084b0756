"""Predict while running: a sweep tells its reporter each running trial's predicted training
total after each of the first epochs, from that trial's own training epochs only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattwise.config import StudyConfig
from wattwise.experiment import TrialRecord
from wattwise.experiment.executors import LocalExecutor, _ProcessPool
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.experiment.sweep import run_study
from wattwise.train.predict import Prediction


def config(tmp_path: Path, **changes: Any) -> StudyConfig:
    values: dict[str, Any] = {
        "name": "live",
        "output_dir": str(tmp_path),
        "image_size": 8,
        "width": 0.25,
        "batch_sizes": [64],
        "learning_rates": [0.05],
        "epochs": [3],
        "seeds": [0],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0},
    }
    values.update(changes)
    return StudyConfig(**values)


class Predictions:
    """A StudyReporter that writes down trial starts, predictions and ends, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.records: dict[str, TrialRecord] = {}

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        pass

    def on_trial_start(self, spec: TrialSpec, done: int, total: int) -> None:
        self.calls.append(("start", spec.trial_id, None))

    def on_trial_prediction(self, trial_id: str, prediction: Prediction) -> None:
        self.calls.append(("prediction", trial_id, prediction))

    def on_trial_end(self, record: TrialRecord, done: int, total: int) -> None:
        self.calls.append(("end", record.trial_id, None))
        self.records[record.trial_id] = record

    def on_progress(self, done: int, total: int) -> None:
        pass

    def on_study_end(self, summary: Any) -> None:
        pass

    def made(self, trial_id: str) -> list[Prediction]:
        return [p for kind, t, p in self.calls if kind == "prediction" and t == trial_id]


def _check_live(reporter: Predictions, trial_id: str, epochs: int) -> None:
    """The trial was predicted after each epoch that left epochs to go, while it ran, with an
    interval around each total, and exactly as its record keeps them."""
    made = reporter.made(trial_id)
    assert [p.after_epoch for p in made] == list(range(1, epochs))
    assert all(p.epochs == epochs for p in made)
    kinds = [kind for kind, t, _ in reporter.calls if t == trial_id]
    assert kinds == ["start", *["prediction"] * len(made), "end"]
    for p in made:
        assert p.duration.low <= p.duration.value <= p.duration.high
        energy = p.energy
        assert energy is not None and energy.low <= energy.value <= energy.high
    stored = reporter.records[trial_id].details["prediction"]
    assert made == [Prediction.from_dict(d) for d in stored]


def test_a_training_trial_is_predicted_live_and_a_reused_training_is_not(tmp_path):
    """The trial that trains is predicted after epochs 1 and 2 of 3; the trial that reuses its
    trained baseline trains nothing (its pruning fine-tune epochs are no training run): no
    prediction."""
    study = config(tmp_path, techniques=["baseline", "prune:structured:0.5"])
    reporter = Predictions()
    summary = run_study(study, reporter=reporter)
    assert (summary.ok, summary.failed) == (2, 0)
    trained, reused = (s.trial_id for s in expand_grid(study))
    assert reporter.records[trained].details["baseline"]["trained_here"] is True
    assert reporter.records[reused].details["baseline"]["trained_here"] is False
    assert "train" not in reporter.records[reused].phases
    assert any(p.startswith("recipe/") for p in reporter.records[reused].phases)  # fine-tuned
    _check_live(reporter, trained, 3)
    assert reporter.made(reused) == []


def test_only_a_trials_own_training_epochs_reach_the_epoch_callback(tmp_path):
    """A pruned trial that trains itself reports its training's epochs, not the fine-tuning
    after pruning; a distilled trial reports its student's epochs, not the teacher's."""
    study = config(tmp_path, epochs=[2], techniques=["prune:structured:0.5", "distill:small_cnn"])
    specs = expand_grid(study)
    seen: dict[str, list[int]] = {s.trial_id: [] for s in specs}
    records: list[TrialRecord] = []
    with LocalExecutor() as executor:
        executor.run(
            specs,
            on_start=lambda spec: None,
            on_done=records.append,
            on_epoch=lambda spec, record: seen[spec.trial_id].append(record.epoch),
        )
    assert [r.status for r in records] == ["ok", "ok"]
    pruned, distilled = records
    assert any(p.startswith("recipe/") for p in pruned.phases)  # it fine-tuned
    assert "teacher" in distilled.phases  # it trained its teacher
    assert seen == {s.trial_id: [1, 2] for s in specs}


def test_worker_processes_report_predictions_live(tmp_path):
    """A trial in a worker process is predicted live too: the worker sends each epoch."""
    study = config(tmp_path, epochs=[2])
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    reporter = Predictions()
    with _ProcessPool([env], ["cpu 0"]) as pool:
        summary = run_study(study, executor=pool, reporter=reporter)
    assert (summary.ok, summary.failed) == (1, 0)
    (trial,) = (s.trial_id for s in expand_grid(study))
    _check_live(reporter, trial, 2)
