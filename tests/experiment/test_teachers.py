"""A study's distillation teacher is trained first, ``distill:self`` included."""

from __future__ import annotations

from wattwise.config import StudyConfig
from wattwise.data import load_dataset
from wattwise.energy.monitor import EnergyMonitor
from wattwise.experiment.spec import expand_grid
from wattwise.experiment.teachers import teacher_for
from wattwise.models import count_parameters, create_model


def test_self_teacher_is_the_trials_own_model_trained_first() -> None:
    (spec,) = expand_grid(
        StudyConfig(
            name="teachers",
            width=0.5,
            techniques=["distill:self"],
            batch_sizes=[32],
            learning_rates=[0.05],
            epochs=[2],
            train={"hflip": False, "augment": False, "num_threads": 1},
        )
    )
    data = load_dataset("digits")
    with EnergyMonitor() as monitor:
        teacher = teacher_for(spec, "self", data, monitor, cache=None, teacher_dir=None)
    model = teacher.summary["model"]
    assert (model["name"], model["width"]) == (spec.model, 0.5)  # the trial's model and width
    assert teacher.training is not None  # trained here, measured
    assert teacher.summary["test_accuracy"] > 0.3  # chance is 0.1


def test_a_named_teacher_is_built_with_the_steps_teacher_kwargs() -> None:
    """``distill:small_cnn:teacher_kwargs.width=0.5`` trains a half-width teacher (the width was
    ignored before: a full-width teacher, four times the work, was trained instead)."""
    (spec,) = expand_grid(
        StudyConfig(
            name="teachers",
            techniques=["distill:small_cnn:teacher_kwargs.width=0.5"],
            batch_sizes=[64],
            learning_rates=[0.05],
            epochs=[1],
            train={"hflip": False, "augment": False, "num_threads": 1},
        )
    )
    (step,) = spec.steps
    data = load_dataset("digits")
    with EnergyMonitor() as monitor:
        teacher = teacher_for(spec, "small_cnn", data, monitor, None, None, step.teacher_kwargs)
    assert teacher.summary["model"]["width"] == 0.5
    full = create_model(**{**teacher.summary["model"], "width": 1.0})
    assert count_parameters(teacher.module) < count_parameters(full) / 2  # the module too
