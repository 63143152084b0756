"""Where a distillation teacher comes from: always a trained model, never a random network.

    teacher, training, window = ready_teacher(config, student, data, train_config, device, monitor)

``self`` is a copy of the student as distillation starts (the model being optimized); a
checkpoint, or registry weights that fill every tensor, are used as they are; any other registry
teacher is trained first by :func:`train_teacher` on the same data with the student's training
settings, in the window ``distill/teacher_train`` (inside the step's window, so its energy is
charged to the technique). Studies train their teachers with the same function
(:mod:`wattwise.experiment.teachers`, which also caches them).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from wattwise.data.types import DatasetInfo, DatasetSplits
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.optimize.distill_config import SELF_TEACHER, DistillConfig
from wattwise.train.config import TrainConfig
from wattwise.train.loop import TrainResult, fit

#: The EnergyMonitor window that measures training a registry teacher first.
TEACHER_TRAIN_WINDOW = "distill/teacher_train"


def freeze_teacher(teacher: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Moves ``teacher`` to ``device`` (if given), sets eval mode and turns gradients off."""
    if device is not None:
        teacher.to(device)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def teacher_spec(config: DistillConfig, info: DatasetInfo) -> dict[str, Any]:
    """``{"name", **create_model arguments}`` of a registry teacher for a dataset."""
    dataset_args = {"num_classes": info.num_classes, "in_channels": info.in_channels}
    return {
        "name": config.teacher,
        **dataset_args,
        "input_size": info.image_size,
        **config.teacher_kwargs,
    }


def build_teacher(
    config: DistillConfig, info: DatasetInfo, device: torch.device | str = "cpu"
) -> nn.Module:
    """The teacher ``config`` names, frozen (eval mode, no gradients) on ``device``. A registry
    teacher comes with the weights its ``teacher_kwargs`` give, or none: :func:`distill` trains
    it first where :func:`teacher_needs_training` says so.

    Raises:
        ConfigError: If the teacher is ``self`` (a copy of the student, which this function does
            not have), or its classes or input channels do not match the dataset's.
        ModelError / WattwiseError: If the model cannot be built or the checkpoint read.
    """
    from wattwise.models import create_model
    from wattwise.train.checkpoint import load_checkpoint

    if config.teacher == SELF_TEACHER:
        raise ConfigError("the teacher 'self' is a copy of the student: distill() makes it")
    if config.teacher_checkpoint is not None:
        checkpoint = load_checkpoint(config.teacher_checkpoint)
        spec, model = checkpoint.model_spec, checkpoint.build_model()
        source = str(checkpoint.path)
    else:
        spec = teacher_spec(config, info)
        model = create_model(**spec)
        source = f"model {config.teacher!r}"
    _check_fits(spec, info, source)
    return freeze_teacher(model, device)


def _check_fits(spec: Mapping[str, Any], info: DatasetInfo, source: str) -> None:
    for key in ("num_classes", "in_channels"):
        want = getattr(info, key)
        if spec.get(key, want) != want:
            raise ConfigError(
                f"the teacher ({source}) has {key}={spec[key]} but {info.name} has {want}"
            )


def teacher_needs_training(model: nn.Module) -> bool:
    """Whether a registry model is (partly) at its random initialization: built without
    weights, or with weights that left head or stem tensors unloaded (another class count)."""
    report = getattr(model, "weights_report", None)
    return report is None or bool(report.skipped or report.missing)


def train_teacher(
    spec: Mapping[str, Any],
    data: DatasetSplits,
    train_config: TrainConfig,
    *,
    monitor: EnergyMonitor | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Builds the registry model ``spec`` (``{"name", **create_model arguments}``, seeded with
    ``train_config.seed``) and trains it on ``data`` with :func:`~wattwise.train.fit`: how a
    teacher is trained first, here and in studies (:mod:`wattwise.experiment.teachers`).

    Returns:
        The model and its training's result (check ``status``: a diverged run is returned).
    """
    from wattwise.models import create_model

    torch.manual_seed(train_config.seed)
    module = create_model(**spec)
    return module, fit(module, data, train_config, monitor=monitor)


def ready_teacher(
    config: DistillConfig,
    student: nn.Module,
    data: DatasetSplits,
    train_config: TrainConfig,
    device: torch.device,
    monitor: EnergyMonitor,
) -> tuple[nn.Module, TrainResult | None, Measurement | None]:
    """The trained teacher ``config`` names, its training when it was trained here, and that
    training's window.

    Raises:
        ConfigError: The teacher to train first did not train (diverged, out of memory).
        ModelError / WattwiseError: The model cannot be built or the checkpoint read.
    """
    if config.teacher == SELF_TEACHER:
        return copy.deepcopy(student), None, None
    if config.teacher_checkpoint is not None or "weights" in config.teacher_kwargs:
        teacher = build_teacher(config, data.info, device)
        if config.teacher_checkpoint is not None or not teacher_needs_training(teacher):
            return teacher, None, None
    spec = teacher_spec(config, data.info)
    _check_fits(spec, data.info, f"model {config.teacher!r}")
    with monitor.window(TEACHER_TRAIN_WINDOW) as w:
        teacher, result = train_teacher(spec, data, train_config, monitor=monitor)
    if result.status != "ok":
        raise ConfigError(
            f"the teacher {config.teacher} could not be trained first ({result.status}: "
            f"{result.reason}); change the training settings or give a trained teacher"
        )
    return teacher, result, w.measurement
