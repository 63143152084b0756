"""Where a distillation teacher comes from: never an untrained network.

A registry teacher without weights is trained first (same data, the step's settings, its own
window, charged to the step); ``distill:self`` is the model being optimized; a teacher whose
weights left its head at random is trained too. digits (8 px) and small_cnn on one CPU thread.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wattwise.data import DatasetSplits, load_dataset
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.models import create_model
from wattwise.optimize import parse_recipe
from wattwise.optimize.distill import DistillConfig, build_teacher, distill
from wattwise.optimize.distill_teacher import TEACHER_TRAIN_WINDOW, teacher_needs_training
from wattwise.optimize.recipe import RecipeSettings, run_recipe
from wattwise.train import TrainConfig, fit

CHANCE = 0.1  # digits: 10 balanced classes
SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}
SETTINGS = RecipeSettings(distill_epochs=2, distill_lr=0.05, batch_size=32, inference_s=0)


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits: DatasetSplits) -> tuple[nn.Module, float]:
    """small_cnn trained for 3 epochs (about 95 %) and its test accuracy."""
    torch.manual_seed(0)
    model = create_model(**SPEC)
    config = TrainConfig(epochs=3, lr=0.05, batch_size=32, hflip=False, eval_batch_size=512)
    result = fit(model, digits, config)
    assert result.test_accuracy is not None and result.test_accuracy > 0.85
    return model.eval(), result.test_accuracy


def test_a_named_teacher_in_a_recipe_is_trained_first_and_charged_to_the_step(
    digits: DatasetSplits, trained: tuple[nn.Module, float]
) -> None:
    model, _ = trained
    result = run_recipe(model, digits, "distill:small_cnn", settings=SETTINGS)
    step = result.variants[1]
    # a random small_cnn tests at about 10 %: this one was trained on digits first
    assert step.details["teacher_test_accuracy"] > 3 * CHANCE
    report = result.final.report
    training = report.teacher_training  # type: ignore[union-attr]
    assert training is not None and training.status == "ok" and len(training.history) == 2
    assert training.test_accuracy == pytest.approx(step.details["teacher_test_accuracy"])
    window = report.teacher_train  # type: ignore[union-attr]
    assert window is not None and window.name == TEACHER_TRAIN_WINDOW
    # its own window, inside the step's: the step's energy includes the teacher's training
    assert step.step_measurement is not None
    assert step.step_measurement.total_energy_j >= window.total_energy_j > 0
    assert step.step_measurement.duration_s >= window.duration_s
    (note,) = [n for n in step.notes if n.startswith("teacher")]
    assert "trained first for 2 epochs" in note and "digits" in note and " J" in note
    assert report.total_energy_j >= window.total_energy_j  # type: ignore[union-attr]


def test_self_teacher_is_the_model_being_optimized(
    digits: DatasetSplits, trained: tuple[nn.Module, float]
) -> None:
    model, accuracy = trained
    (config,) = parse_recipe("distill:self")
    assert isinstance(config, DistillConfig) and config.teacher_source == "self"
    assert config.to_step() == "distill:self"
    result = run_recipe(model, digits, "distill:self", settings=SETTINGS)
    step = result.variants[1]
    assert step.details["teacher_test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert result.final.report.teacher_training is None  # type: ignore[union-attr]
    assert any("the model being optimized" in n for n in step.notes)
    with pytest.raises(ConfigError, match="self"):
        build_teacher(config, digits.info)


def test_distill_never_teaches_with_random_weights(digits: DatasetSplits) -> None:
    torch.manual_seed(1)
    student = create_model(**SPEC, width=0.5)
    tc = TrainConfig(epochs=1, lr=0.05, batch_size=32, hflip=False, eval_batch_size=512)
    with EnergyMonitor() as monitor:
        result = distill(student, digits, tc, DistillConfig(teacher="small_cnn"), monitor=monitor)
    assert result.teacher_training is not None and result.teacher_training.status == "ok"
    assert result.teacher_test_accuracy > 3 * CHANCE
    assert result.to_dict()["teacher_training"]["test_accuracy"] == result.teacher_test_accuracy


def test_weights_that_leave_the_head_random_need_training(
    trained: tuple[nn.Module, float],
) -> None:
    model, _ = trained
    assert teacher_needs_training(create_model(**SPEC))  # random initialization
    assert not teacher_needs_training(create_model(**SPEC, weights=model.state_dict()))
    other_head = create_model(**{**SPEC, "num_classes": 4}, weights=model.state_dict())
    assert other_head.weights_report.skipped  # the head did not fit: it stays random
    assert teacher_needs_training(other_head)


def test_a_teacher_below_the_student_is_said(
    digits: DatasetSplits, trained: tuple[nn.Module, float]
) -> None:
    model, accuracy = trained
    student = create_model(**SPEC, weights=model.state_dict())
    torch.manual_seed(2)
    weak = create_model(**SPEC)  # a caller's teacher is used as given
    tc = TrainConfig(epochs=1, lr=0.01, batch_size=32, hflip=False, eval_batch_size=512)
    result = distill(student, digits, tc, DistillConfig(teacher="small_cnn"), teacher=weak)
    assert result.student_start_accuracy == pytest.approx(accuracy)
    note = result.teacher_note("digits")
    assert note.startswith("teacher small_cnn: test accuracy")
    assert f"below the student before distillation ({accuracy:.1%})" in note
