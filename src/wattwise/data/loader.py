"""A fast batch iterator over in-memory uint8 tensors, with batched augmentation on the device.

The whole split is moved to the target device once, as uint8 (CIFAR-10's 50000 training images
take 150 MB). Each batch is then gathered, augmented (random crop with zero padding, horizontal
flip), converted to float32 and normalized with tensor operations on that device: no per-sample
Python work and no worker processes. Random numbers come from a CPU :class:`torch.Generator`
seeded with ``(seed, epoch)``, so a run is reproducible, and identical on CPU and GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .types import DatasetSplits, TensorSplit


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation, applied per batch.

    Attributes:
        crop_padding: Zero padding in pixels on each side before a random crop back to the
            original size (4 is the CIFAR standard); 0 disables cropping.
        hflip: Flip each image left-right with probability 0.5.
    """

    crop_padding: int = 4
    hflip: bool = True

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")


class TensorLoader:
    """Iterates over ``(x, y)`` batches of a :class:`TensorSplit`.

    ``x`` is float32 ``[B, C, H, W]``, scaled to [0, 1] and then normalized with ``mean`` and
    ``std`` if given; ``y`` is int64 ``[B]``. Each iteration is one epoch; successive epochs
    shuffle differently, and the sequence is fixed by ``seed`` (use :meth:`set_epoch` to jump).

    Args:
        split: The images and labels.
        batch_size: Images per batch.
        shuffle: Visit the images in a new random order each epoch.
        seed: Seed of shuffling and augmentation.
        device: Where the split is held and batches are produced (``"cpu"``, ``"cuda"``...).
        augment: ``True`` for :class:`AugmentConfig` defaults, or a config; ``False`` for none.
        mean: Per-channel mean in [0, 1] units (e.g. ``DatasetInfo.mean``); ``None`` skips
            normalization.
        std: Per-channel standard deviation in [0, 1] units; required with ``mean``.
        drop_last: Drop the last batch if it is smaller than ``batch_size``.
        channels_last: Return ``x`` in ``torch.channels_last`` memory format.
    """

    def __init__(
        self,
        split: TensorSplit,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        augment: bool | AugmentConfig = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.augment: AugmentConfig | None = (
            AugmentConfig() if augment is True else (augment or None)
        )
        self.epoch = 0
        self._scale, self._shift = self._normalizer(mean, std)

    @classmethod
    def from_splits(
        cls, splits: DatasetSplits, which: str, batch_size: int, **kwargs: Any
    ) -> TensorLoader:
        """A loader over ``splits.<which>`` normalized with the dataset's train mean/std.

        Args:
            splits: A loaded dataset.
            which: ``"train"``, ``"val"`` or ``"test"``.
            batch_size: Images per batch.
            **kwargs: Further :class:`TensorLoader` arguments (``shuffle``, ``augment``...).
        """
        if which not in ("train", "val", "test"):
            raise ValueError(f"which must be 'train', 'val' or 'test', got {which!r}")
        kwargs.setdefault("mean", splits.info.mean)
        kwargs.setdefault("std", splits.info.std)
        return cls(getattr(splits, which), batch_size, **kwargs)

    def _normalizer(
        self, mean: Sequence[float] | None, std: Sequence[float] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        channels = self.images.shape[1]
        if mean is None and std is None:
            scale = torch.full((channels,), 1.0 / 255.0)
            shift = torch.zeros(channels)
        else:
            if mean is None or std is None:
                raise ValueError("give both mean and std, or neither")
            if len(mean) != channels or len(std) != channels:
                raise ValueError(
                    f"mean/std have {len(mean)}/{len(std)} values for {channels} channels"
                )
            if any(s <= 0 for s in std):
                raise ValueError(f"std must be positive, got {tuple(std)}")
            mean_t = torch.tensor(mean, dtype=torch.float64)
            std_t = torch.tensor(std, dtype=torch.float64)
            scale = (1.0 / (255.0 * std_t)).float()
            shift = (-mean_t / std_t).float()
        shape = (1, channels, 1, 1)
        return scale.view(shape).to(self.device), shift.view(shape).to(self.device)

    def __len__(self) -> int:
        n = int(self.labels.shape[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that the next iteration runs (it picks the shuffle and augmentation)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self.iter_with_indices():
            yield x, y

    def iter_with_indices(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Like iterating, but each batch also carries its rows' indices in the split (int64,
        on the device), e.g. to look up per-sample targets such as a teacher's logits."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        self.epoch += 1
        n = int(self.labels.shape[0])
        order = torch.randperm(n, generator=generator).to(self.device) if self.shuffle else None
        for i in range(len(self)):
            start, stop = i * self.batch_size, min((i + 1) * self.batch_size, n)
            if order is None:
                index = torch.arange(start, stop, device=self.device)
                x, y = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                x, y = self.images.index_select(0, index), self.labels.index_select(0, index)
            yield self._transform(x, generator), y, index

    def _transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.augment is not None:
            x = augment_batch(x, self.augment, generator)
        out = x.float().mul_(self._scale).add_(self._shift)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def augment_batch(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a whole batch.

    Args:
        x: ``uint8`` (or float) ``[B, C, H, W]`` batch on any device.
        config: What to apply.
        generator: CPU generator for the random offsets and flips.

    Returns:
        A new ``[B, C, H, W]`` tensor of the same dtype and device.
    """
    batch, channels, height, width = x.shape
    device = x.device
    pad = config.crop_padding
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        offset_y = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(device)
        offset_x = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(device)
        rows = offset_y[:, None] + torch.arange(height, device=device)  # [B, H]
        cols = offset_x[:, None] + torch.arange(width, device=device)  # [B, W]
        padded_width = width + 2 * pad
        x = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, padded_width))
        x = x.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
    if config.hflip:
        flip = (torch.rand(batch, generator=generator) < 0.5).to(device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x
