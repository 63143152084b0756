"""Knowledge distillation (Hinton et al., 2015): train a student on a teacher's softened outputs.

    from wattwise.optimize.distill import DistillConfig, distill
    config = DistillConfig(teacher_checkpoint="runs/teacher", temperature=4.0, alpha=0.9)
    result = distill(student, data, TrainConfig(epochs=10), config)

Per batch, with student logits ``s``, teacher logits ``t``, labels ``y`` and temperature ``T``::

    kd_loss = T² · KL(softmax(t / T) ‖ softmax(s / T))      (mean over the batch)
    loss    = alpha · kd_loss + (1 − alpha) · cross_entropy(s, y)
              [+ feature_weight · MSE(P(student features), teacher features)]

By default the teacher runs once over the training split, without augmentation, and its logits
are looked up by row index in every step ("offline KD"): a KD epoch then costs what a plain one
does. With augmentation on, the student sees an augmented image but the teacher's logits are for
the plain one (a standard approximation); ``precompute_teacher=False`` runs the teacher on the
augmented batch in every step instead (exact, and costlier). See docs/distill.md.

The teacher is always a trained model: ``self`` is a copy of the student as it arrives (the model
being optimized), a checkpoint or weights that fill every tensor are used as they are, and a
registry teacher without such weights is trained first, on the same data with the student's
settings, in the window ``distill/teacher_train``, charged to the step
(:mod:`wattwise.optimize.distill_teacher`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wattwise.data.loader import TensorLoader
from wattwise.data.types import DatasetSplits
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.optimize.base import PreparedModel, TechniqueContext, register_technique
from wattwise.optimize.distill_config import SELF_TEACHER, DistillConfig
from wattwise.optimize.distill_config import is_checkpoint_path as is_checkpoint_path
from wattwise.optimize.distill_teacher import build_teacher as build_teacher
from wattwise.optimize.distill_teacher import freeze_teacher, ready_teacher
from wattwise.train.config import TrainConfig
from wattwise.train.device import autocast, num_threads, resolve_device
from wattwise.train.loop import TrainResult, evaluate, fit

#: The EnergyMonitor window that measures the precomputed teacher pass.
TEACHER_WINDOW = "distill/teacher_logits"


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton's loss ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` in nats, summed over classes
    and averaged over the batch; ``T²`` keeps the gradient scale independent of ``T``.

    Args:
        student_logits: ``[B, C]``; any float dtype (computed in float32).
        teacher_logits: ``[B, C]``; no gradient flows into them.
        temperature: ``T`` > 0.
    """
    if not temperature > 0:
        raise ConfigError(f"temperature must be positive, got {temperature!r}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def head_linear(model: nn.Module) -> nn.Linear:
    """The classifier head: the last ``nn.Linear`` registered in ``model`` (for every registry
    model this is its registered ``head``). Its input is the "penultimate feature" vector."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"feature distillation needs an nn.Linear classifier; {type(model).__name__} has none"
        )
    return linears[-1]


@contextmanager
def _head_input(model: nn.Module, enabled: bool = True) -> Iterator[list[torch.Tensor]]:
    """Captures the input of ``model``'s head while the block runs (one tensor per forward)."""
    captured: list[torch.Tensor] = []
    if not enabled:
        yield captured
        return
    handle = head_linear(model).register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].flatten(1))
    )
    try:
        yield captured
    finally:
        handle.remove()


@dataclass
class TeacherOutputs:
    """The teacher's outputs on every row of the training split, on the training device.

    Attributes:
        logits: float32 ``[N, C]``; row ``i`` belongs to ``data.train`` row ``i``.
        features: float32 ``[N, D]`` penultimate features, when feature distillation is on.
        measurement: What the teacher pass cost (window ``distill/teacher_logits``), when a
            monitor was given.
    """

    logits: torch.Tensor
    features: torch.Tensor | None = None
    measurement: Measurement | None = None


