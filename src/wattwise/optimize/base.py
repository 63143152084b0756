"""What the techniques share: configs, the handler registry, the result type, pruned-model files.

An optimization is a small frozen config plus a handler (STYLE.md #5, after torchao's
``quantize_(model, Int8...Config())``)::

    prepared = apply_technique(model, ChannelPruneConfig(ratio=0.3), context)
    measure_inference(prepared.module, x, **prepared.inference_kwargs())

Handlers are found through :data:`techniques`, keyed on the config's type; YAML names map to the
config classes (:func:`technique_config`), so configurations flow as data. A technique module
registers its configs with :func:`register_technique`; a new module (``distill.py``) only adds
its own registrations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from torch import nn

from wattwise.errors import ConfigError, PruningError
from wattwise.models import create_model

#: Autocast precisions that the inference protocol (``measure_inference``) applies.
PRECISIONS = ("fp32", "bf16", "fp16")

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor]
#: Batches of real inputs: an iterable of tensors or ``(inputs, labels)`` pairs (a
#: ``TensorLoader`` works), or a callable returning such an iterable.
Batches = Iterable[Batch] | Callable[[], Iterable[Batch]]


class TechniqueConfig:
    """Base of the frozen technique configs; subclasses are ``@dataclass(frozen=True)``.

    Attributes:
        name: The technique's name in YAML and reports (a class attribute).
        int8: True for techniques whose result runs without autocast (int8 graphs).
    """

    name: ClassVar[str] = ""
    int8: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        """``{"technique": name, **fields}``: plain data for YAML, JSON and reports."""
        return {"technique": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]


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
    """

    example_inputs: torch.Tensor | None = None
    calibration: Batches | None = None
    train_fn: Callable[[nn.Module, int, int], Any] | None = None

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
        technique: What was applied, ``+``-joined when chained (``prune_channels+int8_static``).
        description: One line for tables.
        notes: Honest labels: what the technique does not save, one-time costs, limits.
        report: The technique's report (sizes, ratios, counts), or ``None``.
    """

    module: nn.Module
    precision: str = "fp32"
    channels_last: bool = False
    technique: str = "none"
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
            "technique": self.technique,
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
    """Config type -> handler, and technique name -> config type."""

    def __init__(self) -> None:
        self._handlers: dict[type[TechniqueConfig], Handler] = {}
        self._by_name: dict[str, type[TechniqueConfig]] = {}

    def register(self, config_type: type[C]) -> Callable[[Handler], Handler]:
        """Decorator registering the handler of ``config_type`` (under ``config_type.name``).

        Raises:
            ValueError: The type or its name is already registered, or it has no name.
        """

        def decorator(handler: Handler) -> Handler:
            name = config_type.name
            if not name or name in self._by_name or config_type in self._handlers:
                raise ValueError(f"technique {name!r} is unnamed or already registered")
            self._handlers[config_type] = handler
            self._by_name[name] = config_type
            return handler

        return decorator

    def handler(self, config: TechniqueConfig) -> Handler:
        """The handler for ``config``'s type.

        Raises:
            ConfigError: No technique is registered for that type.
        """
        try:
            return self._handlers[type(config)]
        except KeyError:
            known = ", ".join(self.names())
            raise ConfigError(f"no technique for {type(config).__name__}; known: {known}") from None

    def config_type(self, name: str) -> type[TechniqueConfig]:
        """The config class registered as ``name``.

        Raises:
            ConfigError: Unknown name; the message lists the known ones.
        """
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ConfigError(f"unknown technique {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Sorted technique names."""
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


#: The registry that :func:`apply_technique` and :func:`technique_config` use.
techniques = TechniqueRegistry()
#: Decorator: ``@register_technique(MyConfig)`` on ``handler(model, config, context)``.
register_technique = techniques.register


def list_techniques() -> list[str]:
    """Names of the registered techniques (``prune_channels``, ``int8_static``...)."""
    return techniques.names()


