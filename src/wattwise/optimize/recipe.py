"""Recipes: ordered compression steps, each followed by the same measurement as the baseline.

    distill:resnet50 -> prune:structured:0.5 -> quantize:int8

After every step the variant is evaluated exactly like the baseline: test accuracy, params, MACs,
bytes on disk, latency p50/p95, images/s and J/image from the fixed inference protocol, peak
memory. The energy the step itself spends (fine-tuning, calibration, compiling) is measured in
its own window, and the **payback** says after how many inferences the per-image saving against
the baseline repays everything spent on optimizing so far.

Recipes are written in the one grammar of :mod:`wattwise.optimize.grammar`; every step is
applied through :func:`~wattwise.optimize.base.apply_technique`. A step whose config says
``finetune`` (pruning) is fine-tuned afterwards for ``RecipeSettings.finetune_epochs``.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.data.loader import TensorLoader
from wattwise.data.types import DatasetSplits, TensorSplit
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError, TechniqueError
from wattwise.models import count_macs, count_parameters
from wattwise.optimize.base import (
    BaselineConfig,
    PreparedModel,
    TechniqueConfig,
    TechniqueContext,
    apply_technique,
)
from wattwise.optimize.compare import CompareSettings, Comparison
from wattwise.optimize.grammar import check_recipe, format_recipe, load_recipe, parse_recipe
from wattwise.optimize.pruned_files import save_pruned
from wattwise.optimize.variants import (
    Candidate,
    VariantResult,
    fair_references,
    measure_variants,
    unmeasured,
)
from wattwise.train.config import TrainConfig
from wattwise.train.inference import inference_batch
from wattwise.train.loop import fit
from wattwise.validation import (
    NonNegativeInt,
    NonNegativeNumber,
    OpenFraction,
    PositiveInt,
    PositiveNumber,
    Text,
    config_dataclass,
)


@config_dataclass
class RecipeSettings:
    """How recipe steps train and how variants are measured.

    Attributes:
        finetune_epochs: Epochs of fine-tuning after a pruning step (0: none).
        finetune_lr: Learning rate of that fine-tuning (cosine to 0).
        distill_epochs: Epochs of the distillation step.
        distill_lr: Learning rate of the distillation step.
        batch_size: Batch size of fine-tuning, calibration and the inference measurement.
        inference_s: Seconds each variant runs in the comparison, over all rounds (0: no
            inference measurement; latency, throughput, J/image and payback are then not
            reported).
        rounds: Rounds of the interleaved comparison (each variant runs ``inference_s /
            rounds`` seconds per round, in rotating order; use >= 5 for intervals that mean
            something).
        target_half_width: Rounds are added, up to ``max_rounds``, until every saving's
            interval is within x/÷ (1 + this) (``None``: exactly ``rounds``; see
            :class:`~wattwise.optimize.compare.CompareSettings`).
        max_rounds: The most rounds the comparison may run.
        threads: PyTorch CPU threads during the comparison (``None``: the current count; the
            count used is recorded either way).
        device: Where to train and run (int8 runs on CPU).
        seed: Seed of fine-tuning and distillation.
        gpu_memory_gib: The GPU memory cap of fine-tuning and distillation (a study trial's
            ``gpu_memory_gib``: its technique steps fit in what its training had); ``None``:
            no cap.
    """

    finetune_epochs: NonNegativeInt = 2
    finetune_lr: PositiveNumber = 0.01
    distill_epochs: PositiveInt = 5
    distill_lr: PositiveNumber = 0.01
    batch_size: PositiveInt = 64
    inference_s: NonNegativeNumber = 3.0
    rounds: PositiveInt = 10
    target_half_width: OpenFraction | None = 0.10
    max_rounds: PositiveInt = 30
    threads: PositiveInt | None = None
    device: Text = "cpu"
    seed: NonNegativeInt = 0
    gpu_memory_gib: PositiveNumber | None = None

    def compare_settings(self) -> CompareSettings:
        """The comparison protocol these settings describe (``inference_s`` > 0)."""
        return CompareSettings(
            rounds=self.rounds,
            round_s=self.inference_s / self.rounds,
            warmup_s=min(1.0, self.inference_s / 3),
            threads=self.threads,
            target_half_width=self.target_half_width,
            max_rounds=self.max_rounds,
        )


@dataclass
class RecipeResult:
    """Every variant in order (the first is the baseline), the fair references, the comparison
    that measured them together, and the final prepared model."""

    recipe: str
    variants: list[VariantResult]
    final: PreparedModel
    comparison: Comparison | None = None
    references: list[VariantResult] = field(default_factory=list)
    benchmark: Measurement | None = None
    #: Each variant's model, in the order of ``variants`` (``optimize --save-steps`` saves them).
    models: tuple[PreparedModel, ...] = ()

    @property
    def baseline(self) -> VariantResult:
        return self.variants[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "variants": [v.to_dict() for v in self.variants],
            "references": [v.to_dict() for v in self.references],
            "comparison": self.comparison.to_dict() if self.comparison is not None else None,
            "final": self.final.to_dict(),
        }


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
        gpu_memory_gib=settings.gpu_memory_gib,
    )


def run_recipe(
    model: nn.Module,
    data: DatasetSplits,
    recipe: str | Sequence[str] | Sequence[TechniqueConfig],
    *,
    settings: RecipeSettings | None = None,
    model_spec: dict[str, Any] | None = None,
    monitor: EnergyMonitor | None = None,
    on_variant: Callable[[VariantResult], None] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    teacher: nn.Module | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RecipeResult:
    """Measure ``model`` as the baseline, then apply and measure each step in order.

    Args:
        model: A trained float model (copied: the original is left untouched).
        data: Its dataset (fine-tuning, calibration, evaluation on ``data.test``).
        recipe: ``"prune:structured:0.5,quantize:int8"``, a list of step strings, or configs.
        settings: Fine-tuning, calibration and measurement settings.
        model_spec: ``{"name": ..., **create_model arguments}`` of the model (sizes on disk of
            pruned models are measured with it).
        monitor: The EnergyMonitor to use (default: a new one).
        on_variant: Called with each :class:`VariantResult` as soon as it is measured.
        on_epoch: Called with each ``EpochRecord`` of the steps' training (fine-tuning, KD).
        teacher: A trained teacher module for a ``distill`` step (else the step builds it).
        on_stage: Called with what starts now, in words (``applying quantize:int8 (step 2 of
            2)``, ``measuring 3 variants side by side``): a long step (an int8 compile takes
            5-80 s) shows what it is doing.
    """
    settings = settings or RecipeSettings()
    configs = as_configs(recipe)
    device = torch.device(settings.device)
    if device.type != "cpu" and any(c.cpu_only for c in configs):
        steps = ", ".join(c.to_step() for c in configs if c.cpu_only)
        raise ConfigError(f"{steps} (x86 int8) runs on CPU: use device cpu")
    own = monitor is None
    monitor = monitor or EnergyMonitor()
    info = data.info
    current = PreparedModel(copy.deepcopy(model).to(device).eval())
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
    if len(data.train) < settings.batch_size:  # the loader drops the last partial batch
        raise ConfigError(
            f"batch size {settings.batch_size} is larger than the {len(data.train)} training "
            "images: use a smaller batch size"
        )
    finetune = _train_config(settings, max(settings.finetune_epochs, 1), settings.finetune_lr)

    def train_fn(module: nn.Module, step: int, steps: int) -> Any:
        del step, steps
        return fit(module, data, finetune, monitor=monitor, on_epoch=on_epoch)

    context = TechniqueContext(
        example_inputs=next(iter(loader))[0],
        calibration=loader,
        train_fn=train_fn,
        data=data,
        train_config=_train_config(settings, settings.distill_epochs, settings.distill_lr),
        monitor=monitor,
        teacher=teacher,
        on_epoch=on_epoch,
    )
    evaluate = _Evaluator(data, settings, device, model_spec)
    candidates = [evaluate(current, "baseline")]
    spent = 0.0
    stage = on_stage or (lambda _text: None)
    steps = sum(not isinstance(c, BaselineConfig) for c in configs)
    try:
        for config in configs:
            if isinstance(config, BaselineConfig):
                continue
            step = config.to_step()
            stage(f"applying {step} (step {len(candidates)} of {steps})")
            with monitor.window(f"recipe/{step}") as w:
                current, details = _apply(config, current, context, data, settings, on_epoch)
            assert w.measurement is not None
            spent += w.measurement.total_energy_j
            counts = (candidates[-1].params, candidates[-1].macs)
            candidates.append(evaluate(current, step, w.measurement, spent, details, counts))
        references = []
        if settings.inference_s > 0:
            refs = fair_references(candidates[0].prepared, configs, context)
            references = [
                evaluate(
                    ref,
                    name,
                    counts_from=(candidates[0].params, candidates[0].macs),
                    reference=True,
                )
                for name, ref in refs.items()
            ]
            stage(f"measuring {len(candidates) + len(references)} variants side by side")
            with monitor.window("inference") as bench:  # measurement, not technique energy
                results, comparison = measure_variants(
                    [*candidates, *references],
                    evaluate.batch,
                    settings.compare_settings(),
                    monitor,
                )
            benchmark = bench.measurement
        else:
            results, comparison, benchmark = unmeasured(candidates), None, None
    finally:
        if own:
            monitor.close()
    variants = [r for r in results if not r.reference]
    for variant in variants:
        if on_variant:
            on_variant(variant)
    return RecipeResult(
        format_recipe(configs),
        variants,
        current,
        comparison,
        [r for r in results if r.reference],
        benchmark,
        tuple(c.prepared for c in candidates),
    )


def as_configs(
    recipe: str | Sequence[str] | Sequence[TechniqueConfig],
) -> tuple[TechniqueConfig, ...]:
    """A recipe given as text, step strings or configs, as validated configs."""
    if isinstance(recipe, str):
        return parse_recipe(recipe)
    items = list(recipe)
    if items and all(isinstance(c, TechniqueConfig) for c in items):
        configs = tuple(items)
        check_recipe(configs)  # type: ignore[arg-type]
        return configs  # type: ignore[return-value]
    return parse_recipe(",".join(str(s) for s in items))


def _apply(
    config: TechniqueConfig,
    current: PreparedModel,
    context: TechniqueContext,
    data: DatasetSplits,
    settings: RecipeSettings,
    on_epoch: Callable[[Any], None] | None,
) -> tuple[PreparedModel, dict[str, Any]]:
    """One step through its handler, then the recipe's fine-tuning if the step asks for it
    (by knowledge distillation from the model before the step with ``finetune_by=distill``)."""
    teacher = None
    if getattr(config, "finetune_by", "labels") == "distill":
        teacher = copy.deepcopy(current.module).eval()
        between = _train_config(settings, max(settings.finetune_epochs, 1), settings.finetune_lr)
        monitor = context.monitor
        context = dataclasses.replace(
            context,
            train_fn=lambda module, step, steps: _finetune(
                module, data, between, monitor, on_epoch, teacher
            ),
        )
    prepared = apply_technique(current, config, context)
    details: dict[str, Any] = {}
    report = prepared.report
    train = getattr(report, "train", None)  # a distillation's TrainResult
    if train is not None:
        details["train_status"] = train.status
    if getattr(report, "teacher_test_accuracy", None) is not None:
        details["teacher_test_accuracy"] = report.teacher_test_accuracy  # type: ignore[union-attr]
    if config.finetune and settings.finetune_epochs:
        tc = _train_config(settings, settings.finetune_epochs, settings.finetune_lr)
        tuned = _finetune(prepared.module, data, tc, context.monitor, on_epoch, teacher)
        if tuned.status != "ok":  # a variant that is not what the recipe asked for: no result
            why = tuned.reason or tuned.status
            during = f"while fine-tuning after {format_recipe([config])}"
            if tuned.status != "oom":
                raise TechniqueError(f"{tuned.status} {during}: {why}")
            if why.startswith("does not fit"):  # under a GPU memory cap: its reading first
                raise TechniqueError(f"{why}: out of memory {during}")
            raise TechniqueError(f"out of memory {during}: {why.removeprefix('out of memory: ')}")
        details["finetune_status"] = tuned.status
        details["finetune_epochs"] = settings.finetune_epochs
        if teacher is not None:
            details["finetune_by"] = "distill"
    details.update(config.finish(prepared.module))
    prepared.module.eval()
    return prepared, details


def _finetune(
    module: nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    monitor: EnergyMonitor | None,
    on_epoch: Callable[[Any], None] | None,
    teacher: nn.Module | None,
) -> Any:
    """Fine-tunes ``module`` in place on labels, or by distillation from ``teacher``; returns
    the :class:`~wattwise.train.TrainResult`."""
    if teacher is None:
        return fit(module, data, config, monitor=monitor, on_epoch=on_epoch)
    from wattwise.optimize.distill import distill
    from wattwise.optimize.distill_config import DistillConfig

    result = distill(module, data, config, DistillConfig(teacher="self"), teacher=teacher,
                     monitor=monitor, on_epoch=on_epoch)  # fmt: skip
    return result.train


class _Evaluator:
    """What is known of a variant without timing it: accuracy, size, params and MACs. Each
    candidate keeps its own copy of the model, since later steps change theirs in place."""

    def __init__(
        self,
        data: DatasetSplits,
        settings: RecipeSettings,
        device: torch.device,
        model_spec: dict[str, Any] | None,
    ) -> None:
        self.data, self.settings, self.device, self.model_spec = data, settings, device, model_spec
        self.batch = inference_batch(data, settings.batch_size, device)

    def __call__(
        self,
        prepared: PreparedModel,
        step: str,
        step_measurement: Measurement | None = None,
        spent_j: float = 0.0,
        details: dict[str, Any] | None = None,
        counts_from: tuple[int, int | None] | None = None,
        *,
        reference: bool = False,
    ) -> Candidate:
        info = self.data.info
        accuracy = evaluate_prepared(
            prepared,
            self.data.test,
            info.mean,
            info.std,
            batch_size=self.settings.batch_size,
            device=self.device,
        )
        model_bytes, note = _size(prepared, self.model_spec)
        if not hasattr(prepared.module, "compiled"):
            shape = tuple(self.batch.shape[1:])
            params, macs = count_parameters(prepared.module), count_macs(prepared.module, shape)
        else:  # a compiled or int8 graph computes what the float model it came from computed
            params, macs = counts_from if counts_from is not None else (0, None)
        return Candidate(
            step=step,
            prepared=_snapshot(prepared),
            accuracy=accuracy,
            params=params,
            macs=macs,
            model_bytes=model_bytes,
            model_bytes_note=note,
            step_measurement=step_measurement,
            optimization_energy_j=spent_j,
            reference=reference,
            details=details or {},
        )


def _snapshot(prepared: PreparedModel) -> PreparedModel:
    """A copy whose module later steps cannot change (pruning and layout work in place); a
    compiled graph, which later steps never change, is kept as it is."""
    if hasattr(prepared.module, "compiled"):
        return prepared
    return dataclasses.replace(prepared, module=copy.deepcopy(prepared.module))


def load_recipe_text(text: str) -> str:
    """A recipe given as text or as a YAML file (see
    :func:`~wattwise.optimize.grammar.load_recipe`), as its canonical text (validated)."""
    return format_recipe(load_recipe(text))
