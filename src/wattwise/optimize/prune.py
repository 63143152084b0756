"""Pruning: structured channel pruning (real savings) and mask pruning (for study only).

* :func:`prune_channels` removes whole channels with Torch-Pruning's dependency graph, so the
  model really gets smaller and faster: fewer parameters, fewer MACs, dense kernels.
* :func:`prune_masks` zeroes single weights with ``torch.nn.utils.prune`` (L1 unstructured).
  Dense kernels still multiply the zeros: **no speedup, no smaller dense model**; its report
  says so (``speedup_expected=False``). It is offered to study sparsity versus accuracy.

A channel-pruned model no longer matches its registry architecture: save it with
:func:`save_pruned` and rebuild it with :func:`load_pruned` (registry spec + the file; both
live in :mod:`wattwise.optimize.base` and are re-exported here).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch_pruning as tp
from annotated_types import Gt, Lt
from torch import nn
from torch.nn.utils import prune as torch_prune

from wattwise.errors import ConfigError, PruningError
from wattwise.models import (
    ModelStats,
    count_macs,
    count_parameters,
    inspect_model,
    serialized_size_bytes,
)
from wattwise.optimize.base import (
    STAGE_PRUNE,
    Batches,
    PreparedModel,
    TechniqueConfig,
    TechniqueContext,
    iter_batches,
    register_technique,
    split_batch,
)
from wattwise.optimize.pruned_files import load_pruned as load_pruned  # re-exported
from wattwise.optimize.pruned_files import save_pruned as save_pruned  # re-exported
from wattwise.validation import Bool, PositiveInt, StrictNumber, Text, config_dataclass

#: A share in (0, 1), given as a number.
Share = Annotated[StrictNumber, Gt(0), Lt(1)]

PRUNABLE = (nn.Conv2d, nn.Linear)
MASK_NOTE = (
    "mask pruning zeroes weights but keeps dense shapes: params, MACs and dense speed are "
    "unchanged (no speedup expected); while masks are attached the state_dict holds "
    "weight_orig + weight_mask"
)
FineTune = Callable[[nn.Module, int, int], Any]


@config_dataclass
class MaskPruneConfig(TechniqueConfig):
    """L1-unstructured mask pruning of every Conv2d and Linear weight
    (step ``prune:unstructured:<amount>[:scope=layer]``).

    Attributes:
        amount: Fraction of the weights to zero, in (0, 1).
        scope: ``global`` (one L1 threshold over all layers; layer sparsity varies) or ``layer``
            (``amount`` in every layer).
        permanent: Remove the masks right away (:func:`remove_masks`): zeros stay, state_dict
            is clean. In a recipe the masks are removed after fine-tuning either way.
    """

    step: ClassVar[str] = "prune:unstructured"
    positional: ClassVar[tuple[str, ...]] = ("amount",)
    stage: ClassVar[int] = STAGE_PRUNE
    finetune: ClassVar[bool] = True
    amount: Share = 0.5
    scope: Literal["global", "layer"] = "global"
    permanent: Bool = False

    def finish(self, module: nn.Module) -> dict[str, Any]:
        """Makes the masks permanent after a recipe's fine-tuning."""
        return {"masks_made_permanent": remove_masks(module)}


