"""Training and evaluation, every epoch inside an EnergyMonitor window.

Windows: ``fit`` (the whole run), ``train/epoch{N}`` (one epoch: its training pass and its
validation pass) and ``test`` (the final evaluation). ``fit`` prints nothing: it reports each
finished epoch to ``on_epoch`` and the batches of the running epoch to a :class:`TrainProgress`
(the command line draws a progress bar from them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from wattwise.data.loader import AugmentConfig, TensorLoader
from wattwise.data.types import DatasetSplits, TensorSplit
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.segments import combine
from wattwise.train.config import TrainConfig
from wattwise.train.device import (
    MemoryCap,
    apply_memory_cap,
    autocast,
    is_out_of_memory,
    num_threads,
    out_of_memory_reason,
    resolve_device,
)
from wattwise.train.resume import (
    ResumeFile,
    fingerprint,
    restore_state,
    saved_state,
    uncounted_note,
)

Status = Literal["ok", "diverged", "oom"]

#: Seconds between two :meth:`TrainProgress.on_batch` calls (each reads the loss: a device sync).
PROGRESS_INTERVAL_S = 0.25


class TrainProgress(Protocol):
    """Where :func:`fit` reports the running epoch; called in the training thread."""

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        """Epoch ``epoch`` (1-based) of ``epochs`` begins; it has ``batches`` training batches."""

    def on_batch(self, batch: int, loss: float) -> None:
        """``batch`` batches of the epoch are done; ``loss`` is the latest batch's. Called at
        most every :data:`PROGRESS_INTERVAL_S` seconds, not for every batch."""

    def on_epoch_end(self, epoch: int) -> None:
        """The epoch's training and validation are over (also when it stopped with an error),
        before ``on_epoch`` receives its record."""


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did and cost.

    ``components`` maps each component to ``{"energy_j", "provenance"}``; ``energy_provenance``
    says whether the total is measured, estimated or mixed.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    images: int
    duration_s: float
    energy_j: float
    energy_provenance: str
    components: dict[str, dict[str, Any]]
    peak_rss_bytes: int | None
    peak_cuda_allocated_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_measurement(cls, m: Measurement, **values: Any) -> EpochRecord:
        return cls(
            duration_s=m.duration_s,
            energy_j=m.total_energy_j,
            energy_provenance=m.total_provenance,
            components={
                c.component: {"energy_j": c.energy_j, "provenance": c.provenance.label}
                for c in m.components
                if c.nested_in is None
            },
            peak_rss_bytes=m.peak_rss_bytes,
            peak_cuda_allocated_bytes=m.peak_cuda_allocated_bytes,
            **values,
        )


@dataclass
class TrainResult:
    """The outcome of :func:`fit`.

    Attributes:
        status: ``ok``, ``diverged`` (non-finite loss) or ``oom`` (did not fit in memory).
        reason: Why a run stopped early (divergence, memory, early stopping), else ``None``.
        history: One record per finished epoch.
        fit: The measurement of the whole run (training, validation), if it ran.
        test: The measurement of the final test evaluation, if it ran.
        test_accuracy / test_loss: On the test split, with the final weights.
        best_val_accuracy / best_epoch: The best validation accuracy and its epoch.
        memory_cap: The GPU memory cap and whether it was enforced.
        device: Where it ran.
    """

    status: Status
    reason: str | None
    history: list[EpochRecord]
    config: TrainConfig
    device: str
    memory_cap: MemoryCap
    fit: Measurement | None = None
    test: Measurement | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def train_energy_j(self) -> float | None:
        return self.fit.total_energy_j if self.fit is not None else None

    @property
    def accuracy_per_kj(self) -> float | None:
        """Training efficiency: test accuracy (fraction) per kJ of training energy."""
        energy = self.train_energy_j
        if self.test_accuracy is None or not energy:
            return None
        return self.test_accuracy / (energy / 1e3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "device": self.device,
            "config": self.config.to_dict(),
            "memory_cap": self.memory_cap.to_dict(),
            "history": [r.to_dict() for r in self.history],
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
            "train_energy_j": self.train_energy_j,
            "accuracy_per_kj": self.accuracy_per_kj,
            "fit": self.fit.to_dict(timeline=False) if self.fit else None,
            "test": self.test.to_dict(timeline=False) if self.test else None,
            **self.extra,
        }


class Divergence(RuntimeError):
    """The loss became NaN or infinite."""


def _crop_padding(image_size: int) -> int:
    return max(1, image_size // 8)


def evaluate(
    model: nn.Module,
    split: TensorSplit,
    *,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy loss and top-1 accuracy (fraction) of ``model`` on ``split``."""
    device = torch.device(device)
    if len(split) == 0:
        return float("nan"), float("nan")
    loader = TensorLoader(
        split, batch_size, device=device, mean=mean, std=std, channels_last=channels_last
    )
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    with torch.no_grad(), autocast(device, precision):
        for x, y in loader:
            logits = model(x)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return float(loss_sum) / len(split), int(correct) / len(split)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.momentum > 0,
    )