def technique_config(data: Mapping[str, Any]) -> TechniqueConfig:
    """Build a config from plain data: ``{"technique": "prune_channels", "ratio": 0.3}``.

    Raises:
        ConfigError: Unknown technique or setting, or an invalid value.
    """
    values = dict(data)
    config_type = techniques.config_type(str(values.pop("technique", "")))
    known = {f.name for f in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown {config_type.name} setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    for key, value in values.items():  # YAML gives lists where configs hold tuples
        if isinstance(value, list):
            values[key] = tuple(value)
    return config_type(**values)


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
            f"{config.name} needs an fp32 model, got a {model.precision} autocast variant: "
            "apply int8 before (instead of) autocast"
        )
    result = handler(model.module, config, context)
    return dataclasses.replace(
        result,
        precision=model.precision if result.precision == "fp32" else result.precision,
        channels_last=model.channels_last or result.channels_last,
        technique=f"{model.technique}+{result.technique}",
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


def check_fraction(label: str, value: Any, *, low_open: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``low < value < 1`` (``low`` 0, inclusive if not open)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not ((value > 0) if low_open else (value >= 0)) or not value < 1:
        raise ConfigError(f"{label} must be in {'(0' if low_open else '[0'}, 1), got {value!r}")


# --- files of models whose layer shapes differ from their registry architecture --------------

#: File format tag of :func:`save_pruned`.
PRUNED_FORMAT = "wattwise-pruned/1"

_SHAPE_ATTRS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.modules.conv._ConvNd: ("in_channels", "out_channels", "groups"),
    nn.Linear: ("in_features", "out_features"),
    nn.modules.batchnorm._BatchNorm: ("num_features",),
    nn.GroupNorm: ("num_groups", "num_channels"),
    nn.LayerNorm: ("normalized_shape",),
}


def _shape_attrs(model: nn.Module) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        for kind, attrs in _SHAPE_ATTRS.items():
            if isinstance(module, kind):
                out[path] = {a: getattr(module, a) for a in attrs}
    return out


def save_pruned(
    model: nn.Module, path: str | os.PathLike[str], model_spec: Mapping[str, Any] | None = None
) -> Path:
    """Save a pruned model as plain data: each layer's shape attributes plus the state_dict.

    Torch-Pruning's ``tp.state_dict`` pickles module objects, which ``torch.load(...,
    weights_only=True)`` refuses; this file loads with it.

    Args:
        model: The pruned model (make mask pruning permanent first).
        path: Target file (written atomically).
        model_spec: ``{"name": ..., **create_model arguments}`` of the unpruned model, stored
            so that :func:`load_pruned` needs nothing else.

    Returns:
        The written path.
    """
    if any(k.endswith("_mask") for k in model.state_dict()):
        raise PruningError("masks are attached: call remove_masks(model) before save_pruned")
    if model_spec is not None and not isinstance(model_spec.get("name"), str):
        raise ConfigError("model_spec needs the registry 'name' and create_model arguments")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": PRUNED_FORMAT,
        "model": dict(model_spec) if model_spec is not None else None,
        "shapes": _shape_attrs(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = target.with_suffix(target.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, target)
    return target


def load_pruned(
    path: str | os.PathLike[str], model_spec: Mapping[str, Any] | None = None
) -> nn.Module:
    """Rebuild a pruned model: a fresh registry model resized to the saved shapes, then loaded.

    Args:
        path: A file from :func:`save_pruned` (read with ``weights_only=True``).
        model_spec: ``{"name": ..., **create_model arguments}``; default: the file's.

    Returns:
        The pruned model with the saved weights, on CPU, in eval mode.

    Raises:
        PruningError: Unreadable file, no spec, or shapes that do not fit the architecture.
    """
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise PruningError(f"cannot read pruned model {path}: {err}".splitlines()[0]) from err
    if not isinstance(payload, dict) or payload.get("format") != PRUNED_FORMAT:
        raise PruningError(f"{path} is not a pruned model file ({PRUNED_FORMAT})")
    spec = dict(model_spec or payload.get("model") or {})
    if "name" not in spec:
        raise PruningError(f"{path} holds no model spec: pass model_spec={{'name': ...}}")
    spec.pop("weights", None)  # the file holds the weights: never download
    model = create_model(spec.pop("name"), **spec)
    state: dict[str, torch.Tensor] = payload["state_dict"]
    try:
        for module_path, attrs in payload["shapes"].items():
            module = model.get_submodule(module_path)
            for attr, value in attrs.items():
                setattr(module, attr, tuple(value) if isinstance(value, list) else value)
        for key, tensor in state.items():  # the saved tensors replace the fresh ones
            module_path, _, name = key.rpartition(".")
            module = model.get_submodule(module_path)
            if isinstance(module._parameters.get(name), nn.Parameter):
                grad = module._parameters[name].requires_grad  # type: ignore[union-attr]
                module._parameters[name] = nn.Parameter(tensor, requires_grad=grad)
            elif module._buffers.get(name) is not None:
                module._buffers[name] = tensor
        model.load_state_dict(state, strict=True)
    except (AttributeError, RuntimeError, KeyError) as err:
        raise PruningError(
            f"{path} does not fit {spec}: {err}".splitlines()[0] + " (wrong model_spec?)"
        ) from err
    return model.eval()