def precompute_teacher_outputs(
    teacher: nn.Module,
    data: DatasetSplits,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    precision: str = "fp32",
    channels_last: bool = False,
    features: bool = False,
    monitor: EnergyMonitor | None = None,
) -> TeacherOutputs:
    """Runs the teacher once over ``data.train`` (no augmentation, eval mode, no gradients).

    Args:
        teacher: The teacher (frozen here if it is not already).
        data: The dataset; inputs are normalized with its train mean/std, as in :func:`fit`.
        device: Where the teacher runs and the outputs are kept.
        batch_size: Images per teacher batch.
        precision: ``fp32``, or autocast to ``bf16`` / ``fp16`` (outputs stored as float32).
        channels_last: Feed channels-last inputs.
        features: Also keep the penultimate features (for feature distillation).
        monitor: If given, the pass runs in its window ``distill/teacher_logits``.
    """
    device = torch.device(device)
    freeze_teacher(teacher, device)
    loader = TensorLoader.from_splits(
        data, "train", batch_size, device=device, channels_last=channels_last
    )
    window = monitor.window(TEACHER_WINDOW) if monitor is not None else nullcontext(None)
    with (
        window as w,
        torch.no_grad(),
        autocast(device, precision),
        _head_input(teacher, features) as captured,
    ):
        logits = torch.cat([teacher(x).float() for x, _ in loader])
    return TeacherOutputs(
        logits=logits,
        features=torch.cat([f.float() for f in captured]) if features else None,
        measurement=w.measurement if w is not None else None,
    )


def feature_projection(student: nn.Module, teacher: nn.Module) -> nn.Linear:
    """A linear map from the student's penultimate features to the teacher's (FitNets-style)."""
    return nn.Linear(head_linear(student).in_features, head_linear(teacher).in_features)


