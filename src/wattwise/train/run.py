"""One measured training run end to end: data -> model -> fit -> test -> inference -> saved run.

A run folder holds ``checkpoint.pt`` (weights + resolved settings), ``run.json`` (everything
measured, with provenance) and ``config.json`` (the resolved settings, to rerun it).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from wattwise.data import load_dataset
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError, WattwiseError
from wattwise.models import create_model, inspect_model
from wattwise.train.checkpoint import save_checkpoint
from wattwise.train.config import TrainConfig
from wattwise.train.device import num_threads
from wattwise.train.inference import InferenceResult, inference_batch, measure_inference
from wattwise.train.loop import EpochRecord, TrainResult, fit


@dataclass(frozen=True)
class RunSpec:
    """What to train on what.

    Attributes:
        dataset: Registered dataset name (``digits`` works offline).
        model: Registered model name.
        data_root: Data folder (default ``$WATTWISE_DATA`` or ``~/.cache/wattwise/data``).
        image_size: Resize images to this side (default: the dataset's own).
        width: Channel multiplier of the model.
        weights: Pretrained weights (torchvision name, or a local state_dict file).
        val_fraction: Validation share carved from train where the dataset has no val split.
        download: Fetch missing dataset files first.
        train: The training settings.
        inference_batch_size: Batch size of the inference measurement.
        inference_s: Seconds of the inference measurement (0 skips it).
    """

    dataset: str = "digits"
    model: str = "small_cnn"
    data_root: str | None = None
    image_size: int | None = None
    width: float = 1.0
    weights: str | None = None
    val_fraction: float = 0.1
    download: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)
    inference_batch_size: int = 64
    inference_s: float = 3.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.inference_s) or self.inference_s < 0:
            raise ConfigError(f"inference_s must be >= 0, got {self.inference_s}")
        if self.inference_batch_size < 1:
            raise ConfigError(f"inference batch size must be >= 1, got {self.inference_batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunOutcome:
    """A finished run: the training result, the inference measurement and where it was saved."""

    spec: RunSpec
    result: TrainResult
    inference: InferenceResult | None
    model_stats: dict[str, Any]
    dataset_info: dict[str, Any]
    run_dir: Path | None = None

    @property
    def accuracy(self) -> float | None:
        return self.result.test_accuracy

    def summary(self) -> dict[str, Any]:
        """The headline numbers, units in the names."""
        r = self.result
        out: dict[str, Any] = {
            "status": r.status,
            "reason": r.reason,
            "test_accuracy": r.test_accuracy,
            "train_energy_j": r.train_energy_j,
            "train_energy_provenance": r.fit.total_provenance if r.fit else None,
            "train_duration_s": r.fit.duration_s if r.fit else None,
            "accuracy_per_kj_train": r.accuracy_per_kj,
            "peak_rss_bytes": r.fit.peak_rss_bytes if r.fit else None,
        }
        if self.inference is not None:
            inf = self.inference
            out.update(
                inference_energy_per_image_j=inf.energy_per_image_j,
                inference_images_per_s=inf.images_per_s,
                inference_latency_p50_ms=inf.latency_p50_ms,
                inference_latency_p95_ms=inf.latency_p95_ms,
                inference_energy_provenance=inf.energy_provenance,
                accuracy_per_j_per_image=(
                    r.test_accuracy / inf.energy_per_image_j
                    if r.test_accuracy is not None and inf.energy_per_image_j > 0
                    else None
                ),
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "summary": self.summary(),
            "dataset": self.dataset_info,
            "model": self.model_stats,
            "train": self.result.to_dict(),
            "inference": self.inference.to_dict() if self.inference else None,
            "environment": environment(),
        }


def environment() -> dict[str, Any]:
    """Software and hardware the run used."""
    from wattwise import __version__
    from wattwise.energy.cpu_model import cpu_model_name

    info: dict[str, Any] = {
        "wattwise": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model_name(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def train_run(
    spec: RunSpec,
    *,
    out_dir: str | Path | None = None,
    monitor: EnergyMonitor | None = None,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> RunOutcome:
    """Load the data, build the model, train, test, measure inference and save the run."""
    data = load_dataset(
        spec.dataset,
        spec.data_root,
        image_size=spec.image_size,
        val_fraction=spec.val_fraction,
        seed=spec.train.seed,
        download=spec.download,
    )
    info = data.info
    torch.manual_seed(spec.train.seed)
    model_spec = {
        "name": spec.model,
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": info.image_size,
        "width": spec.width,
    }
    model = create_model(**model_spec, weights=spec.weights)
    stats = inspect_model(model, (info.in_channels, info.image_size, info.image_size)).to_dict()
    own = monitor is None
    monitor = monitor or EnergyMonitor()
    try:
        result = fit(model, data, spec.train, monitor=monitor, progress=progress, on_epoch=on_epoch)
        inference = None
        if result.status == "ok" and spec.inference_s > 0 and len(data.test):
            batch = inference_batch(data, spec.inference_batch_size)
            with num_threads(spec.train.num_threads):
                inference = measure_inference(
                    model,
                    batch,
                    monitor=monitor,
                    device=result.device,
                    precision=spec.train.precision,
                    channels_last=spec.train.channels_last,
                    warmup_s=min(1.0, spec.inference_s / 3),
                    min_duration_s=spec.inference_s,
                )
    finally:
        if own:
            monitor.close()
    outcome = RunOutcome(
        spec=spec,
        result=result,
        inference=inference,
        model_stats=stats,
        dataset_info=asdict(info),
    )
    if out_dir is not None:
        outcome.run_dir = save_run(outcome, model.cpu(), model_spec, out_dir)
    return outcome


def default_run_dir(base: str | Path, spec: RunSpec) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = f"{spec.dataset}-{spec.model}".replace(":", "_").replace("/", "_")
    return Path(base) / f"{stamp}-{slug}"


def save_run(outcome: RunOutcome, model: Any, model_spec: dict[str, Any], out: str | Path) -> Path:
    """Write checkpoint.pt, run.json and config.json into the folder ``out``."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            folder / "checkpoint.pt",
            model,
            model_spec=model_spec,
            train_config=outcome.spec.train.to_dict(),
            dataset={"name": outcome.spec.dataset, "info": outcome.dataset_info},
            result=outcome.summary(),
        )
        (folder / "run.json").write_text(json.dumps(outcome.to_dict(), indent=2) + "\n")
        (folder / "config.json").write_text(json.dumps(outcome.spec.to_dict(), indent=2) + "\n")
    except OSError as err:
        raise WattwiseError(f"cannot write the run to {folder}: {err.strerror or err}") from err
    return folder
