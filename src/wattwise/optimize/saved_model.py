"""The final model of a recipe, saved so that it can be deployed, and :func:`load_model`.

Two formats, chosen by what the model is:

- **float** (pruned, channels_last, bf16/fp16, compiled): ``model.pt`` from
  :func:`~wattwise.optimize.pruned_files.save_pruned`, plain data (layer shapes + state_dict)
  that :func:`load_model` reads with ``torch.load(weights_only=True)``. Autocast and the memory
  format are settings of the call, not of the weights: :class:`SavedModel` records them.
- **int8 PT2E**: the ``convert_pt2e`` graph holds quantize/dequantize ops, not a state_dict of
  the registry architecture, so it is saved as a ``torch.export`` program ``model.pt2``; it loads
  without wattwise (``import torchao`` first: it registers the ``quantized_decomposed`` ops):
  ``torch.export.load(path).module()``. ``torch.compile``'s output cannot be saved, so the
  program is the graph *before* compiling; compile it again to get the measured speed.

Dynamic int8 (``quantize:int8_dynamic``) holds packed parameters that neither format can store:
:func:`save_model` refuses it with a :class:`~wattwise.errors.ModelError`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.data.types import DatasetSplits
from wattwise.errors import ModelError
from wattwise.optimize.base import PreparedModel
from wattwise.optimize.pruned_files import PRUNED_FORMAT, load_pruned, save_pruned

#: Format tag of an int8 model saved by :func:`save_model` (a ``torch.export.save`` file).
EXPORT_FORMAT = "torch.export"


@dataclass(frozen=True)
class SavedModel:
    """Where :func:`save_model` wrote a model, in which format, and how to run it.

    Attributes:
        path: The written file.
        format: ``"wattwise-pruned/1"`` (:func:`load_model`) or ``"torch.export"``.
        precision: Autocast to run it under (``fp32``, ``bf16``, ``fp16``).
        channels_last: Whether inputs should be channels-last.
        contents: One line: what the file holds and how to load it.
    """

    path: Path
    format: str
    precision: str
    channels_last: bool
    contents: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``recipe.json``."""
        return {**self.__dict__, "path": str(self.path)}


def save_model(
    prepared: PreparedModel,
    directory: str | os.PathLike[str],
    model_spec: dict[str, Any] | None,
    example: torch.Tensor,
) -> SavedModel:
    """Save a recipe's final model in ``directory`` (``model.pt`` or ``model.pt2``).

    Args:
        prepared: The final variant (``RecipeResult.final``).
        directory: Target folder (created).
        model_spec: ``{"name": ..., **create_model arguments}`` of the model before the recipe
            (stored in ``model.pt`` so that :func:`load_model` needs nothing else).
        example: An input batch ``[B, C, H, W]`` (int8: the export example; of the batch size the
            graph was exported with when it is specialized to one).

    Returns:
        What was written.

    Raises:
        ModelError: A model neither format can store (dynamic int8), or an export that failed.
    """
    from wattwise.optimize.quantize import Int8Module

    folder = Path(directory)
    module = stored_module(prepared)
    if isinstance(module, Int8Module):
        return _save_int8(module, folder / "model.pt2", example.cpu())
    packed = packed_int8_layer(module)
    if packed is not None:
        raise ModelError(
            f"{prepared.applied}: {packed} holds packed int8 parameters that "
            "neither a state_dict file nor torch.export can store; the model was not saved"
        )
    path = save_pruned(module, folder / "model.pt", model_spec)
    settings = []
    if prepared.precision != "fp32":
        settings.append(f"under torch.autocast(dtype={prepared.precision})")
    if prepared.channels_last:
        settings.append("on channels_last inputs")
    run = f", then run it {' and '.join(settings)}" if settings else ""
    return SavedModel(
        path,
        PRUNED_FORMAT,
        prepared.precision,
        prepared.channels_last,
        f"layer shapes + state_dict of {prepared.applied}: wattwise.load_model(path){run}",
    )


def stored_module(prepared: PreparedModel) -> nn.Module:
    """What a file of ``prepared`` holds: an int8 PT2E variant's ``Int8Module``, else its float
    model (a compiled variant's model before ``torch.compile``: compiled code is not saved).
    :func:`save_model` and the ONNX export both start from it."""
    from wattwise.optimize.compiled import CompiledModule

    module = prepared.module
    return module.module if isinstance(module, CompiledModule) else module


def packed_int8_layer(module: nn.Module) -> str | None:
    """The type name of ``module``'s first dynamic-int8 layer (``torch.ao.nn``: packed
    parameters that no file format here stores), or ``None``."""
    packed = [m for m in module.modules() if type(m).__module__.startswith("torch.ao.nn.")]
    return type(packed[0]).__name__ if packed else None


def example_batch(prepared: PreparedModel, data: DatasetSplits) -> torch.Tensor:
    """The ``example`` :func:`save_model` needs for ``prepared``: the first test images, as many
    as an int8 graph's export batch size (it may be specialized to it), else one."""
    from wattwise.train.inference import inference_batch

    return inference_batch(data, getattr(prepared.module, "batch_size", None) or 1)


def _save_int8(module: Any, path: Path, example: torch.Tensor) -> SavedModel:
    """``torch.export`` the ``convert_pt2e`` graph (before ``torch.compile``), batch dynamic
    when the graph is."""
    if not module.dynamic_batch and example.shape[0] != module.batch_size:
        raise ModelError(
            f"this int8 graph is specialized to batch size {module.batch_size}; the example to "
            f"export it with has {example.shape[0]}"
        )
    program = None
    if module.dynamic_batch:
        shapes = ({0: torch.export.Dim("batch", min=1)},)
        with contextlib.suppress(Exception):
            program = torch.export.export(module.graph, (example,), dynamic_shapes=shapes)
    try:
        program = program or torch.export.export(module.graph, (example,))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # torch.export wants .pt2
        torch.export.save(program, tmp)
        os.replace(tmp, path)
    except Exception as err:
        raise ModelError(
            f"torch.export of the int8 graph failed: {err}".splitlines()[0] + "; not saved"
        ) from err
    dynamic = bool(program.range_constraints)
    batch = "any batch size" if dynamic else f"batch size {example.shape[0]} only"
    return SavedModel(
        path,
        EXPORT_FORMAT,
        "fp32",
        False,
        f"int8 PT2E graph before torch.compile ({batch}): import torchao, then "
        "torch.export.load(path).module(); torch.compile it for the measured speed",
    )


def load_model(path: str | os.PathLike[str]) -> nn.Module:
    """The model in a ``model.pt`` that ``wattwise optimize`` (or ``save_pruned``) wrote.

    Reads with ``torch.load(weights_only=True)``, so no arbitrary object is ever unpickled, and
    accepts only files with the ``"wattwise-pruned/1"`` tag. Run it with the precision and
    memory format that ``recipe.json``'s ``model`` entry records.

    Args:
        path: The file.

    Returns:
        The model with the saved weights, on CPU, in eval mode.

    Raises:
        ModelError: No such file, or an int8 ``model.pt2`` (it loads with ``torch.export``).
        PruningError: A file this function did not write (one line).
    """
    target = Path(path)
    if not target.is_file():
        raise ModelError(f"no model file {target}")
    if target.suffix == ".pt2":
        raise ModelError(
            f"{target} is a torch.export program (int8): import torchao, then "
            "torch.export.load(path).module()"
        )
    return load_pruned(target)
