"""What the techniques share: configs, the step registry, the prepared-model type, model files.

An optimization is a small frozen config plus a handler (after torchao's
``quantize_(model, Int8...Config())``)::

    prepared = apply_technique(model, ChannelPruneConfig(ratio=0.3), context)
    measure_inference(prepared.module, x, **prepared.inference_kwargs())

Each config class declares its recipe step (``step = "prune:structured"``), its positional
arguments and its stage in a recipe; :mod:`wattwise.optimize.grammar` parses and prints every
step from these declarations alone. Handlers are found through :data:`techniques`, keyed by
step. Adding a technique is one config class plus one ``@register_technique`` handler in one
module (see docs/optimize.md, "Adding a technique").
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import torch
from torch import nn

from wattwise.errors import ConfigError
from wattwise.optimize.step_text import format_step
from wattwise.train.config import PRECISIONS
from wattwise.validation import config_dataclass, dump, fields_of

if TYPE_CHECKING:
    from wattwise.data.types import DatasetSplits
    from wattwise.energy.monitor import EnergyMonitor
    from wattwise.train.config import TrainConfig

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor]
#: Batches of real inputs: an iterable of tensors or ``(inputs, labels)`` pairs (a
#: ``TensorLoader`` works), or a callable returning such an iterable.
Batches = Iterable[Batch] | Callable[[], Iterable[Batch]]

#: Recipe stages, in the order steps must come (a later stage never precedes an earlier one).
STAGE_TRAIN, STAGE_PRUNE, STAGE_LAYOUT, STAGE_NUMERICS = 0, 1, 2, 3


class TechniqueConfig:
    """Base of the technique configs; subclasses are :func:`~wattwise.validation.config_dataclass`.

    Class attributes (declarations the grammar, the registry and recipes read):
        step: The recipe step that names it (``prune:structured``, ``quantize:int8``).
        positional: Fields given by position after the step (``("ratio",)``); the others are
            ``key=value`` options.
        required: How many of ``positional`` must be given (default: all).
        option_aliases: Short option names (``{"steps": "iterative_steps"}``).
        stage: Where it goes in a recipe (``STAGE_*``): training (distill) first, then pruning,
            then memory layout, then numerics (int8, autocast).
        int8: True for techniques whose result runs without autocast (int8 graphs).
        cpu_only: True when the result runs on CPU only (x86 int8).
        finetune: A recipe fine-tunes the model after this step (pruning).
    """

    step: ClassVar[str] = ""
    positional: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[int | None] = None
    option_aliases: ClassVar[Mapping[str, str]] = {}
    stage: ClassVar[int] = STAGE_NUMERICS
    int8: ClassVar[bool] = False
    cpu_only: ClassVar[bool] = False
    finetune: ClassVar[bool] = False

    @property
    def kind(self) -> str:
        """The step's first word (``prune``): a recipe holds each kind at most once."""
        return self.step.split(":", 1)[0]

    @classmethod
    def from_args(cls, positional: Sequence[Any], options: Mapping[str, Any]) -> TechniqueConfig:
        """The config of a parsed step: ``positional`` values (in :attr:`positional` order) and
        ``options`` by field name (already converted from text; validated here)."""
        return cls(**dict(zip(cls.positional, positional, strict=False)), **options)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The fields a step sets as ``key=value`` (all but the positional ones)."""
        return tuple(n for n in fields_of(cls) if n not in cls.positional)

    def step_args(self) -> tuple[list[Any], dict[str, Any]]:
        """``(positional, options)`` that :meth:`from_args` turns back into this config."""
        values = dump(self)
        return [values.pop(name) for name in self.positional], values

    def to_step(self) -> str:
        """The canonical step text (:func:`wattwise.optimize.step_text.format_step`)."""
        return format_step(self)

    def to_dict(self) -> dict[str, Any]:
        """``{"step": step, **fields}``: plain data for YAML, JSON and reports."""
        return {"step": self.step, **dump(self)}

    def finish(self, module: nn.Module) -> dict[str, Any]:
        """Called by a recipe after fine-tuning; returns details for the record (default none)."""
        del module
        return {}


@dataclass(frozen=True)
class TechniqueContext:
    """What a handler may need beyond its config (data and callables never go into configs).

    Attributes:
        example_inputs: One input batch ``[B, C, H, W]`` on the model's device (graph tracing,
            MACs counting, export).
        calibration: Real batches: PT2E calibration (inputs) and Taylor importance (inputs and
            labels).
        train_fn: ``train_fn(model, step, steps)`` trains ``model`` in place: fine-tuning
            between iterative pruning steps, or the training of quantization-aware training.
        data: The dataset, for techniques that train (distillation).
        train_config: Their training settings.
        monitor: The EnergyMonitor their training is measured in.
        teacher: A ready teacher module for distillation (else the config's teacher is built).
        on_epoch: Called with each ``EpochRecord`` of a technique's training.
    """

    example_inputs: torch.Tensor | None = None
    calibration: Batches | None = None
    train_fn: Callable[[nn.Module, int, int], Any] | None = None
    data: DatasetSplits | None = None
    train_config: TrainConfig | None = None
    monitor: EnergyMonitor | None = None
    teacher: nn.Module | None = None
    on_epoch: Callable[[Any], None] | None = None

    def need_example(self, technique: str) -> torch.Tensor:
        """``example_inputs``, or a :class:`ConfigError` naming the technique that needs it."""
        if not isinstance(self.example_inputs, torch.Tensor) or self.example_inputs.dim() < 2:
            raise ConfigError(f"{technique} needs example_inputs: one input batch [B, C, H, W]")
        return self.example_inputs


class Report(Protocol):
    """A technique's report: a frozen dataclass with ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PreparedModel:
    """An optimized model and the settings the inference protocol must run it with.

    ``measure_inference(p.module, x, **p.inference_kwargs())`` and
    ``evaluate(p.module, split, ..., **p.inference_kwargs())`` measure it as intended; calling
    ``p(x)`` applies the same settings directly.

    Attributes:
        module: The model (an ``nn.Module``; for int8 graphs a module wrapping a compiled graph).
        precision: Autocast precision to run under: ``fp32``, ``bf16`` or ``fp16``.
        channels_last: Inputs (and weights) in channels-last memory format.
        applied: The steps applied so far, ``+``-joined (``prune:structured:0.3+quantize:int8``);
            ``baseline`` for none.
        description: One line for tables.
        notes: Honest labels: what the technique does not save, one-time costs, limits.
        report: The technique's report (sizes, ratios, counts), or ``None``.
    """

    module: nn.Module
    precision: str = "fp32"
    channels_last: bool = False
    applied: str = "baseline"
    description: str = ""
    notes: tuple[str, ...] = ()
    report: Report | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")

    def inference_kwargs(self) -> dict[str, Any]:
        """``{"precision", "channels_last"}`` for ``measure_inference`` and ``evaluate``."""
        return {"precision": self.precision, "channels_last": self.channels_last}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the module on ``x`` with this variant's memory format and autocast."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(x.device, self.precision):
            return self.module(x)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no module) for records and reports."""
        return {
            "applied": self.applied,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "description": self.description,
            "notes": list(self.notes),
            "report": self.report.to_dict() if self.report is not None else None,
        }


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


C = TypeVar("C", bound=TechniqueConfig)
Handler = Callable[[nn.Module, Any, TechniqueContext], PreparedModel]


class TechniqueRegistry:
    """Recipe step -> (config type, handler)."""

    def __init__(self) -> None:
        self._types: dict[str, type[TechniqueConfig]] = {}
        self._handlers: dict[str, Handler] = {}

    def register(self, config_type: type[C]) -> Callable[[Handler], Handler]:
        """Decorator registering the handler of ``config_type`` under ``config_type.step``.

        Raises:
            ValueError: The step is empty or already registered.
        """

        def decorator(handler: Handler) -> Handler:
            step = config_type.step
            if not step or step in self._types:
                raise ValueError(f"technique step {step!r} is empty or already registered")
            self._types[step] = config_type
            self._handlers[step] = handler
            return handler

        return decorator

    def handler(self, config: TechniqueConfig) -> Handler:
        """The handler for ``config``.

        Raises:
            ConfigError: No technique is registered for its step.
        """
        handler = self._handlers.get(config.step)
        if handler is None or self._types[config.step] is not type(config):
            known = ", ".join(self.steps())
            raise ConfigError(f"no technique for {type(config).__name__}; known: {known}")
        return handler

    def config_type(self, step: str) -> type[TechniqueConfig] | None:
        """The config class registered for ``step``, or ``None``."""
        return self._types.get(step)

    def steps(self) -> list[str]:
        """The registered steps, sorted."""
        return sorted(self._types)

    def __iter__(self) -> Iterator[str]:
        return iter(self.steps())


#: The registry that :func:`apply_technique` and the recipe grammar use.
techniques = TechniqueRegistry()
#: Decorator: ``@register_technique(MyConfig)`` on ``handler(model, config, context)``.
register_technique = techniques.register


def list_techniques() -> list[str]:
    """The registered recipe steps (``prune:structured``, ``quantize:int8``...)."""
    return techniques.steps()


def apply_technique(
    model: nn.Module | PreparedModel,
    config: TechniqueConfig,
    context: TechniqueContext | None = None,
) -> PreparedModel:
    """Apply one technique through its registered handler.

    A :class:`PreparedModel` input chains: its module is optimized further and its precision,
    channels-last flag and notes carry over (int8 techniques refuse a bf16/fp16 input: an int8
    graph runs without autocast).

    Args:
        model: A model, or the result of a previous technique.
        config: The technique's config.
        context: Example inputs, calibration batches and training callables it may need.

    Returns:
        The optimized model with its inference settings and report. Pruning works in place
        (as Torch-Pruning and ``torch.nn.utils.prune`` do); pass a ``copy.deepcopy`` to keep
        the original.

    Raises:
        ConfigError: Unknown config type or missing context.
        QuantizationError, PruningError: The technique cannot be applied to this model here.
    """
    handler = techniques.handler(config)
    context = context or TechniqueContext()
    if not isinstance(model, PreparedModel):
        return handler(model, config, context)
    if config.int8 and model.precision != "fp32":
        raise ConfigError(
            f"{config.step} needs an fp32 model, got a {model.precision} autocast variant: "
            "apply int8 before (instead of) autocast"
        )
    result = handler(model.module, config, context)
    chained = result.applied if model.applied == "baseline" else f"{model.applied}+{result.applied}"
    return dataclasses.replace(
        result,
        precision=model.precision if result.precision == "fp32" else result.precision,
        channels_last=model.channels_last or result.channels_last,
        applied=chained,
        notes=model.notes + result.notes,
    )


def iter_batches(batches: Batches | None, limit: int | None = None) -> Iterator[Batch]:
    """Yield at most ``limit`` items of ``batches`` (calling it first if it is a callable)."""
    if batches is None:
        return
    source = batches() if callable(batches) else batches
    for index, batch in enumerate(source):
        if limit is not None and index >= limit:
            return
        yield batch


def split_batch(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(inputs, labels)`` of a batch item (labels ``None`` for a bare tensor)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, tuple | list) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ConfigError("a batch must be an input tensor or an (inputs, labels) pair")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def top1_agreement(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
) -> float:
    """Share of inputs on which two models predict the same class (0..1).

    Args:
        reference: E.g. the fp32 model (put it in eval mode first).
        candidate: E.g. a :class:`PreparedModel` or an int8 module.
        batches: Real inputs (tensors or ``(inputs, labels)`` pairs).
    """
    same = total = 0
    with torch.no_grad():
        for batch in iter_batches(batches):
            x, _ = split_batch(batch)
            same += int((reference(x).argmax(1) == candidate(x).argmax(1)).sum())
            total += int(x.shape[0])
    if total == 0:
        raise ConfigError("top1_agreement: the batches held no inputs")
    return same / total


@config_dataclass
class BaselineConfig(TechniqueConfig):
    """No technique: the trained model as it is (the reference every variant is compared to)."""

    step: ClassVar[str] = "baseline"
    stage: ClassVar[int] = STAGE_TRAIN


@register_technique(BaselineConfig)
def _apply_baseline(model: nn.Module, config: BaselineConfig, ctx: TechniqueContext) -> Any:
    del config, ctx
    return PreparedModel(model, description="the trained model")
