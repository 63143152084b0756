"""Checkpoints: the weights plus everything needed to rebuild and judge the model.

A checkpoint is a ``torch.save``-d dict of plain values and tensors, so it loads with
``torch.load(weights_only=True)``: nothing in it can run code.

Keys: ``format``, ``model`` (registry name and ``create_model`` arguments), ``state_dict``,
``train_config``, ``dataset`` (name and info), ``result`` (status, history, accuracy, energy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.errors import WattwiseError
from wattwise.train.config import current_keys

FORMAT = "wattwise-checkpoint/1"


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
        """Rebuild the architecture from the registry and load the weights."""
        from wattwise.models import create_model

        spec = dict(self.model_spec)
        name = spec.pop("name")
        model = create_model(name, **spec)
        model.load_state_dict(self.state_dict)
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
    under their current names."""
    source = Path(path)
    if source.is_dir():
        source = source / "checkpoint.pt"
    if not source.is_file():
        raise WattwiseError(f"no checkpoint at {source}")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=not trusted)
    except Exception as err:
        raise WattwiseError(f"cannot read checkpoint {source}: {err}".splitlines()[0]) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WattwiseError(f"{source} is not a wattwise checkpoint ({FORMAT})")
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