#: ``step(model, x, y, idx) -> (loss, logits)``.
StepFn = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]


def _cross_entropy_step(smoothing: float) -> StepFn:
    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> Any:
        logits = model(x)
        return nn.functional.cross_entropy(logits.float(), y, label_smoothing=smoothing), logits

    return step


def fit(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    monitor: EnergyMonitor | None = None,
    progress: TrainProgress | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    step_fn: StepFn | None = None,
    resume: ResumeFile | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``, validating each epoch and testing at the end.

    Args:
        model: Any classifier producing ``[B, num_classes]`` logits.
        data: The dataset (its train mean/std normalize every split).
        config: Training settings (default :class:`TrainConfig`).
        monitor: The EnergyMonitor to measure with (default: a new one, closed at the end).
        progress: Told the progress of each epoch's batches (a progress bar), or ``None``.
        on_epoch: Called with each finished epoch's record.
        step_fn: Computes ``(loss, logits)`` for a batch (used by distillation); default:
            cross-entropy with the configured label smoothing. ``idx`` are the batch's row
            indices in ``data.train``.
        resume: Where the running training's state is saved at the end of its epochs, and
            continued from when this training starts again after an interruption
            (:mod:`wattwise.train.resume`); ``None``: never saved. A resumed training records
            ``extra["resumed"]`` (``from_epoch``, ``attempts``).

    Returns:
        A :class:`TrainResult`. Divergence and out-of-memory end the run with a recorded status
        and reason instead of raising; measurements made before are kept.
    """
    config = config or TrainConfig()
    device = resolve_device(config.device)
    autocast(device, config.precision)  # fp16 on CPU: refuse before anything runs
    torch.manual_seed(config.seed)
    own_monitor = monitor is None
    monitor = monitor or EnergyMonitor()
    cap = apply_memory_cap(device, config.gpu_memory_gib)
    result = TrainResult("ok", None, [], config, str(device), cap)
    step = step_fn or _cross_entropy_step(config.label_smoothing)
    info = data.info
    try:
        with num_threads(config.num_threads):
            _run(model, data, config, device, monitor, result, step, progress, on_epoch, resume)
            if result.status == "ok":
                with monitor.window("test") as w:
                    result.test_loss, result.test_accuracy = evaluate(
                        model,
                        data.test,
                        mean=info.mean,
                        std=info.std,
                        batch_size=config.eval_batch_size,
                        device=device,
                        precision=config.precision,
                        channels_last=config.channels_last,
                    )
                result.test = w.measurement
    finally:
        if own_monitor:
            monitor.close()
    return result


def _run(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    device: torch.device,
    monitor: EnergyMonitor,
    result: TrainResult,
    step: StepFn,
    progress: TrainProgress | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    resume: ResumeFile | None = None,
) -> None:
    info = data.info
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    augment = (
        AugmentConfig(crop_padding=_crop_padding(info.image_size), hflip=config.hflip)
        if config.augment
        else False
    )
    loader = TensorLoader(
        data.train,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        device=device,
        augment=augment,
        mean=info.mean,
        std=info.std,
        channels_last=config.channels_last,
    )
    optimizer = _optimizer(model, config)
    steps = max(1, len(loader)) * config.epochs
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        if config.schedule == "cosine"
        else None
    )
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
    since_best, first_epoch, earlier = 0, 1, None
    key = fingerprint(model, config.to_dict()) if resume is not None else ""
    state = resume.load(key) if resume is not None else None
    if state is not None:  # an interrupted attempt of this training saved it: continue from it
        since_best, earlier = state["since_best"], Measurement.from_dict(state["fit"])
        first_epoch = _restore(state, model, optimizer, scheduler, scaler, loader, result, device)
    monitor.begin_window("fit")
    saved = time.perf_counter()
    try:
        for epoch in range(first_epoch, config.epochs + 1):
            if progress is not None:
                progress.on_epoch_start(epoch, config.epochs, len(loader))
            name = f"train/epoch{epoch}"
            monitor.begin_window(name)
            try:
                loss, acc, images, lr = _train_epoch(
                    model, loader, optimizer, scheduler, scaler, step, config, device, progress
                )
                val_loss, val_acc = (None, None)
                if len(data.val):
                    val_loss, val_acc = evaluate(
                        model,
                        data.val,
                        mean=info.mean,
                        std=info.std,
                        batch_size=config.eval_batch_size,
                        device=device,
                        precision=config.precision,
                        channels_last=config.channels_last,
                    )
            finally:
                measurement = monitor.end_window(name)
                if progress is not None:
                    progress.on_epoch_end(epoch)
            record = EpochRecord.from_measurement(
                measurement,
                epoch=epoch,
                train_loss=loss,
                train_accuracy=acc,
                val_loss=val_loss,
                val_accuracy=val_acc,
                lr=lr,
                images=images,
            )
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            score = val_acc if val_acc is not None else acc
            if result.best_val_accuracy is None or score > result.best_val_accuracy:
                result.best_val_accuracy, result.best_epoch, since_best = score, epoch, 0
            else:
                since_best += 1
            patience = config.early_stopping_patience
            if patience is not None and since_best >= patience:
                result.reason = (
                    f"early stopping: no better validation accuracy for {patience} epochs "
                    f"(best {result.best_val_accuracy:.4f} at epoch {result.best_epoch})"
                )
                break
            due = resume is not None and time.perf_counter() - saved >= resume.every_s
            if due and epoch < config.epochs:
                so_far = monitor.so_far("fit")
                parts = [earlier, so_far] if earlier is not None else [so_far]
                state = saved_state(
                    key, epoch, model, optimizer, scheduler, scaler, device, since_best
                )
                state["attempts"] = result.extra.get("resumed", {}).get("attempts", 1)
                state["best"] = [result.best_val_accuracy, result.best_epoch]
                state["history"] = [r.to_dict() for r in result.history]
                state["fit"] = combine("fit", parts).to_dict()
                resume.save(state)  # type: ignore[union-attr]
                saved = time.perf_counter()
    except Divergence as err:
        result.status, result.reason = "diverged", str(err)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        result.status = "oom"
        result.reason = out_of_memory_reason(err, config.gpu_memory_gib)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    finally:
        this = monitor.end_window("fit")
        result.fit = this
        if earlier is not None:  # the earlier attempts' epochs, then this one's
            note = uncounted_note(first_epoch - 1)
            result.fit = combine("fit", [earlier, this], note=note)
    if resume is not None:  # ended with a status (an interruption raised): nothing to resume
        resume.discard()


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    loader: TensorLoader,
    result: TrainResult,
    device: torch.device,
) -> int:
    """Loads a saved training ``state`` into the run; returns the first epoch to train."""
    epoch = restore_state(state, model, optimizer, scheduler, scaler, device)
    loader.set_epoch(epoch)  # the shuffles and augmentations of the epochs that follow
    result.history = [EpochRecord(**r) for r in state["history"]]
    result.best_val_accuracy, result.best_epoch = state["best"]
    result.extra["resumed"] = {"from_epoch": epoch, "attempts": int(state["attempts"]) + 1}
    return epoch + 1


def _train_epoch(
    model: nn.Module,
    loader: TensorLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    step: StepFn,
    config: TrainConfig,
    device: torch.device,
    progress: TrainProgress | None,
) -> tuple[float, float, int, float]:
    model.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    epoch = loader.epoch
    lr = optimizer.param_groups[0]["lr"]
    reported = time.perf_counter()
    for batch_index, (x, y, idx) in enumerate(loader.iter_with_indices()):
        with autocast(device, config.precision):
            loss, logits = step(model, x, y, idx)
        if not torch.isfinite(loss).item():
            raise Divergence(
                f"loss became {loss.item()} at epoch {epoch + 1}, batch {batch_index + 1} "
                f"(lr {lr:g}): stopped"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum += loss.detach().double() * y.shape[0]
        correct += (logits.detach().argmax(1) == y).sum()
        seen += int(y.shape[0])
        if progress is not None and time.perf_counter() - reported >= PROGRESS_INTERVAL_S:
            progress.on_batch(batch_index + 1, float(loss.detach()))
            reported = time.perf_counter()
    return float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1), seen, lr
