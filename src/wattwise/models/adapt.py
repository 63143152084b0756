"""Architecture surgery shared by the builders: stems, input channels, strides, BatchNorm.

Every change here is made once, at build time, on the module tree; nothing is done to inputs at
run time (no upsampling, no channel copying).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: Inputs at most this many pixels on a side get a small-input stem when ``small_input`` is auto.
SMALL_INPUT_MAX_PX = 64
#: Inputs at most this many pixels on a side also lose the first downsampling block's stride
#: (MobileNetV2/V3, EfficientNet) when a small-input stem is applied.
TINY_INPUT_MAX_PX = 32


def resolve_small_input(small_input: bool | None, input_size: int) -> bool:
    """Decide whether to apply the small-input stem.

    Args:
        small_input: ``True``/``False`` to force, ``None`` for automatic.
        input_size: Input height/width in pixels.

    Returns:
        ``small_input`` when given, else ``input_size <= 64``.
    """
    if small_input is None:
        return input_size <= SMALL_INPUT_MAX_PX
    return bool(small_input)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (as MobileNet does).

    The result never drops more than 10 % below ``value``.

    Args:
        value: The scaled channel count (channels x width).
        divisor: Channel counts become multiples of this.
        min_value: Smallest result; defaults to ``divisor``.

    Returns:
        The rounded channel count.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_channels(channels: int, width: float) -> int:
    """Channels of a layer at width multiplier ``width`` (exact at ``width == 1.0``)."""
    if width == 1.0:
        return channels
    return make_divisible(channels * width, 8)


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` (``"features.0.0"``) with ``module``."""
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, module)


def init_conv_(conv: nn.Conv2d) -> nn.Conv2d:
    """Initialize a conv as torchvision's ResNet/MobileNet/EfficientNet do (Kaiming, fan-out)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def replace_conv(
    root: nn.Module,
    path: str,
    *,
    in_channels: int | None = None,
    out_channels: int | None = None,
    kernel_size: int | None = None,
    stride: int | None = None,
    padding: int | None = None,
) -> nn.Conv2d:
    """Swap the ``nn.Conv2d`` at ``path`` for a freshly initialized one with some fields changed.

    Fields not given are copied from the old conv (groups, dilation, bias, padding mode, device,
    dtype).

    Args:
        root: The model.
        path: Dotted path of the conv inside ``root``.
        in_channels: New input channel count.
        out_channels: New output channel count.
        kernel_size: New (square) kernel size.
        stride: New (square) stride.
        padding: New (square) padding.

    Returns:
        The new conv, already placed in ``root``.
    """
    old = root.get_submodule(path)
    if not isinstance(old, nn.Conv2d):
        raise TypeError(f"{path} is a {type(old).__name__}, not a Conv2d")
    new = nn.Conv2d(
        in_channels if in_channels is not None else old.in_channels,
        out_channels if out_channels is not None else old.out_channels,
        kernel_size=kernel_size if kernel_size is not None else old.kernel_size,
        stride=stride if stride is not None else old.stride,
        padding=padding if padding is not None else old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    set_submodule(root, path, init_conv_(new))
    return new


def reduce_early_strides(features: nn.Module, count: int) -> list[str]:
    """Set the first ``count`` stride-2 convolutions of ``features`` to stride 1.

    Used on MobileNetV2/V3 and EfficientNet ``features``: the first stride-2 conv is the stem,
    the second the depthwise conv of the first downsampling block. Padding is kept, so each
    changed conv now preserves the feature-map size. Residual connections are decided by
    torchvision at build time and are not added to a block whose stride changed.

    Args:
        features: The module to walk (in registration order).
        count: How many stride-2 convs to change.

    Returns:
        Dotted paths (relative to ``features``) of the convs changed.
    """
    changed: list[str] = []
    for name, module in features.named_modules():
        if len(changed) == count:
            break
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
            changed.append(name)
    return changed


def set_bn_momentum(model: nn.Module, momentum: float) -> int:
    """Set ``momentum`` on every BatchNorm layer of ``model``.

    Args:
        model: The model.
        momentum: Weight of the current batch in the running statistics (PyTorch convention;
            0.1 is PyTorch's default).

    Returns:
        How many BatchNorm layers were changed.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.momentum = momentum
            count += 1
    return count


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Turn a first-conv kernel trained for C input channels into one for ``in_channels``.

    The kernels of the C source channels are summed and split evenly over the new channels:
    ``new[:, i] = sum_c old[:, c] / in_channels``. For one channel this is the sum of the RGB
    kernels, so a grayscale image gives the response the RGB model gives to the same image with
    R = G = B; for any count, an input whose channels all carry the same value responds as the
    source model does.

    Args:
        weight: Kernel of shape ``(out, C, kh, kw)``.
        in_channels: The new input channel count.

    Returns:
        A kernel of shape ``(out, in_channels, kh, kw)``.
    """
    summed = weight.sum(dim=1, keepdim=True)
    return (summed / in_channels).repeat(1, in_channels, 1, 1).contiguous()
