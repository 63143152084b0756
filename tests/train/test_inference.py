"""The inference protocol: warm-up, then a measured window of repeated batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.train import InferenceResult, measure_inference


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def _batch(size: int = 16) -> torch.Tensor:
    return torch.randn(size, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_max_batches_bounds_the_window(model: nn.Module, monitor: EnergyMonitor) -> None:
    result = measure_inference(
        model,
        _batch(16),
        monitor=monitor,
        device="cpu",
        warmup_s=0.0,
        min_duration_s=60.0,
        max_batches=7,
    )
    assert isinstance(result, InferenceResult)
    assert result.batches == 7 and result.batch_size == 16
    assert result.images == result.batches * result.batch_size == 112
    assert result.device == "cpu" and result.precision == "fp32" and result.threads >= 1
    assert 0 < result.latency_p50_ms <= result.latency_p95_ms
    assert result.duration_s > 0
    assert result.images_per_s == pytest.approx(result.images / result.duration_s)
    assert result.energy_per_image_j > 0
    assert result.energy_per_image_j == pytest.approx(
        result.measurement.total_energy_j / result.images
    )
    assert result.energy_provenance in ("measured", "estimated", "mixed")
    assert result.idle_power_w is None
    assert [m.name for m in monitor.history] == ["inference"]
    as_dict = result.to_dict()
    assert as_dict["images"] == 112 and as_dict["measurement"]["name"] == "inference"


def test_min_batches_and_duration(model: nn.Module) -> None:
    result = measure_inference(
        model, _batch(4), device="cpu", warmup_s=0.0, min_duration_s=0.0, min_batches=5
    )
    assert result.batches == 5
    timed = measure_inference(
        model, _batch(4), device="cpu", warmup_s=0.0, min_duration_s=0.3, min_batches=1
    )
    assert timed.duration_s >= 0.3 and timed.batches >= 1


def test_subtract_idle_power(model: nn.Module, monitor: EnergyMonitor) -> None:
    result = measure_inference(
        model,
        _batch(8),
        monitor=monitor,
        device="cpu",
        warmup_s=0.0,
        max_batches=5,
        subtract_idle_s=0.3,
        name="bench",
    )
    assert result.idle_power_w is not None and result.idle_power_w >= 0
    assert [m.name for m in monitor.history] == ["bench/idle", "bench"]
    idle = monitor.last("bench/idle")
    assert idle.duration_s >= 0.3
    gross = result.measurement.total_energy_j
    expected = max(0.0, gross - result.idle_power_w * result.measurement.duration_s)
    assert result.energy_per_image_j == pytest.approx(expected / result.images)
    assert result.energy_per_image_j <= gross / result.images


def test_bf16_and_channels_last(model: nn.Module) -> None:
    result = measure_inference(
        model,
        _batch(8),
        device="cpu",
        precision="bf16",
        channels_last=True,
        warmup_s=0.0,
        max_batches=3,
    )
    assert result.precision == "bf16" and result.channels_last is True
    assert result.images == 24


def test_a_plain_callable_is_measured() -> None:
    calls = {"n": 0}

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return x.sum()

    result = measure_inference(forward, _batch(2), device="cpu", warmup_s=0.0, max_batches=4)
    assert result.batches == 4 and calls["n"] == 3 + 4  # three warm-up batches at least


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (0, 1, 8, 8), (2, 1, 1, 8, 8)])
def test_bad_input_shape_is_a_config_error(model: nn.Module, shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="B, C, H, W"):
        measure_inference(model, torch.zeros(shape), device="cpu", max_batches=1)


@pytest.mark.parametrize(
    "kwargs", [{"min_batches": 0}, {"min_duration_s": -1.0}, {"warmup_s": -0.5}]
)
def test_bad_protocol_settings_are_config_errors(model: nn.Module, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        measure_inference(model, _batch(2), device="cpu", max_batches=1, **kwargs)


def test_nan_duration_is_a_config_error(model: nn.Module) -> None:
    with pytest.raises(ConfigError):
        measure_inference(
            model, _batch(2), device="cpu", warmup_s=0.0, min_duration_s=math.nan, max_batches=2
        )