@config_dataclass
class ChannelPruneConfig(TechniqueConfig):
    """Structured channel pruning with Torch-Pruning (``tp.pruner.MetaPruner``)
    (step ``prune:structured:<ratio>[:importance=taylor][:steps=3]...``).

    Attributes:
        ratio: Fraction of channels to remove, in (0, 1): in every layer (uniform) or of all
            prunable channels (global). Both sides of a layer shrink: 30 % of the channels
            removes about half the parameters.
        importance: ``magnitude`` (group L2 norm), ``bn_scale`` (|BatchNorm gamma|, network
            slimming) or ``taylor`` (|weight x grad|; needs labelled calibration batches).
        global_pruning: Rank channels across layers (uneven widths) instead of uniformly.
        round_to: Remaining channels are rounded down to a multiple of this (efficient
            kernels; ``None``: off). A layer that would keep fewer is left whole. ``auto`` (the
            default): the largest of 8, 4, 2 that moves no prunable layer's kept channels by
            more than :data:`ROUND_TOLERANCE` of its width (else none); on narrow models a
            fixed 8 would make ``ratio`` meaningless (10 % of 16 channels would keep 8).
        iterative_steps: Reach ``ratio`` in equal steps, fine-tuning between them (option
            ``steps`` in a recipe).
        max_layer_ratio: No layer loses more than this fraction of its channels, in (0, 1).
        head: Path of the final classifier, never pruned (default: the last ``nn.Linear``).
        ignore: Further module paths to leave untouched (``ignore=layer4.1|layer4.0``).
        taylor_batches: Calibration batches whose gradients feed Taylor importance per step.
        finetune_by: How a recipe fine-tunes after this step (and between iterative steps):
            ``labels`` (cross-entropy), or ``distill``: knowledge distillation from the model
            as it was before the step — the narrower student learns from its wider self
            (Hinton KD with the :class:`~wattwise.optimize.DistillConfig` defaults).
    """

    step: ClassVar[str] = "prune:structured"
    positional: ClassVar[tuple[str, ...]] = ("ratio",)
    option_aliases: ClassVar[Mapping[str, str]] = {"steps": "iterative_steps"}
    stage: ClassVar[int] = STAGE_PRUNE
    finetune: ClassVar[bool] = True
    ratio: Share = 0.3
    importance: Literal["magnitude", "bn_scale", "taylor"] = "magnitude"
    global_pruning: Bool = False
    round_to: PositiveInt | Literal["auto"] | None = "auto"
    iterative_steps: PositiveInt = 1
    max_layer_ratio: Share = 0.9
    head: Text | None = None
    ignore: tuple[Text, ...] = ()
    taylor_batches: PositiveInt = 1
    finetune_by: Literal["labels", "distill"] = "labels"


@dataclass(frozen=True)
class SparsityReport:
    """Zeros in the Conv2d/Linear weights, counted one by one: ``zeros`` of ``total`` weights,
    ``sparsity = zeros / total`` (0..1), and ``layers``: module path -> that layer's sparsity."""

    zeros: int
    total: int
    sparsity: float
    layers: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "layers": dict(self.layers)}


@dataclass(frozen=True)
class MaskPruneReport:
    """What mask pruning did: sparsity reached, and (honestly) what it did not change.

    ``params``/``macs`` are per image and equal before and after: dense kernels still compute
    every zero. ``size_bytes_*`` are ``torch.save(state_dict)`` sizes (larger with masks).
    """

    amount: float
    scope: str
    permanent: bool
    sparsity: SparsityReport
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    size_bytes_before: int
    size_bytes_after: int
    speedup_expected: bool = False
    note: str = MASK_NOTE

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "sparsity": self.sparsity.to_dict()}


@dataclass(frozen=True)
class ChannelPruneReport:
    """What channel pruning removed, measured with ``inspect_model`` (per image).

    Attributes:
        channels_before / channels_after: Module path -> output channels (features) of every
            Conv2d and Linear.
        channel_ratio: Fraction of the prunable layers' output channels removed.
        params_ratio / macs_ratio: After / before (0.5 = halved).
        steps: Params and MACs after each iterative step.
        duration_s: Wall time of importance + pruning (fine-tuning excluded).
        round_to: The rounding used (``auto`` resolved; ``None``: none).
    """

    config: dict[str, Any]
    before: ModelStats
    after: ModelStats
    channels_before: dict[str, int]
    channels_after: dict[str, int]
    channel_ratio: float
    params_ratio: float
    macs_ratio: float
    steps: tuple[dict[str, int], ...]
    duration_s: float
    round_to: int | None = None
    speedup_expected: bool = True
    note: str = "channels removed: dense params and MACs shrink; measure the speedup"

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(before=self.before.to_dict(), after=self.after.to_dict(), steps=list(self.steps))
        return out


def weight_sparsity(model: nn.Module) -> SparsityReport:
    """Count the zero weights of every Conv2d and Linear (with masks applied, if attached)."""
    layers: dict[str, float] = {}
    zeros = total = 0
    for path, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            weight = module.weight.detach()
            layer_zeros, layer_total = int((weight == 0).sum()), weight.numel()
            layers[path] = layer_zeros / layer_total
            zeros, total = zeros + layer_zeros, total + layer_total
    return SparsityReport(zeros, total, zeros / total if total else 0.0, layers)


