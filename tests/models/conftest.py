"""Shared fixtures for the models tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

FeatureMapFn = Callable[[torch.nn.Module, str, torch.Tensor], tuple[int, int]]


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    """Deterministic random weights and inputs; one intra-op thread.

    These tests run batches of 1-2 small images, where a second thread gains nothing, and on a
    shared 2-core machine two OpenMP threads stall each other badly (100x slower steps measured).
    """
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
