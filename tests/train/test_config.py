"""TrainConfig validation: every bad value is a ConfigError naming its key.

(The inference settings that RunSpec held are MeasurementSettings', tested in test_config.py.)
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from wattwise.errors import ConfigError, WattwiseError
from wattwise.train import GPU_MEMORY_CAPACITIES_GIB, TrainConfig
from wattwise.validation import MAX_INT


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", 0),
        ("epochs", -3),
        ("epochs", 2.5),
        ("epochs", True),
        ("batch_size", 0),
        ("batch_size", 10**20),
        ("epochs", MAX_INT + 1),
        ("seed", 2**63),
        ("eval_batch_size", 0),
        ("lr", -1),
        ("lr", 0),
        ("lr", math.nan),
        ("lr", math.inf),
        ("lr", "0.1"),
        ("optimizer", "rmsprop"),
        ("schedule", "step"),
        ("precision", "fp8"),
        ("precision", "FP32"),
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("weight_decay", -1e-4),
        ("label_smoothing", 1),
        ("label_smoothing", -0.1),
        ("early_stopping_patience", 0),
        ("gpu_memory_gib", -4),
        ("gpu_memory_gib", 0),
        ("gpu_memory_gib", math.nan),
        ("num_threads", 0),
        ("device", "gpu"),
        ("device", "CPU"),
        ("device", "mps"),
    ],
)
def test_bad_value_is_a_config_error_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        TrainConfig(**{key: value})
    assert isinstance(info.value, WattwiseError)


def test_defaults_are_valid_and_round_trip_through_json() -> None:
    config = TrainConfig(epochs=3, optimizer="adam", gpu_memory_gib=8, early_stopping_patience=2)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig() == TrainConfig.from_dict({})
    assert GPU_MEMORY_CAPACITIES_GIB == (4, 8, 16, 32)


def test_from_dict_reads_the_previous_versions_gpu_memory_gb_as_gib() -> None:
    old = {**TrainConfig().to_dict(), "gpu_memory_gb": 8}  # what a previous checkpoint holds
    del old["gpu_memory_gib"]
    assert TrainConfig.from_dict(old) == TrainConfig(gpu_memory_gib=8)
    both = {"gpu_memory_gb": 4, "gpu_memory_gib": 16}  # the current name wins
    assert TrainConfig.from_dict(both).gpu_memory_gib == 16


def test_from_dict_unknown_key_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_from_dict_bad_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig.from_dict({"epochs": "3"})


def test_config_is_frozen() -> None:
    config = TrainConfig()
    with pytest.raises(AttributeError):
        config.epochs = 9  # type: ignore[misc]


def test_replace_validates() -> None:
    config = dataclasses.replace(TrainConfig(), epochs=2, lr=1)
    assert (config.epochs, config.lr) == (2, 1.0) and isinstance(config.lr, float)
    with pytest.raises(ConfigError, match=r"^TrainConfig: lr: must be > 0"):
        dataclasses.replace(config, lr=0)


def test_message_is_one_line_naming_the_key_and_the_bound() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(momentum=1.5)
    assert str(info.value) == "TrainConfig: momentum: must be < 1.0, got 1.5"


@pytest.mark.parametrize("device", ["cuda7", "cuda:-1", "cuda:x", "cudax"])
def test_malformed_cuda_device_is_a_config_error(device: str) -> None:
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device=device)


def test_non_string_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "value"), [("seed", 1.5), ("seed", "0"), ("channels_last", "no")])
def test_bad_seed_or_flag_is_a_config_error(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{key: value})
