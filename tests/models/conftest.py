"""Shared fixtures for the models tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

FeatureMapFn = Callable[[torch.nn.Module, str, torch.Tensor], tuple[int, int]]


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Deterministic random weights and inputs (one thread: ``_one_thread``, tests/conftest.py)."""
    torch.manual_seed(0)


def _feature_map_size(model: torch.nn.Module, features: str, x: torch.Tensor) -> tuple[int, int]:
    seen: list[torch.Size] = []
    handle = model.get_submodule(features).register_forward_hook(
        lambda _module, _inputs, out: seen.append(out.shape)
    )
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return int(seen[-1][2]), int(seen[-1][3])


@pytest.fixture
def feature_map_size() -> FeatureMapFn:
    """``f(model, features_path, x) -> (H, W)`` of the last feature map before pooling."""
    return _feature_map_size
