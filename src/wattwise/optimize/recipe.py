"""Recipes: ordered compression steps, each followed by the same measurement as the baseline.

    distill:resnet50 -> prune:structured:0.5 -> quantize:int8

After every step the variant is evaluated exactly like the baseline: test accuracy, params, MACs,
bytes on disk, latency p50/p95, images/s and J/image from the fixed inference protocol, peak
memory. The energy the step itself spends (fine-tuning, calibration, compiling) is measured in
its own window, and the **payback** says after how many inferences the per-image saving against
the baseline repays everything spent on optimizing so far.

The recipe text is parsed by :func:`wattwise.config.parse_recipe` (the same grammar as study
configs); YAML recipes are lists of those step strings.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.config import RecipeStep, parse_recipe
from wattwise.data.loader import TensorLoader
from wattwise.data.types import DatasetSplits, TensorSplit
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.models import count_macs, count_parameters
from wattwise.optimize.base import PreparedModel, TechniqueContext, apply_technique
from wattwise.optimize.distill import DistillConfig, distill
from wattwise.optimize.prune import ChannelPruneConfig, MaskPruneConfig, remove_masks, save_pruned
from wattwise.optimize.quantize import AutocastConfig, ChannelsLastConfig, StaticInt8Config
from wattwise.train.config import TrainConfig
from wattwise.train.inference import inference_batch, measure_inference
from wattwise.train.loop import fit


@dataclass(frozen=True)
class RecipeSettings:
    """How recipe steps train and how variants are measured.

    Attributes:
        finetune_epochs: Epochs of fine-tuning after pruning (0: none).
        finetune_lr: Learning rate of that fine-tuning (cosine to 0).
        distill_epochs: Epochs of the distillation step.
        distill_lr: Learning rate of the distillation step.
        calibration_batches: Batches of training images for int8 calibration.
        batch_size: Batch size of fine-tuning, calibration and the inference measurement.
        inference_s: Seconds of each inference measurement.
        device: Where to train and run (int8 runs on CPU).
        seed: Seed of fine-tuning and distillation.
    """

    finetune_epochs: int = 2
    finetune_lr: float = 0.01
    distill_epochs: int = 5
    distill_lr: float = 0.01
    calibration_batches: int = 16
    batch_size: int = 64
    inference_s: float = 3.0
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("finetune_epochs", "distill_epochs", "calibration_batches", "batch_size"):
            value = getattr(self, key)
            low = 0 if key == "finetune_epochs" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
        for key in ("finetune_lr", "distill_lr"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be a positive number, got {value!r}")
        if not self.inference_s > 0:
            raise ConfigError(f"inference_s must be > 0, got {self.inference_s}")


@dataclass(frozen=True)
class VariantResult:
    """A model after a recipe step, measured like the baseline.

    Energies in joules; ``payback_inferences`` is ``None`` when the variant saves nothing per
    image (it never pays back) and 0 for the baseline.
    """

    step: str
    technique: str
    accuracy: float
    params: int
    macs: int | None
    size_bytes: int
    size_note: str
    latency_p50_ms: float
    latency_p95_ms: float
    images_per_s: float
    energy_per_image_j: float
    energy_provenance: str
    peak_rss_bytes: int | None
    step_energy_j: float
    step_duration_s: float
    optimization_energy_j: float
    payback_inferences: float | None
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["notes"] = list(self.notes)
        return out


@dataclass
class RecipeResult:
    """Every variant in order (the first is the baseline) and the final prepared model."""

    recipe: str
    variants: list[VariantResult]
    final: PreparedModel

    @property
    def baseline(self) -> VariantResult:
        return self.variants[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "variants": [v.to_dict() for v in self.variants],
            "final": self.final.to_dict(),
        }


def _payback(spent_j: float, baseline_j: float, variant_j: float) -> float | None:
    saving = baseline_j - variant_j
    if saving <= 0:
        return None
    return spent_j / saving


def _size(prepared: PreparedModel, spec: dict[str, Any] | None) -> tuple[int, str]:
    """Bytes the variant takes: int8 tensors used, or the file ``save_pruned`` writes."""
    int8_bytes = getattr(prepared.report, "int8_bytes", None)
    if int8_bytes is not None:
        return int(int8_bytes), "tensors the int8 graph uses"
    module = prepared.module
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        if any(k.endswith("_mask") for k in module.state_dict()):
            torch.save(module.state_dict(), path)
            return path.stat().st_size, "torch.save(state_dict) with masks attached"
        save_pruned(module, path, spec)
        return path.stat().st_size, "bytes on disk (shapes + state_dict)"


def evaluate_prepared(
    prepared: PreparedModel,
    split: TensorSplit,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int,
    device: torch.device,
) -> float:
    """Top-1 accuracy with fixed-size batches (the last one padded), so that int8 graphs
    specialized to one batch size run too."""
    loader = TensorLoader(split, batch_size, device=device, mean=mean, std=std)
    correct = 0
    prepared.module.eval()
    with torch.inference_mode():
        for x, y in loader:
            n = x.shape[0]
            if n < batch_size:
                x = torch.cat([x, x[-1:].expand(batch_size - n, *x.shape[1:])])
            logits = prepared(x)[:n]
            correct += int((logits.argmax(1) == y).sum())
    return correct / max(len(split), 1)


def _train_config(settings: RecipeSettings, epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=settings.batch_size,
        lr=lr,
        seed=settings.seed,
        device=settings.device,
        hflip=False,
    )


def run_recipe(
    model: nn.Module,
    data: DatasetSplits,
    recipe: str | Sequence[str] | Sequence[RecipeStep],
    *,
    settings: RecipeSettings | None = None,
    model_spec: dict[str, Any] | None = None,
    monitor: EnergyMonitor | None = None,
    progress: bool = False,
    on_variant: Any = None,
) -> RecipeResult:
    """Measure ``model`` as the baseline, then apply and measure each step in order.

    Args:
        model: A trained float model (copied: the original is left untouched).
        data: Its dataset (fine-tuning, calibration, evaluation on ``data.test``).
        recipe: ``"prune:structured:0.5,quantize:int8"``, a list of step strings, or parsed
            steps.
        settings: Fine-tuning, calibration and measurement settings.
        model_spec: ``{"name": ..., **create_model arguments}`` of the model (sizes on disk of
            pruned models are measured with it).
        monitor: The EnergyMonitor to use (default: a new one).
        progress: Progress bars while training.
        on_variant: Called with each :class:`VariantResult` as soon as it is measured.
    """
    settings = settings or RecipeSettings()
    steps = _steps(recipe)
    device = torch.device(settings.device)
    own = monitor is None
    monitor = monitor or EnergyMonitor()
    info = data.info
    current = PreparedModel(copy.deepcopy(model).to(device).eval(), technique="baseline")
    loader = TensorLoader(
        data.train,
        settings.batch_size,
        shuffle=True,
        seed=settings.seed,
        device=device,
        mean=info.mean,
        std=info.std,
        drop_last=True,
    )
    example = next(iter(loader))[0]
    test_batch = inference_batch(data, settings.batch_size, device)
    variants: list[VariantResult] = []
    spent = 0.0
    try:
        variants.append(
            _measure(
                current,
                "baseline",
                0.0,
                0.0,
                0.0,
                None,
                data,
                settings,
                device,
                test_batch,
                monitor,
                model_spec,
            )
        )
        if on_variant:
            on_variant(variants[-1])
        for step in steps:
            if step.kind == "baseline":
                continue
            name = f"recipe/{step}"
            with monitor.window(name) as w:
                current, details = _apply(
                    step, current, data, settings, loader, example, monitor, progress
                )
            step_m = w.measurement
            assert step_m is not None
            spent += step_m.total_energy_j
            variant = _measure(
                current,
                str(step),
                step_m.total_energy_j,
                step_m.duration_s,
                spent,
                variants[0].energy_per_image_j,
                data,
                settings,
                device,
                test_batch,
                monitor,
                model_spec,
                details,
                (variants[-1].params, variants[-1].macs),
            )
            variants.append(variant)
            if on_variant:
                on_variant(variant)
    finally:
        if own:
            monitor.close()
    text = ",".join(str(s) for s in steps)
    return RecipeResult(text, variants, current)


def _steps(recipe: str | Sequence[str] | Sequence[RecipeStep]) -> tuple[RecipeStep, ...]:
    if isinstance(recipe, str):
        return parse_recipe(recipe)
    items = list(recipe)
    if items and all(isinstance(s, RecipeStep) for s in items):
        return tuple(items)  # type: ignore[arg-type]
    return parse_recipe(",".join(str(s) for s in items))


def _apply(
    step: RecipeStep,
    current: PreparedModel,
    data: DatasetSplits,
    settings: RecipeSettings,
    loader: TensorLoader,
    example: torch.Tensor,
    monitor: EnergyMonitor,
    progress: bool,
) -> tuple[PreparedModel, dict[str, Any]]:
    kind, args = step.kind, step.args
    details: dict[str, Any] = {}
    if kind == "distill":
        if current.technique != "baseline" and current.technique != "distill":
            raise ConfigError("distill must come first in a recipe (it trains a float model)")
        teacher = args[0]
        is_checkpoint = "/" in teacher or teacher.endswith((".pt", ".pth", ".ckpt"))
        config = DistillConfig(
            teacher=None if is_checkpoint else teacher,
            teacher_checkpoint=teacher if is_checkpoint else None,
            temperature=float(args[1]) if len(args) > 1 else 4.0,
            alpha=float(args[2]) if len(args) > 2 else 0.9,
        )
        result = distill(
            current.module,
            data,
            _train_config(settings, settings.distill_epochs, settings.distill_lr),
            config,
            monitor=monitor,
            progress=progress,
        )
        details["teacher_test_accuracy"] = result.teacher_test_accuracy
        details["distill_status"] = result.train.status
        return PreparedModel(
            current.module.eval(), technique="distill", description=f"distilled from {teacher}"
        ), details
    if kind == "prune":
        method, amount = args[0], float(args[1])
        if current.precision != "fp32" or getattr(current.report, "int8_bytes", None):
            raise ConfigError("prune must come before quantize/bf16/fp16 in a recipe")
        if method == "structured":
            config: Any = ChannelPruneConfig(ratio=amount)
        else:
            config = MaskPruneConfig(amount=amount, permanent=False)
        prepared = apply_technique(current, config, TechniqueContext(example_inputs=example))
        if settings.finetune_epochs:
            tuned = fit(
                prepared.module,
                data,
                _train_config(settings, settings.finetune_epochs, settings.finetune_lr),
                monitor=monitor,
                progress=progress,
            )
            details["finetune_status"] = tuned.status
            details["finetune_epochs"] = settings.finetune_epochs
        if method == "unstructured":
            details["masks_made_permanent"] = remove_masks(prepared.module)
        prepared.module.eval()
        return prepared, details
    if kind == "quantize":
        if settings.device != "cpu":
            raise ConfigError("quantize:int8 (PT2E, x86) runs on CPU: use device cpu")
        config = StaticInt8Config(calibration_batches=settings.calibration_batches)
        prepared = apply_technique(
            current, config, TechniqueContext(example_inputs=example, calibration=loader)
        )
        return prepared, details
    if kind == "channels_last":
        return apply_technique(current, ChannelsLastConfig(), TechniqueContext(example)), details
    if kind in ("bf16", "fp16"):
        config = AutocastConfig(precision=kind)
        return apply_technique(current, config, TechniqueContext(example)), details
    raise ConfigError(f"unknown recipe step {step}")  # parse_recipe makes this unreachable


def _measure(
    prepared: PreparedModel,
    step: str,
    step_energy_j: float,
    step_duration_s: float,
    spent_j: float,
    baseline_j: float | None,
    data: DatasetSplits,
    settings: RecipeSettings,
    device: torch.device,
    test_batch: torch.Tensor,
    monitor: EnergyMonitor,
    model_spec: dict[str, Any] | None,
    details: dict[str, Any] | None = None,
    counts_from: tuple[int, int | None] | None = None,
) -> VariantResult:
    info = data.info
    accuracy = evaluate_prepared(
        prepared, data.test, info.mean, info.std, batch_size=settings.batch_size, device=device
    )
    inference = measure_inference(
        prepared.module,
        test_batch,
        monitor=monitor,
        device=device,
        min_duration_s=settings.inference_s,
        warmup_s=min(1.0, settings.inference_s / 3),
        name=f"inference/{step}",
        **prepared.inference_kwargs(),
    )
    size_bytes, size_note = _size(prepared, model_spec)
    float_module = isinstance(prepared.module, nn.Module) and not hasattr(
        prepared.module, "compiled"
    )
    shape = tuple(test_batch.shape[1:])
    report = prepared.report.to_dict() if prepared.report is not None else {}
    if float_module:
        params, macs = count_parameters(prepared.module), count_macs(prepared.module, shape)
    else:  # an int8 graph computes what the float model it came from computed
        params, macs = counts_from if counts_from is not None else (0, None)
    j = inference.energy_per_image_j
    return VariantResult(
        step=step,
        technique=prepared.technique,
        accuracy=accuracy,
        params=params,
        macs=macs,
        size_bytes=size_bytes,
        size_note=size_note,
        latency_p50_ms=inference.latency_p50_ms,
        latency_p95_ms=inference.latency_p95_ms,
        images_per_s=inference.images_per_s,
        energy_per_image_j=j,
        energy_provenance=inference.energy_provenance,
        peak_rss_bytes=inference.measurement.peak_rss_bytes,
        step_energy_j=step_energy_j,
        step_duration_s=step_duration_s,
        optimization_energy_j=spent_j,
        payback_inferences=0.0 if baseline_j is None else _payback(spent_j, baseline_j, j),
        notes=prepared.notes,
        details={**(details or {}), "report": report, "description": prepared.description},
    )


def load_recipe_text(text: str) -> str:
    """A recipe string as given, or read from a YAML file: a list of steps, or a mapping with
    ``steps``. Returns the canonical recipe text (validated)."""
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.is_file():
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ConfigError(f"cannot read recipe {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}".splitlines()[0]) from err
        steps = data.get("steps") if isinstance(data, dict) else data
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps) or not steps:
            raise ConfigError(f"{path}: a recipe is a list of steps such as 'prune:structured:0.5'")
        text = ",".join(steps)
    return ",".join(str(step) for step in parse_recipe(text))