class _WithProjection(nn.Module):
    """Student plus feature projection, so that :func:`fit`'s optimizer trains both."""

    def __init__(self, student: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


class DistillationTask:
    """One distillation step: the student's losses against a frozen teacher.

    Args:
        teacher: The teacher; frozen here (eval mode, ``requires_grad=False``).
        config: Temperature, alpha, feature weight.
        teacher_outputs: Precomputed outputs over ``data.train``; then the teacher is not run
            and each batch's rows are looked up by ``idx``.
        projection: Student-to-teacher feature projection; required with ``feature_weight``
            (train its parameters along with the student's; :func:`distill` does).
        label_smoothing: Label smoothing of the cross-entropy term.
    """

    def __init__(
        self,
        teacher: nn.Module,
        config: DistillConfig,
        *,
        teacher_outputs: TeacherOutputs | None = None,
        projection: nn.Module | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        if config.feature_weight is not None and (
            projection is None or (teacher_outputs is not None and teacher_outputs.features is None)
        ):
            raise ConfigError("feature_weight needs a projection and the teacher's features")
        self.teacher = freeze_teacher(teacher)
        self.config = config
        self.teacher_outputs = teacher_outputs
        self._features = config.feature_weight is not None
        self.projection = projection if self._features else None
        self.label_smoothing = label_smoothing

    def _teacher(
        self, x: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        outputs = self.teacher_outputs
        if outputs is not None:
            if idx is None:
                raise ValueError("precomputed teacher outputs are looked up by row: pass idx")
            kept = outputs.features
            features = kept.index_select(0, idx) if kept is not None and self._features else None
            return outputs.logits.index_select(0, idx), features
        if self.teacher.training:
            self.teacher.eval()
        with (
            torch.no_grad(),
            _head_input(self.teacher, self._features) as captured,
        ):
            logits = self.teacher(x)
        return logits, (captured[-1] if self._features else None)

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The losses of one batch.

        Args:
            model: The student (or the student wrapped with its projection by :func:`distill`).
            x: Input batch ``[B, C, H, W]``, as the student sees it (augmented, normalized).
            y: Labels ``[B]``.
            idx: The batch's row indices in ``data.train`` (needed with precomputed outputs).

        Returns:
            ``loss`` (to minimize), ``task_loss`` (label cross-entropy), ``kd_loss``,
            ``output`` (student logits ``[B, C]``) and, with feature distillation,
            ``feature_loss``.
        """
        student = model.student if isinstance(model, _WithProjection) else model
        with _head_input(student, self._features) as captured:
            logits = student(x)
        teacher_logits, teacher_features = self._teacher(x, idx)
        alpha = self.config.alpha
        task_loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        kd = kd_loss(logits, teacher_logits, self.config.temperature)
        out = {
            "loss": alpha * kd + (1 - alpha) * task_loss,
            "task_loss": task_loss,
            "kd_loss": kd,
            "output": logits,
        }
        if self.projection is not None and teacher_features is not None:
            projected = self.projection(captured[-1]).float()
            out["feature_loss"] = F.mse_loss(projected, teacher_features.float())
            out["loss"] = out["loss"] + self.config.feature_weight * out["feature_loss"]
        return out

    def step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapter to :func:`wattwise.train.fit`'s ``step_fn``: ``(loss, logits)``."""
        losses = self(model, x, y, idx)
        return losses["loss"], losses["output"]


@dataclass
class DistillResult:
    """The outcome of :func:`distill`.

    Attributes:
        train: The student's training result (its ``fit`` window includes the teacher's
            per-step passes when ``precompute_teacher`` is off).
        config: The distillation settings.
        teacher_pass: What the precomputed teacher pass cost (``None`` when not precomputed).
        teacher_test_accuracy / teacher_test_loss: The teacher on ``data.test``.
        teacher_training: The teacher's own training, when it was trained first here.
        teacher_train: Its window ``distill/teacher_train`` (training and test pass).
        student_start_accuracy: The student on ``data.test`` before distillation.
    """

    train: TrainResult
    config: DistillConfig
    teacher_pass: Measurement | None
    teacher_test_accuracy: float
    teacher_test_loss: float
    teacher_training: TrainResult | None = None
    teacher_train: Measurement | None = None
    student_start_accuracy: float | None = None

    @property
    def total_energy_j(self) -> float | None:
        """Training energy plus the teacher pass and the teacher's training (J): what
        distillation cost end to end."""
        if self.train.train_energy_j is None:
            return None
        extra = sum(m.total_energy_j for m in (self.teacher_pass, self.teacher_train) if m)
        return self.train.train_energy_j + extra

    def teacher_note(self, dataset: str) -> str:
        """One line: where the teacher came from, its test accuracy, when it was trained first
        (on ``dataset``) for how long and at what cost, and whether it tests below the student
        as distillation started."""
        config, accuracy = self.config, f"test accuracy {self.teacher_test_accuracy:.1%}"
        trained, window = self.teacher_training, self.teacher_train
        if config.teacher == SELF_TEACHER:
            text = f"teacher self: the model being optimized, {accuracy}"
        elif config.teacher_checkpoint is not None:
            text = f"teacher {config.teacher_checkpoint} (checkpoint): {accuracy}"
        elif trained is None or window is None:
            text = f"teacher {config.teacher}: {accuracy}"
        else:
            text = (
                f"teacher {config.teacher}: trained first for {len(trained.history)} epochs on "
                f"{dataset} (this step's settings: lr {trained.config.lr:g}, batch "
                f"{trained.config.batch_size}), {accuracy}, {window.total_energy_j:.3g} J "
                f"({window.total_provenance}) charged to this step"
            )
        start = self.student_start_accuracy
        if start is not None and self.teacher_test_accuracy < start:
            text += f"; below the student before distillation ({start:.1%}): expect less accuracy"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": self.train.to_dict(),
            "distill": self.config.to_dict(),
            "teacher_pass": self.teacher_pass and self.teacher_pass.to_dict(timeline=False),
            "teacher_test_accuracy": self.teacher_test_accuracy,
            "teacher_test_loss": self.teacher_test_loss,
            "teacher_training": self.teacher_training and self.teacher_training.to_dict(),
            "teacher_train": self.teacher_train and self.teacher_train.to_dict(timeline=False),
            "student_start_accuracy": self.student_start_accuracy,
            "total_energy_j": self.total_energy_j,
        }


def distill(
    student: nn.Module,
    data: DatasetSplits,
    train_config: TrainConfig,
    distill_config: DistillConfig,
    *,
    teacher: nn.Module | None = None,
    monitor: EnergyMonitor | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> DistillResult:
    """Trains ``student`` (in place) on ``data`` with knowledge distillation.

    Makes the teacher on the training device (or takes ``teacher``): a copy of ``student`` for
    ``self``, the checkpoint, or the registry model with its weights, trained first (window
    ``distill/teacher_train``) unless the weights fill all its tensors. Then tests it,
    precomputes its outputs (window ``distill/teacher_logits``) unless ``precompute_teacher``
    is off, and runs :func:`wattwise.train.fit` with the distillation step.

    Args:
        student: The model to train; its weights are updated in place (for ``self``, the
            teacher is a copy of them as they arrive: pass a trained model).
        data: The dataset.
        train_config: Training settings (device, epochs, lr, precision, threads...).
        distill_config: The teacher and the loss settings.
        teacher: A trained teacher to use instead of making the config's (e.g. one a study
            trained and cached); it is frozen and moved to the training device.
        monitor: The EnergyMonitor to measure with (default: a new one, closed at the end).
        on_epoch: Called with each ``EpochRecord`` of the student's training.

    Raises:
        ConfigError: A teacher trained first did not train (diverged, out of memory).
    """
    device = resolve_device(train_config.device)
    own_monitor = monitor is None
    monitor = monitor or EnergyMonitor()
    info, tc = data.info, train_config
    run: dict[str, Any] = {
        "device": device,
        "batch_size": tc.eval_batch_size,
        "precision": tc.precision,
        "channels_last": tc.channels_last,
    }
    trained = window = None
    try:
        with num_threads(tc.num_threads):
            student.to(device)
            _, student_start = evaluate(student, data.test, mean=info.mean, std=info.std, **run)
            if teacher is None:
                teacher, trained, window = ready_teacher(
                    distill_config, student, data, tc, device, monitor
                )
            freeze_teacher(teacher, device)
            if tc.channels_last:
                teacher.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            teacher_loss, teacher_accuracy = evaluate(
                teacher, data.test, mean=info.mean, std=info.std, **run
            )
            projection = None
            if distill_config.feature_weight is not None:
                torch.manual_seed(tc.seed)
                projection = feature_projection(student, teacher)
            outputs = None
            if distill_config.precompute_teacher:
                outputs = precompute_teacher_outputs(
                    teacher, data, features=projection is not None, monitor=monitor, **run
                )
        task = DistillationTask(
            teacher,
            distill_config,
            teacher_outputs=outputs,
            projection=projection,
            label_smoothing=tc.label_smoothing,
        )
        model = student if projection is None else _WithProjection(student, projection)
        result = fit(model, data, tc, monitor=monitor, step_fn=task.step, on_epoch=on_epoch)
    finally:
        if own_monitor:
            monitor.close()
    return DistillResult(
        train=result,
        config=distill_config,
        teacher_pass=outputs.measurement if outputs is not None else None,
        teacher_test_accuracy=teacher_accuracy,
        teacher_test_loss=teacher_loss,
        teacher_training=trained,
        teacher_train=window,
        student_start_accuracy=student_start,
    )


@register_technique(DistillConfig)
def _apply_distill(model: nn.Module, config: DistillConfig, ctx: TechniqueContext) -> Any:
    """Trains ``model`` as the student (in place) with the context's data and settings."""
    if ctx.data is None or ctx.train_config is None:
        raise ConfigError("distill needs the dataset and training settings (TechniqueContext)")
    result = distill(
        model,
        ctx.data,
        ctx.train_config,
        config,
        teacher=ctx.teacher,
        monitor=ctx.monitor,
        on_epoch=ctx.on_epoch,
    )
    text = (
        f"distilled from {config.teacher_source} (T={config.temperature:g}, alpha={config.alpha:g})"
    )
    return PreparedModel(
        model.eval(),
        applied=config.to_step(),
        description=text,
        notes=(result.teacher_note(ctx.data.info.name),),
        report=result,
    )