def prune_masks(
    model: nn.Module, config: MaskPruneConfig, example_inputs: torch.Tensor | None = None
) -> MaskPruneReport:
    """Zero the smallest-|w| weights of every Conv2d/Linear, in place (masks attached).

    Args:
        model: The model (modified in place).
        config: Amount, scope and whether to make it permanent.
        example_inputs: A batch ``[B, C, H, W]`` to count MACs (``None``: not counted).

    Returns:
        The :class:`MaskPruneReport` (``speedup_expected=False``).
    """
    shape = tuple(example_inputs.shape[1:]) if example_inputs is not None else None
    before = _stats(model, shape)
    targets = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]
    if not targets:
        raise PruningError("the model has no Conv2d or Linear layer to prune")
    if config.scope == "global":
        torch_prune.global_unstructured(
            targets, pruning_method=torch_prune.L1Unstructured, amount=config.amount
        )
    else:
        for module, name in targets:
            torch_prune.l1_unstructured(module, name, amount=config.amount)
    if config.permanent:
        remove_masks(model)
    after = _stats(model, shape)
    return MaskPruneReport(
        amount=config.amount,
        scope=config.scope,
        permanent=config.permanent,
        sparsity=weight_sparsity(model),
        params_before=before[0],
        params_after=after[0],
        macs_before=before[1],
        macs_after=after[1],
        size_bytes_before=before[2],
        size_bytes_after=after[2],
    )


def remove_masks(model: nn.Module) -> int:
    """Make mask pruning permanent: zeros stay, ``weight_orig``/``weight_mask`` go.

    Returns:
        Number of pruned parameters made permanent.
    """
    count = 0
    for module in model.modules():
        for mask in [k for k in module._buffers if k.endswith("_mask")]:
            name = mask[: -len("_mask")]
            if f"{name}_orig" in module._parameters:
                torch_prune.remove(module, name)
                count += 1
    return count


def _stats(model: nn.Module, shape: tuple[int, ...] | None) -> tuple[int, int | None, int]:
    macs = count_macs(model, shape) if shape is not None else None  # type: ignore[arg-type]
    return count_parameters(model), macs, serialized_size_bytes(model)


def _importance(kind: str) -> Any:
    imp = tp.importance
    if kind == "magnitude":
        return imp.GroupMagnitudeImportance(p=2)
    return imp.BNScaleImportance() if kind == "bn_scale" else imp.GroupTaylorImportance()


