"""Checkpoints: the weights plus everything needed to rebuild and judge the model.

A checkpoint is a ``torch.save``-d dict of plain values and tensors, so it loads with
``torch.load(weights_only=True)``: nothing in it can run code.

Keys: ``format``, ``model`` (registry name and ``create_model`` arguments), ``state_dict``,
``train_config``, ``dataset`` (name and info), ``result`` (status, history, accuracy, energy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.errors import ModelError
from wattwise.train.config import current_keys

FORMAT = "wattwise-checkpoint/1"
#: The keys a checkpoint holds besides ``format`` (all mappings).
KEYS = ("model", "state_dict", "train_config", "dataset", "result")


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    model_spec: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    train_config: dict[str, Any]
    dataset: dict[str, Any]
    result: dict[str, Any]

    def build_model(self) -> nn.Module:
        """Rebuild the architecture from the registry and load the weights.

        Raises:
            ModelError: The model spec cannot be built or the weights do not fit it.
        """
        from wattwise.models import create_model_from_spec, load_state_dict_exact

        source = f"checkpoint {self.path}"
        model = create_model_from_spec(self.model_spec, source=source)
        name = self.model_spec["name"]
        load_state_dict_exact(model, self.state_dict, source=source, model_name=name)
        return model


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_spec: dict[str, Any],
    train_config: dict[str, Any],
    dataset: dict[str, Any],
    result: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model": model_spec,
        "state_dict": state,
        "train_config": train_config,
        "dataset": dataset,
        "result": result,
    }
    tmp = target.with_suffix(target.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, target)
    return target


def load_checkpoint(path: str | os.PathLike[str], *, trusted: bool = False) -> Checkpoint:
    """Read a checkpoint (``weights_only=True`` unless ``trusted``). The keys the previous
    version wrote (``gpu_memory_gb`` in ``train_config`` and ``result["memory_cap"]``) are read
    under their current names.

    Raises:
        ModelError: One line: no file, a file that is not a complete wattwise checkpoint.
    """
    from wattwise.models import check_model_spec, load_torch_file

    source = Path(path)
    if source.is_dir():
        source = source / "checkpoint.pt"
    if not source.exists():
        raise ModelError(f"no checkpoint at {source}")
    payload = load_torch_file(source, "checkpoint", trusted=trusted)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{source} is not a wattwise checkpoint ({FORMAT})")
    missing = [key for key in KEYS if key not in payload]
    if missing:
        raise ModelError(f"checkpoint {source} lacks {', '.join(missing)} (damaged or hand-made?)")
    check_model_spec(payload["model"], f"checkpoint {source}")
    for key in KEYS[1:]:
        if not isinstance(payload[key], Mapping):
            kind = type(payload[key]).__name__
            raise ModelError(f"checkpoint {source}: {key} is a {kind}, not a mapping")
    result = dict(payload["result"])
    if isinstance(result.get("memory_cap"), dict):
        result["memory_cap"] = current_keys(result["memory_cap"])
    return Checkpoint(
        path=source,
        model_spec=payload["model"],
        state_dict=payload["state_dict"],
        train_config=current_keys(payload["train_config"]),
        dataset=payload["dataset"],
        result=result,
    )
