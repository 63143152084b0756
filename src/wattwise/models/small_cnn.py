"""``small_cnn``: a small, fast CNN for tests, the offline demo and distillation students."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from wattwise.models.adapt import init_conv_, scale_channels
from wattwise.models.registry import register_model

#: Output channels of the four conv-BN-ReLU blocks at width 1.0.
SMALL_CNN_CHANNELS = (16, 32, 64, 64)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        init_conv_(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks, global average pooling and a linear classifier.

    The first block keeps the resolution (stride 1; stride 2 when ``small_input`` is false), the
    other three halve it, so 32 px inputs end at 4x4 and 8 px inputs at 1x1. At width 1.0 with
    3 input channels and 10 classes it has about 61 k parameters.

    Args:
        num_classes: Classifier outputs.
        in_channels: Input image channels.
        channels: Output channels of the four blocks.
        small_input: Stride 1 in the first block (else 2, for inputs above 64 px).
        dropout: Dropout probability before the classifier.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        channels: Sequence[int] = SMALL_CNN_CHANNELS,
        small_input: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        previous = in_channels
        for index, out in enumerate(channels):
            stride = (1 if small_input else 2) if index == 0 else 2
            blocks.append(_conv_bn_relu(previous, out, stride))
            previous = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)`` for images ``(batch, C, H, W)``."""
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


@register_model(stem="features.0.0", head="classifier")
def small_cnn(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    small_input: bool,
    width: float,
    **kwargs: Any,
) -> nn.Module:
    """Small 4-block CNN (about 61 k params at width 1.0; for tests and the offline demo)."""
    del input_size
    channels = [scale_channels(c, width) for c in SMALL_CNN_CHANNELS]
    return SmallCNN(num_classes, in_channels, channels=channels, small_input=small_input, **kwargs)
