"""torchvision classifiers, adapted to small inputs, any channel count and a width multiplier.

Adaptations (all at build time; see ``docs/models.md``):

* ``small_input`` — ResNets: the 7x7 stride-2 stem conv becomes 3x3 stride 1 padding 1 and the
  max-pool becomes ``nn.Identity`` (total stride 32 -> 8). MobileNetV2/V3 and EfficientNet: the
  stem conv's stride becomes 1 (total stride 32 -> 16) and, for inputs of at most 32 px, also the
  first downsampling block's depthwise conv (-> 8). 28/32 px inputs end at 4x4 feature maps.
* ``in_channels`` — the stem conv is rebuilt with that many input channels.
* ``width`` — MobileNetV2/V3: torchvision's ``width_mult``. ResNet: the four stages and the stem
  are rebuilt with ``make_divisible(channels * width, 8)`` channels. EfficientNet-B0: built from
  torchvision's ``MBConvConfig`` with ``width_mult`` (the head is 4x the last stage, as in B0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import get_model
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from wattwise.errors import ModelError
from wattwise.models.adapt import (
    TINY_INPUT_MAX_PX,
    init_conv_,
    reduce_early_strides,
    replace_conv,
    scale_channels,
)
from wattwise.models.registry import register_model

_RESNET_PLANES = (64, 128, 256, 512)


def _resnet(
    arch: str,
    *,
    num_classes: int,
    in_channels: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> ResNet:
    if width == 1.0:
        model = get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    else:
        if kwargs.get("replace_stride_with_dilation"):
            raise ModelError(f"{arch}: width != 1.0 cannot be combined with dilation")
        # Every parameterized module is rebuilt below, so the template costs nothing on "meta".
        with torch.device("meta"):
            model = get_model(arch, weights=None, num_classes=num_classes, **kwargs)
        _rescale_resnet(model, width, num_classes, kwargs.get("zero_init_residual", False))
    if small_input:
        replace_conv(model, "conv1", in_channels=in_channels, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    elif in_channels != model.conv1.in_channels:
        replace_conv(model, "conv1", in_channels=in_channels)
    return model


def _rescale_resnet(
    model: ResNet, width: float, num_classes: int, zero_init_residual: bool
) -> None:
    """Rebuild the stem, the four stages and the head of ``model`` at ``width``."""
    block = type(model.layer1[0])
    depths = [len(model.get_submodule(f"layer{i}")) for i in range(1, 5)]
    stem_channels = scale_channels(64, width)
    model.inplanes = stem_channels
    model.dilation = 1
    model.conv1 = nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = model._norm_layer(stem_channels)
    for index, (planes, depth) in enumerate(zip(_RESNET_PLANES, depths, strict=True)):
        stage = model._make_layer(
            block, scale_channels(planes, width), depth, stride=min(index, 1) + 1
        )
        setattr(model, f"layer{index + 1}", stage)
    model.fc = nn.Linear(scale_channels(512, width) * block.expansion, num_classes)
    for module in model.modules():  # torchvision's ResNet initialization
        if isinstance(module, nn.Conv2d):
            init_conv_(module)
        elif zero_init_residual and isinstance(module, Bottleneck):
            nn.init.zeros_(module.bn3.weight)
        elif zero_init_residual and isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # pragma: no cover
        raise RuntimeError("ResNet rescaling left tensors on the meta device")


def _adapt_features(
    model: nn.Module, *, in_channels: int, input_size: int, small_input: bool
) -> nn.Module:
    """Small-input strides and input channels for MobileNet/EfficientNet-style ``features``."""
    if small_input:
        reduce_early_strides(model.features, 2 if input_size <= TINY_INPUT_MAX_PX else 1)
    if in_channels != model.features[0][0].in_channels:
        replace_conv(model, "features.0.0", in_channels=in_channels)
    return model


@register_model(stem="conv1", head="fc", torchvision_name="resnet18")
def resnet18(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> nn.Module:
    """ResNet-18 (torchvision; 11.7 M params, 1.81 GMACs at 224 px)."""
    del input_size
    return _resnet(
        "resnet18",
        num_classes=num_classes,
        in_channels=in_channels,
        small_input=small_input,
        width=width,
        **kwargs,
    )


@register_model(stem="conv1", head="fc", torchvision_name="resnet50")
def resnet50(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> nn.Module:
    """ResNet-50 (torchvision; 25.6 M params, 4.09 GMACs at 224 px)."""
    del input_size
    return _resnet(
        "resnet50",
        num_classes=num_classes,
        in_channels=in_channels,
        small_input=small_input,
        width=width,
        **kwargs,
    )


@register_model(stem="features.0.0", head="classifier.1", torchvision_name="mobilenet_v2")
def mobilenet_v2(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> nn.Module:
    """MobileNetV2 (torchvision; 3.5 M params, 0.30 GMACs at 224 px)."""
    model = get_model(
        "mobilenet_v2", weights=None, num_classes=num_classes, width_mult=width, **kwargs
    )
    return _adapt_features(
        model, in_channels=in_channels, input_size=input_size, small_input=small_input
    )


@register_model(
    stem="features.0.0",
    head="classifier.3",
    torchvision_name="mobilenet_v3_small",
)
def mobilenet_v3_small(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> nn.Module:
    """MobileNetV3-Small (torchvision; 2.5 M params, 0.057 GMACs at 224 px)."""
    model = get_model(
        "mobilenet_v3_small", weights=None, num_classes=num_classes, width_mult=width, **kwargs
    )
    return _adapt_features(
        model, in_channels=in_channels, input_size=input_size, small_input=small_input
    )


@register_model(
    stem="features.0.0",
    head="classifier.3",
    torchvision_name="mobilenet_v3_large",
)
def mobilenet_v3_large(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> nn.Module:
    """MobileNetV3-Large (torchvision; 5.5 M params, 0.22 GMACs at 224 px)."""
    model = get_model(
        "mobilenet_v3_large", weights=None, num_classes=num_classes, width_mult=width, **kwargs
    )
    return _adapt_features(
        model, in_channels=in_channels, input_size=input_size, small_input=small_input
    )


@register_model(
    stem="features.0.0",
    head="classifier.1",
    torchvision_name="efficientnet_b0",
)
def efficientnet_b0(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> nn.Module:
    """EfficientNet-B0 (torchvision; 5.3 M params, 0.39 GMACs at 224 px)."""
    # torchvision's B0 stage table (efficientnet.py, _efficientnet_conf), built through the
    # public MBConvConfig so that width_mult can be passed; identical to efficientnet_b0() at 1.0.
    stage = (
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    )
    setting = [MBConvConfig(*row, width_mult=width, depth_mult=1.0) for row in stage]
    model = EfficientNet(
        setting, kwargs.pop("dropout", 0.2), num_classes=num_classes, last_channel=None, **kwargs
    )
    return _adapt_features(
        model, in_channels=in_channels, input_size=input_size, small_input=small_input
    )