def _default_head(model: nn.Module) -> str:
    linears = [path for path, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("no nn.Linear classifier found: set ChannelPruneConfig.head")
    return linears[-1]


#: ``round_to="auto"`` keeps each layer's kept channels within this share of its width.
ROUND_TOLERANCE = 0.05


def auto_round_to(widths: Sequence[int], config: ChannelPruneConfig) -> int | None:
    """The largest of 8, 4, 2 whose rounding (down, as Torch-Pruning does) moves no layer of
    ``widths`` channels by more than :data:`ROUND_TOLERANCE` of its width at any of the
    iterative steps' ratios, and leaves every layer at least that many channels; ``None``
    (no rounding) when none does."""
    steps = config.iterative_steps
    ratios = [config.ratio * step / steps for step in range(1, steps + 1)]
    for multiple in (8, 4, 2):
        fits = True
        for width, ratio in itertools.product(widths, ratios):
            kept = int(width * (1 - ratio))  # as Torch-Pruning's uniform pruning keeps
            rounded = kept - kept % multiple
            if rounded < multiple or (kept - rounded) > ROUND_TOLERANCE * width:
                fits = False
                break
        if fits:
            return multiple
    return None


def _out_channels(model: nn.Module) -> dict[str, int]:
    return {
        path: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for path, m in model.named_modules()
        if isinstance(m, PRUNABLE)
    }


def _taylor_gradients(model: nn.Module, calibration: Batches | None, batches: int) -> None:
    """Accumulate gradients of the cross-entropy loss on labelled calibration batches."""
    model.zero_grad(set_to_none=True)
    seen = 0
    with torch.enable_grad():
        for batch in iter_batches(calibration, batches):
            x, y = split_batch(batch)
            if y is None:
                raise ConfigError("taylor importance needs calibration batches with labels")
            nn.functional.cross_entropy(model(x), y).backward()
            seen += 1
    if seen == 0:
        raise ConfigError("taylor importance needs calibration batches (inputs, labels)")


def prune_channels(
    model: nn.Module,
    config: ChannelPruneConfig,
    example_inputs: torch.Tensor,
    *,
    calibration: Batches | None = None,
    fine_tune: FineTune | None = None,
) -> ChannelPruneReport:
    """Remove channels with Torch-Pruning's dependency graph, in place.

    Coupled layers (residual additions, depthwise convs, BatchNorm) are pruned together, so
    the model stays valid. Pruning runs in eval mode (BatchNorm statistics untouched).

    Args:
        model: The model (modified in place; pass a ``copy.deepcopy`` to keep the original).
        config: Ratio, importance, global/uniform, rounding and steps.
        example_inputs: A batch ``[B, C, H, W]`` on the model's device (tracing and MACs).
        calibration: ``(inputs, labels)`` batches; required by Taylor importance.
        fine_tune: ``fine_tune(model, step, steps)`` after each step but the last (the final
            fine-tuning is the caller's next step), e.g. ``fit`` for one epoch.

    Returns:
        The :class:`ChannelPruneReport` (params and MACs before/after, achieved ratios).

    Raises:
        ConfigError: Unknown head/ignored path; Taylor without labelled batches; ``bn_scale``
            without BatchNorm.
        PruningError: Torch-Pruning cannot trace the model.
    """
    shape = tuple(example_inputs.shape[1:])
    if config.importance == "bn_scale" and not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ):
        raise ConfigError("bn_scale importance needs BatchNorm layers; use magnitude")
    paths = (config.head or _default_head(model), *config.ignore)
    try:
        ignored = [model.get_submodule(p) for p in paths]
    except AttributeError as err:
        raise ConfigError(f"no module {err}: check ChannelPruneConfig.head / ignore") from None
    was_training, started, busy_s, steps = model.training, time.perf_counter(), 0.0, []
    before, channels_before = inspect_model(model.eval(), shape), _out_channels(model)
    prunable = [p for p in channels_before if p not in paths]
    round_to = config.round_to
    if round_to == "auto":
        round_to = auto_round_to([channels_before[p] for p in prunable], config)
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            example_inputs,
            importance=_importance(config.importance),
            pruning_ratio=config.ratio,
            ignored_layers=ignored,
            global_pruning=config.global_pruning,
            round_to=round_to,
            iterative_steps=config.iterative_steps,
            max_pruning_ratio=config.max_layer_ratio,
        )
    except Exception as err:
        raise PruningError(
            f"Torch-Pruning cannot trace {type(model).__name__}: {err}".splitlines()[0]
        ) from err
    for step in range(1, config.iterative_steps + 1):
        model.eval()
        if config.importance == "taylor":
            _taylor_gradients(model, calibration, config.taylor_batches)
        pruner.step()
        model.zero_grad(set_to_none=True)
        stats = inspect_model(model, shape)
        steps.append({"step": step, "params": stats.params, "macs": stats.macs})
        busy_s += time.perf_counter() - started
        if fine_tune is not None and step < config.iterative_steps:
            model.train()
            fine_tune(model, step, config.iterative_steps)
        started = time.perf_counter()
    model.train(was_training)
    after, channels_after = inspect_model(model, shape), _out_channels(model)
    total, kept = (sum(c[p] for p in prunable) for c in (channels_before, channels_after))
    return ChannelPruneReport(
        config=config.to_dict(),
        before=before,
        after=after,
        channels_before=channels_before,
        channels_after=channels_after,
        channel_ratio=1 - kept / total if total else 0.0,
        params_ratio=after.params / before.params,
        macs_ratio=after.macs / before.macs if before.macs else 1.0,
        steps=tuple(steps),
        duration_s=busy_s,
        round_to=round_to,
    )


@register_technique(MaskPruneConfig)
def _apply_masks(model: nn.Module, config: MaskPruneConfig, ctx: TechniqueContext) -> PreparedModel:
    report = prune_masks(model, config, ctx.example_inputs)
    text = f"L1 mask pruning {config.amount:.0%} ({config.scope}): no speedup"
    return PreparedModel(
        model, applied=config.to_step(), description=text, report=report, notes=(MASK_NOTE,)
    )


@register_technique(ChannelPruneConfig)
def _apply_channels(
    model: nn.Module, config: ChannelPruneConfig, ctx: TechniqueContext
) -> PreparedModel:
    example = ctx.need_example(config.step)
    report = prune_channels(
        model, config, example, calibration=ctx.calibration, fine_tune=ctx.train_fn
    )
    text = (
        f"channel pruning {config.ratio:.0%} ({config.importance}): MACs x{report.macs_ratio:.2f}"
    )
    notes = ("accuracy collapses without fine-tuning after pruning",)
    return PreparedModel(
        model, applied=config.to_step(), description=text, report=report, notes=notes
    )
