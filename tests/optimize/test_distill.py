"""Knowledge distillation: the loss, the frozen teacher, precomputed logits, distill() end to end.

A small_cnn at width 2 trained for 5 epochs on digits (8 px) is the teacher (about 97 % test
accuracy); small_cnn at width 0.5 is the student. Everything runs on the CPU with one thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wattwise.data import DatasetSplits, TensorLoader, load_dataset
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.models import create_model, list_models, registry
from wattwise.optimize.distill import (
    TEACHER_WINDOW,
    DistillationTask,
    DistillConfig,
    DistillResult,
    build_teacher,
    distill,
    feature_projection,
    head_linear,
    kd_loss,
    precompute_teacher_outputs,
)
from wattwise.train import TrainConfig, fit, save_checkpoint

CHANCE = 0.1  # digits: 10 balanced classes
PROVENANCE_KINDS = {"measured", "estimated", "mixed"}


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits")


def _config(**overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "epochs": 3,
        "batch_size": 32,
        "lr": 0.05,
        "hflip": False,
        "device": "cpu",
        "num_threads": 1,
        "eval_batch_size": 512,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def _small_cnn(data: DatasetSplits, width: float = 0.5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    info = data.info
    return create_model(
        "small_cnn",
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        input_size=info.image_size,
        width=width,
    )


class Teacher(NamedTuple):
    model: nn.Module
    checkpoint: Path
    state_dict: Path
    accuracy: float


@pytest.fixture(scope="module")
def teacher(digits: DatasetSplits, tmp_path_factory: pytest.TempPathFactory) -> Teacher:
    """small_cnn width 2 trained for 5 epochs, saved as a checkpoint and as a state_dict."""
    model = _small_cnn(digits, width=2)
    config = _config(epochs=5)
    result = fit(model, digits, config)
    assert result.test_accuracy is not None and result.test_accuracy > 0.9
    info = digits.info
    folder = tmp_path_factory.mktemp("teacher")
    checkpoint = save_checkpoint(
        folder / "checkpoint.pt",
        model,
        model_spec={
            "name": "small_cnn",
            "num_classes": info.num_classes,
            "in_channels": info.in_channels,
            "input_size": info.image_size,
            "width": 2.0,
        },
        train_config=config.to_dict(),
        dataset={"name": info.name},
        result={"test_accuracy": result.test_accuracy},
    )
    state_dict = folder / "state_dict.pt"
    torch.save(model.state_dict(), state_dict)
    return Teacher(model.eval(), checkpoint, state_dict, result.test_accuracy)


def _rows(data: DatasetSplits, idx: torch.Tensor) -> torch.Tensor:
    """Training rows ``idx``, normalized as fit() and the teacher pass normalize them."""
    split = data.train.subset(idx)
    return next(iter(TensorLoader(split, len(split), mean=data.info.mean, std=data.info.std)))[0]


# --- the loss ----------------------------------------------------------------------------------
def test_kd_loss_is_zero_for_identical_logits() -> None:
    logits = torch.randn(16, 10) * 3
    for temperature in (1.0, 4.0):
        assert kd_loss(logits, logits.clone(), temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_two_class_value_at_temperature_2() -> None:
    # teacher [2, 0] / T=2 -> softmax [p, 1 - p] with p = e / (1 + e) = 0.7310586; the student
    # [0, 0] -> [0.5, 0.5]. KL = p ln(2p) + (1 - p) ln(2(1 - p)) = 0.1109441; times T² = 4.
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(0.4437763, abs=1e-6)
    # batchmean: repeating the row does not change the value
    assert kd_loss(student.repeat(3, 1), teacher.repeat(3, 1), 2.0).item() == pytest.approx(
        0.4437763, abs=1e-6
    )


@pytest.mark.parametrize("temperature", [1.0, 3.0, 8.0])
def test_kd_loss_is_t_squared_times_the_softened_kl(temperature: float) -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 5), torch.randn(8, 5) * 2
    p_teacher = torch.softmax(teacher / temperature, 1)
    log_p_student = torch.log_softmax(student / temperature, 1)
    kl = (p_teacher * (p_teacher.log() - log_p_student)).sum(1).mean()
    expected = temperature**2 * kl.item()
    assert kd_loss(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_gradient_reaches_the_student_only() -> None:
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    kd_loss(student, teacher, 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def _batch(data: DatasetSplits, n: int = 24) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    idx = torch.arange(n) * 7
    return _rows(data, idx), data.train.labels[idx], idx


def test_alpha_zero_is_cross_entropy(digits: DatasetSplits, teacher: Teacher) -> None:
    student = _small_cnn(digits).eval()
    task = DistillationTask(teacher.model, DistillConfig(alpha=0.0, teacher="small_cnn"))
    x, y, idx = _batch(digits)
    losses = task(student, x, y, idx)
    expected = F.cross_entropy(student(x), y)
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["task_loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["kd_loss"].item() > 0


def test_alpha_one_ignores_labels(digits: DatasetSplits, teacher: Teacher) -> None:
    student = _small_cnn(digits).eval()
    task = DistillationTask(teacher.model, DistillConfig(alpha=1.0, teacher="small_cnn"))
    x, y, idx = _batch(digits)
    wrong = (y + 1) % 10
    right_loss, wrong_loss = task(student, x, y, idx), task(student, x, wrong, idx)
    assert right_loss["loss"].item() == pytest.approx(wrong_loss["loss"].item(), rel=1e-6)
    assert right_loss["task_loss"].item() != pytest.approx(wrong_loss["task_loss"].item())
    assert right_loss["loss"].item() == pytest.approx(right_loss["kd_loss"].item(), rel=1e-6)


# --- the teacher -------------------------------------------------------------------------------
def test_step_returns_the_loss_dict_and_leaves_the_teacher_frozen(
    digits: DatasetSplits, teacher: Teacher
) -> None:
    model = _small_cnn(digits, width=2)
    model.load_state_dict(teacher.model.state_dict())
    model.train()  # the task must put it into eval mode
    model.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    student = _small_cnn(digits).train()
    task = DistillationTask(model, DistillConfig(teacher="small_cnn", precompute_teacher=False))
    x, y, idx = _batch(digits)
    for _ in range(2):
        losses = task(student, x, y, idx)
        losses["loss"].backward()
    assert set(losses) == {"loss", "task_loss", "kd_loss", "output"}
    assert losses["output"].shape == (x.shape[0], 10)
    assert not model.training
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    # eval mode: BatchNorm running statistics did not move
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is not None for p in student.parameters())
    loss, logits = task.step(student, x, y, idx)
    assert loss.item() == pytest.approx(losses["loss"].item(), rel=1e-5)
    assert logits is not None and logits.shape == (x.shape[0], 10)


def test_precomputed_logits_match_the_teacher_by_row(
    digits: DatasetSplits, teacher: Teacher
) -> None:
    with EnergyMonitor() as monitor:
        outputs = precompute_teacher_outputs(teacher.model, digits, batch_size=100, monitor=monitor)
    assert outputs.logits.shape == (len(digits.train), 10)
    assert outputs.logits.dtype == torch.float32 and outputs.features is None
    idx = torch.tensor([1294, 0, 17, 513, 17])
    with torch.no_grad():
        direct = teacher.model(_rows(digits, idx))
    torch.testing.assert_close(outputs.logits[idx], direct, rtol=1e-4, atol=1e-5)
    # the step looks them up by idx, whatever the batch order
    student = _small_cnn(digits).eval()
    config = DistillConfig(teacher="small_cnn", alpha=1.0)
    task = DistillationTask(teacher.model, config, teacher_outputs=outputs)
    x = _rows(digits, idx)
    losses = task(student, x, digits.train.labels[idx], idx)
    expected = kd_loss(student(x), direct, config.temperature)
    assert losses["kd_loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    with pytest.raises(ValueError, match="idx"):
        task(student, x, digits.train.labels[idx], None)
    m = outputs.measurement
    assert m is not None and m.name == TEACHER_WINDOW and m.duration_s > 0


def test_registry_teacher_with_weights_is_the_trained_one(
    digits: DatasetSplits, teacher: Teacher
) -> None:
    config = DistillConfig(
        teacher="small_cnn", teacher_kwargs={"width": 2, "weights": str(teacher.state_dict)}
    )
    built = build_teacher(config, digits.info)
    assert not built.training and not any(p.requires_grad for p in built.parameters())
    x = _rows(digits, torch.arange(10))
    with torch.no_grad():
        torch.testing.assert_close(built(x), teacher.model(x))
    wrong = DistillConfig(teacher="small_cnn", teacher_kwargs={"num_classes": 5})
    with pytest.raises(ConfigError, match="num_classes"):
        build_teacher(wrong, digits.info)


# --- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"teacher": None}, "exactly one"),
        ({"teacher_checkpoint": "t.pt"}, "exactly one"),
        ({"teacher_kwargs": {"name": "resnet18"}}, "teacher_kwargs"),
        ({"teacher_kwargs": [1, 2]}, "teacher_kwargs"),
        (
            {"teacher": None, "teacher_checkpoint": "t.pt", "teacher_kwargs": {"width": 2}},
            "teacher_kwargs",
        ),
        ({"precompute_teacher": "yes"}, "precompute_teacher"),
        ({"feature_weight": 0.0}, "feature_weight"),
        ({"feature_weight": -1.0}, "feature_weight"),
    ],
)
def test_invalid_config_is_a_config_error(settings: dict[str, object], match: str) -> None:
    values: dict[str, object] = {"teacher": "resnet18", **settings}
    with pytest.raises(ConfigError, match=match):
        DistillConfig(**values)  # type: ignore[arg-type]


def test_config_round_trips_and_rejects_unknown_settings() -> None:
    config = DistillConfig(teacher="resnet18", teacher_kwargs={"width": 0.5}, temperature=2)
    assert DistillConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="temp: unknown key"):
        DistillConfig.from_dict({"teacher": "resnet18", "temp": 2})


# --- distill() end to end ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def distilled(digits: DatasetSplits, teacher: Teacher) -> DistillResult:
    """A student taught by the checkpoint teacher alone (alpha=1: labels are never used)."""
    student = _small_cnn(digits)
    config = DistillConfig(teacher_checkpoint=str(teacher.checkpoint), alpha=1.0, temperature=4)
    with EnergyMonitor() as monitor:
        return distill(student, digits, _config(epochs=4), config, monitor=monitor)


def test_student_learns_from_the_teacher_alone(distilled: DistillResult, teacher: Teacher) -> None:
    train = distilled.train
    assert train.status == "ok" and len(train.history) == 4
    # the labels' weight is 0: all it knows came from the looked-up teacher logits
    assert train.test_accuracy is not None and train.test_accuracy >= 0.75 > CHANCE * 3
    assert distilled.teacher_test_accuracy == pytest.approx(teacher.accuracy)


def test_teacher_pass_is_measured_with_energy_and_provenance(distilled: DistillResult) -> None:
    m = distilled.teacher_pass
    assert m is not None and m.name == TEACHER_WINDOW
    assert m.duration_s > 0 and m.total_energy_j > 0
    assert m.total_provenance in PROVENANCE_KINDS
    assert all(c.provenance.label for c in m.summed_components)
    train_j = distilled.train.train_energy_j
    assert train_j is not None and distilled.total_energy_j == pytest.approx(
        train_j + m.total_energy_j
    )
    record = distilled.to_dict()
    assert record["teacher_pass"]["name"] == TEACHER_WINDOW
    assert record["distill"]["alpha"] == 1.0


def test_teacher_on_every_step_with_augmentation(digits: DatasetSplits, teacher: Teacher) -> None:
    config = DistillConfig(teacher_checkpoint=str(teacher.checkpoint), precompute_teacher=False)
    result = distill(_small_cnn(digits), digits, _config(epochs=1, augment=True), config)
    assert result.teacher_pass is None
    assert result.train.status == "ok" and result.train.test_accuracy is not None


# --- feature distillation ----------------------------------------------------------------------
def test_head_linear_is_the_registered_head() -> None:
    for name in list_models():
        model = create_model(name, num_classes=10, in_channels=1, input_size=8)
        assert dict(model.named_modules())[registry.get(name).head] is head_linear(model), name


def test_feature_distillation_trains_the_projection(
    digits: DatasetSplits, teacher: Teacher
) -> None:
    student = _small_cnn(digits).train()
    projection = feature_projection(student, teacher.model)
    assert (projection.in_features, projection.out_features) == (32, 128)
    config = DistillConfig(teacher="small_cnn", feature_weight=0.5, precompute_teacher=False)
    task = DistillationTask(teacher.model, config, projection=projection)
    x, y, idx = _batch(digits)
    losses = task(student, x, y, idx)
    assert set(losses) == {"loss", "task_loss", "kd_loss", "output", "feature_loss"}
    combined = 0.9 * losses["kd_loss"] + 0.1 * losses["task_loss"] + 0.5 * losses["feature_loss"]
    assert losses["loss"].item() == pytest.approx(combined.item(), rel=1e-5)
    losses["loss"].backward()
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="projection"):
        DistillationTask(teacher.model, config)


def test_distill_with_features_leaves_the_student_unchanged_in_shape(
    digits: DatasetSplits, teacher: Teacher
) -> None:
    student = _small_cnn(digits)
    keys = set(student.state_dict())
    config = DistillConfig(teacher_checkpoint=str(teacher.checkpoint), feature_weight=1.0)
    result = distill(student, digits, _config(epochs=2), config)
    assert result.train.status == "ok"
    assert result.train.test_accuracy is not None and result.train.test_accuracy > CHANCE * 3
    assert set(student.state_dict()) == keys  # no projection, no wrapper left behind
    assert not head_linear(student)._forward_pre_hooks
