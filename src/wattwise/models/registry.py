"""The model registry and the ``create_model`` / ``list_models`` factories.

Builders are plain functions registered with :func:`register_model` (as timm does)::

    @register_model(stem="conv1", head="fc")
    def my_net(*, num_classes, in_channels, input_size, small_input, width, **kwargs):
        ...

A builder receives the already resolved ``small_input`` flag and returns a randomly initialized
model; :func:`create_model` validates the arguments, sets BatchNorm momentum and loads weights.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from wattwise.errors import ModelError
from wattwise.models.adapt import resolve_small_input, set_bn_momentum
from wattwise.models.weights import load_weights

#: BatchNorm momentum applied to every model by default (see ``docs/models.md``):
#: torchvision's MobileNetV3 ships 0.01, which leaves eval accuracy at chance after short runs.
DEFAULT_BN_MOMENTUM = 0.1


class ModelBuilder(Protocol):
    """Signature of a registered builder (all arguments are keyword-only)."""

    def __call__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        input_size: int,
        small_input: bool,
        width: float,
        **kwargs: Any,
    ) -> nn.Module: ...


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: Registry name (``"resnet18"``).
        builder: Function that builds a randomly initialized model.
        stem: Dotted path of the first convolution (its input channels follow ``in_channels``).
        head: Dotted path of the classifier ``nn.Linear`` (its outputs follow ``num_classes``).
        torchvision_name: Name under which torchvision publishes weights for this architecture,
            or ``None`` when there are none.
    """

    name: str
    builder: ModelBuilder
    stem: str
    head: str
    torchvision_name: str | None = None


class ModelRegistry:
    """A name -> :class:`ModelEntry` mapping with a decorator to fill it."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}

    def register(
        self,
        name: str | None = None,
        *,
        stem: str,
        head: str,
        torchvision_name: str | None = None,
    ) -> Callable[[ModelBuilder], ModelBuilder]:
        """Decorator that registers a builder under ``name`` (default: the function's name).

        Raises:
            ValueError: If the name is already registered.
        """

        def decorator(builder: ModelBuilder) -> ModelBuilder:
            key = name or builder.__name__  # type: ignore[attr-defined]
            if key in self._entries:
                raise ValueError(f"model {key!r} is already registered")
            self._entries[key] = ModelEntry(
                name=key, builder=builder, stem=stem, head=head, torchvision_name=torchvision_name
            )
            return builder

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plugins); unknown names are ignored."""
        self._entries.pop(name, None)

    def get(self, name: str) -> ModelEntry:
        """The entry for ``name``.

        Raises:
            ModelError: If ``name`` is not registered; the message lists the known models.
        """
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise ModelError(f"unknown model {name!r}; known models: {known}") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching the shell-style ``pattern`` (``"mobilenet*"``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


#: The registry that :func:`create_model` and :func:`list_models` use.
registry = ModelRegistry()
#: Decorator registering a builder in :data:`registry`.
register_model = registry.register


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models that match ``pattern`` (``fnmatch``, case-sensitive).

    Args:
        pattern: Shell-style pattern, e.g. ``"resnet*"`` or ``"mobilenet_v3_*"``.

    Returns:
        Sorted model names.
    """
    return registry.names(pattern)


WeightsSpec = str | os.PathLike[str] | Mapping[str, torch.Tensor] | None


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    input_size: int = 32,
    width: float = 1.0,
    weights: WeightsSpec = None,
    *,
    small_input: bool | None = None,
    bn_momentum: float | None = DEFAULT_BN_MOMENTUM,
    progress: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered image classifier, adapted to the input and the task.

    Args:
        name: Registered model name (see :func:`list_models`).
        num_classes: Outputs of the classifier head.
        in_channels: Input image channels (1 for grayscale); replaces the first conv's input
            channels.
        input_size: Input height/width in pixels. Only used to pick the small-input stem; the
            model itself accepts any size (global average pooling).
        width: Channel multiplier (1.0 = the published architecture).
        weights: ``None`` for random initialization; ``"DEFAULT"`` or a torchvision weights name
            (``"IMAGENET1K_V1"``) to download torchvision's weights; a path to a ``state_dict``
            saved with ``torch.save``; or a state_dict mapping. Tensors that no longer fit
            because the head or the stem changed are skipped (see ``model.weights_report``).
        small_input: Force (``True``) or forbid (``False``) the small-input stem; ``None``
            applies it when ``input_size <= 64``.
        bn_momentum: Momentum set on every BatchNorm layer (default 0.1); ``None`` keeps the
            architecture's own (MobileNetV3: 0.01).
        progress: Show a download progress bar for torchvision weights.
        **kwargs: Passed to the builder (e.g. ``dropout`` for MobileNet/EfficientNet).

    Returns:
        The model, in training mode, on the default device. When weights were loaded it has a
        ``weights_report`` attribute (:class:`wattwise.models.weights.WeightsReport`).

    Raises:
        ModelError: Unknown name, invalid argument, unsupported option or weights that cannot be
            fetched or loaded.
    """
    entry = registry.get(name)
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("input_size", input_size)
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ModelError(f"width must be a positive number, got {width!r}")
    if bn_momentum is not None and not 0.0 <= bn_momentum <= 1.0:
        raise ModelError(f"bn_momentum must be in [0, 1] or None, got {bn_momentum!r}")

    try:
        model = entry.builder(
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            small_input=resolve_small_input(small_input, input_size),
            width=float(width),
            **kwargs,
        )
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ModelError(f"{name}: unsupported option ({err})") from err
    except (MemoryError, RuntimeError) as err:
        from wattwise.models.inspect import is_allocation_failure

        if not is_allocation_failure(err):
            raise
        raise ModelError(
            f"{name} at width {width:g} does not fit in memory: its weights alone could not be "
            "allocated; use a smaller width"
        ) from err
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)

    if weights is not None:
        model.weights_report = load_weights(  # type: ignore[assignment]
            model,
            weights,
            model_name=entry.name,
            stem=entry.stem,
            head=entry.head,
            torchvision_name=entry.torchvision_name,
            width=float(width),
            progress=progress,
        )
    return model


def check_model_spec(spec: object, source: str = "model spec") -> dict[str, Any]:
    """A model spec as checkpoints and records store it, ``{"name": <model name>,
    **create_model arguments}``, as a new dict (its arguments are checked when it is built).

    Raises:
        ModelError: One line naming ``source``: not such a mapping, no ``name``, a key that is
            not a text.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        shown = repr(spec)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ModelError(
            f"{source}: the model spec must be a mapping with the model's 'name' and its "
            f"create_model arguments, got {shown}"
        )
    if not all(isinstance(key, str) for key in spec):
        raise ModelError(f"{source}: the model spec has keys that are not texts: {list(spec)}")
    return dict(spec)


def create_model_from_spec(spec: object, *, source: str = "model spec") -> nn.Module:
    """:func:`create_model` from a model spec (see :func:`check_model_spec`).

    Raises:
        ModelError: One line naming ``source``: a spec that is not one, an unknown model or an
            argument that ``create_model`` refuses.
    """
    args = check_model_spec(spec, source)
    name = args.pop("name")
    if "num_classes" not in args:
        raise ModelError(f"{source}: the model spec of {name!r} lacks num_classes")
    try:
        return create_model(name, **args)
    except ModelError as err:
        raise ModelError(f"{source}: {err}") from err
    except TypeError as err:  # an argument create_model itself does not take
        raise ModelError(f"{source}: the model spec does not fit create_model ({err})") from err


def _check_positive_int(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{label} must be a positive integer, got {value!r}")
