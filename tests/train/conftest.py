"""Shared fixtures for the training tests: digits at 8 px, small_cnn, a fast CPU config.

Every test runs on the CPU with one PyTorch thread (``_one_thread`` in tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from wattwise.data import DatasetSplits, load_dataset
from wattwise.energy.monitor import EnergyMonitor
from wattwise.models import create_model
from wattwise.train import TrainConfig


@pytest.fixture(scope="session")
def digits() -> DatasetSplits:
    """scikit-learn digits, 8x8 grey, 10 classes (1295 train / 143 val / 359 test)."""
    return load_dataset("digits")


@pytest.fixture
def make_cnn(digits: DatasetSplits) -> Callable[..., nn.Module]:
    """``make_cnn(seed=0)``: a freshly initialized small_cnn for digits."""

    def make(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        info = digits.info
        return create_model(
            "small_cnn",
            num_classes=info.num_classes,
            in_channels=info.in_channels,
            input_size=info.image_size,
        )

    return make


@pytest.fixture
def fast_config() -> Callable[..., TrainConfig]:
    """``fast_config(**overrides)``: a short CPU training that learns digits."""

    def make(**overrides: Any) -> TrainConfig:
        settings: dict[str, Any] = {
            "epochs": 2,
            "batch_size": 32,
            "lr": 0.05,
            "hflip": False,
            "device": "cpu",
            "num_threads": 1,
            "eval_batch_size": 512,
        }
        settings.update(overrides)
        return TrainConfig(**settings)

    return make


@pytest.fixture
def monitor() -> Iterator[EnergyMonitor]:
    """An auto-detected EnergyMonitor, closed after the test."""
    with EnergyMonitor() as m:
        yield m
