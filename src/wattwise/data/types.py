"""Value types of the data package: a split of tensors, a dataset's metadata, and the three splits.

Images are always ``uint8`` tensors of shape ``[N, C, H, W]`` (0..255, square ``H == W``) and
labels ``int64`` tensors of shape ``[N]`` (0..num_classes-1). Conversion to float and
normalization happen on the target device, in :class:`wattwise.data.loader.TensorLoader`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorSplit:
    """One split of a dataset, held in memory as tensors.

    Attributes:
        images: ``uint8`` tensor ``[N, C, H, W]`` with pixel values 0..255.
        labels: ``int64`` tensor ``[N]`` of class indices.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                f"labels must be int64 [N], got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"{self.images.shape[0]} images but {self.labels.shape[0]} labels in one split"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> TensorSplit:
        """Returns the rows at ``indices`` (a 1-D int64 tensor) as a new split."""
        return TensorSplit(
            self.images.index_select(0, indices), self.labels.index_select(0, indices)
        )

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """Number of samples per class, an ``int64`` tensor ``[num_classes]``."""
        return torch.bincount(self.labels, minlength=num_classes)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a report need to know about a loaded dataset.

    Attributes:
        name: Registry name, e.g. ``cifar10`` or ``medmnist:pathmnist``.
        num_classes: Number of classes.
        in_channels: Channels per image (1 grey, 3 RGB).
        image_size: Side of the square images, in pixels.
        class_names: One name per class index.
        mean: Per-channel mean of the train split, pixel values scaled to [0, 1].
        std: Per-channel standard deviation of the train split, in [0, 1] units.
        source: Where the data came from (files and folder, or the generator).
        notes: How the splits were made (official splits, carved validation fraction, seed).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    notes: str = ""


@dataclass(frozen=True)
class DatasetSplits:
    """A loaded dataset: train, validation and test splits plus metadata.

    Attributes:
        train: Training split.
        val: Validation split (the dataset's own, or carved from train; may be empty when
            ``val_fraction`` is 0).
        test: Test split (the dataset's official one where it has one).
        info: Metadata; ``info.mean`` / ``info.std`` come from ``train``.
    """

    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    info: DatasetInfo


@dataclass(frozen=True)
class RawDataset:
    """What a reader decodes from disk, before validation carving and statistics.

    Attributes:
        train: Training split as published.
        test: Test split as published.
        class_names: One name per class index.
        val: The dataset's own validation split, or ``None`` to carve one from ``train``.
        source: Where the data came from, for :attr:`DatasetInfo.source`.
        test_note: How the test split was made, for :attr:`DatasetInfo.notes`.
    """

    train: TensorSplit
    test: TensorSplit
    class_names: tuple[str, ...]
    val: TensorSplit | None = None
    source: str = ""
    test_note: str = "test as published"
