"""Registry, list_models and create_model argument handling."""

from __future__ import annotations

import pytest
from torch import nn

from wattwise.errors import ModelError, WattwiseError
from wattwise.models import ModelRegistry, create_model, list_models, registry

EXPECTED = [
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "resnet50",
    "small_cnn",
]


def test_list_models_all_sorted() -> None:
    assert list_models() == EXPECTED
    assert list_models("*") == EXPECTED


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("resnet*", ["resnet18", "resnet50"]),
        ("mobilenet_v3_*", ["mobilenet_v3_large", "mobilenet_v3_small"]),
        ("*net*b0", ["efficientnet_b0"]),
        ("small_cnn", ["small_cnn"]),
        ("vgg*", []),
        ("RESNET*", []),
    ],
)
def test_list_models_pattern(pattern: str, expected: list[str]) -> None:
    assert list_models(pattern) == expected


def test_unknown_model_lists_known_models() -> None:
    with pytest.raises(ModelError) as info:
        create_model("resnet19", num_classes=10)
    message = str(info.value)
    assert "resnet19" in message
    for name in EXPECTED:
        assert name in message
    assert isinstance(info.value, WattwiseError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": 2.5},
        {"num_classes": True},
        {"num_classes": 10, "in_channels": 0},
        {"num_classes": 10, "input_size": -1},
        {"num_classes": 10, "width": 0},
        {"num_classes": 10, "width": "wide"},
        {"num_classes": 10, "bn_momentum": 2.0},
    ],
)
def test_invalid_arguments_raise_model_error(kwargs: dict) -> None:
    with pytest.raises(ModelError):
        create_model("small_cnn", **kwargs)


def test_unsupported_option_is_model_error() -> None:
    with pytest.raises(ModelError, match="unsupported option"):
        create_model("resnet18", num_classes=10, no_such_option=1)


def test_builder_options_are_passed_through() -> None:
    model = create_model("efficientnet_b0", num_classes=10, dropout=0.5)
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.5]


def test_registry_object_registers_and_rejects_duplicates() -> None:
    local = ModelRegistry()

    @local.register(stem="0", head="2")
    def tiny(**_: object) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))

    assert "tiny" in local
    assert local.names() == ["tiny"]
    assert len(local) == 1
    assert local.get("tiny").stem == "0"
    with pytest.raises(ValueError, match="already registered"):
        local.register("tiny", stem="0", head="2")(tiny)
    local.unregister("tiny")
    assert "tiny" not in local
    # The global registry is untouched.
    assert "tiny" not in registry


def test_entries_name_existing_modules() -> None:
    for name in list_models():
        entry = registry.get(name)
        model = create_model(name, num_classes=10, input_size=224)
        assert isinstance(model.get_submodule(entry.stem), nn.Conv2d), name
        assert isinstance(model.get_submodule(entry.head), nn.Linear), name
        assert model.get_submodule(entry.head).out_features == 10
