"""Files of models whose layer shapes differ from their registry architecture (pruned models).

Torch-Pruning's ``tp.state_dict`` pickles module objects, which ``torch.load(...,
weights_only=True)`` refuses: :func:`save_pruned` writes each layer's shape attributes plus the
state_dict as plain data, and :func:`load_pruned` rebuilds the model from its registry spec.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.errors import ConfigError, PruningError
from wattwise.models import create_model

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
