"""Every registered architecture (torchvision's and small_cnn): forward shapes, small-input
stems, input channels, width and BatchNorm momentum.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wattwise.errors import ModelError
from wattwise.models import count_parameters, create_model, list_models, registry

ALL_MODELS = list_models()
FEATURE_MODELS = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"]
RESNETS = ["resnet18", "resnet50"]
#: The module whose output is each model's last feature map (before global pooling).
FEATURES = {name: "layer4" if name in RESNETS else "features" for name in ALL_MODELS}


def _stem(model: nn.Module, name: str) -> nn.Conv2d:
    return model.get_submodule(registry.get(name).stem)


def _stride2_convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]


def _expected_feature_map(name: str, size: int) -> tuple[int, int]:
    """Last feature map with the auto small-input setting (the table in docs/models.md)."""
    if size == 224:
        return (14, 14) if name == "small_cnn" else (7, 7)
    if size == 64 and name in (*RESNETS, "small_cnn"):
        return (8, 8)
    return (4, 4)  # 28, 32 px everywhere; 64 px for the MobileNets and EfficientNet


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("sizes", [(28, 32), (64,), (224,)], ids=["28+32", "64", "224"])
@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_shape_and_final_feature_map(
    name: str, sizes: tuple[int, ...], in_channels: int, feature_map_size
) -> None:
    # 28 and 32 px build the same architecture, so one model serves both.
    model = create_model(name, num_classes=10, in_channels=in_channels, input_size=sizes[0]).eval()
    assert _stem(model, name).in_channels == in_channels
    features = FEATURES[name]
    for size in sizes:
        x = torch.randn(1, in_channels, size, size)
        assert feature_map_size(model, features, x) == _expected_feature_map(name, size)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (1, 10)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n != "resnet50"])
def test_train_mode_batch_of_two_backpropagates(name: str) -> None:
    model = create_model(name, num_classes=10, in_channels=1, input_size=16)
    out = model(torch.randn(2, 1, 16, 16))
    out.sum().backward()
    assert _stem(model, name).weight.grad is not None


@pytest.mark.parametrize("name", RESNETS)
def test_resnet_small_stem(name: str) -> None:
    small = create_model(name, num_classes=10, input_size=32)
    assert small.conv1.kernel_size == (3, 3)
    assert small.conv1.stride == (1, 1)
    assert small.conv1.padding == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    standard = create_model(name, num_classes=10, input_size=224)
    assert standard.conv1.kernel_size == (7, 7)
    assert standard.conv1.stride == (2, 2)
    assert isinstance(standard.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_feature_model_small_stem(name: str) -> None:
    standard = create_model(name, num_classes=10, input_size=224)
    at_64 = create_model(name, num_classes=10, input_size=64)
    at_32 = create_model(name, num_classes=10, input_size=32)
    assert _stem(standard, name).stride == (2, 2)
    assert _stem(at_64, name).stride == (1, 1)
    assert _stem(at_32, name).stride == (1, 1)
    # 5 stride-2 convs (total stride 32) -> 4 at 64 px (16) -> 3 at <= 32 px (8).
    assert len(_stride2_convs(standard)) == 5
    assert len(_stride2_convs(at_64)) == 4
    assert len(_stride2_convs(at_32)) == 3


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "small_cnn"])
def test_small_input_override(name: str) -> None:
    forced_off = create_model(name, num_classes=10, input_size=32, small_input=False)
    forced_on = create_model(name, num_classes=10, input_size=224, small_input=True)
    assert _stem(forced_off, name).stride == (2, 2)
    assert _stem(forced_on, name).stride == (1, 1)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_width_scaling_reduces_parameters(name: str) -> None:
    full = count_parameters(create_model(name, num_classes=10))
    half = count_parameters(create_model(name, num_classes=10, width=0.5))
    assert half < 0.6 * full
    wide = create_model(name, num_classes=10, width=1.25, in_channels=1).eval()
    assert count_parameters(wide) > full
    with torch.no_grad():
        assert wide(torch.randn(1, 1, 16, 16)).shape == (1, 10)


def test_resnet_width_scales_every_stage() -> None:
    model = create_model("resnet18", num_classes=10, width=0.5, zero_init_residual=True)
    assert model.conv1.out_channels == 32
    assert [model.get_submodule(f"layer{i}")[-1].conv2.out_channels for i in range(1, 5)] == [
        32,
        64,
        128,
        256,
    ]
    assert model.fc.in_features == 256
    assert not any(block.bn2.weight.any() for block in model.layer1)
    assert not any(p.is_meta for p in model.parameters())


def test_resnet_width_with_dilation_is_model_error() -> None:
    with pytest.raises(ModelError, match="dilation"):
        create_model(
            "resnet50", num_classes=10, width=0.5, replace_stride_with_dilation=[False, True, True]
        )


@pytest.mark.parametrize("name", ALL_MODELS)
def test_in_channels_replaces_only_the_first_convs_input(name: str) -> None:
    # 1 and 3 channels are covered by test_forward_shape; any count works.
    model = create_model(name, num_classes=10, in_channels=4, input_size=224)
    stem = _stem(model, name)
    assert stem.in_channels == 4
    assert stem.weight.shape[1] == 4
    reference = _stem(create_model(name, num_classes=10, input_size=224), name)
    assert (stem.out_channels, stem.kernel_size, stem.stride, stem.padding) == (
        reference.out_channels,
        reference.kernel_size,
        reference.stride,
        reference.padding,
    )
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 4, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_mobilenet_v3_bn_momentum_defaults_to_0_1(name: str) -> None:
    model = create_model(name, num_classes=10)
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
    kept = create_model(name, num_classes=10, bn_momentum=None)
    assert {m.momentum for m in kept.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
    custom = create_model(name, num_classes=10, bn_momentum=0.05)
    assert {m.momentum for m in custom.modules() if isinstance(m, nn.BatchNorm2d)} == {0.05}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_bn_momentum_is_0_1(name: str) -> None:
    model = create_model(name, num_classes=10)
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
