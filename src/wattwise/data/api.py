"""``load_dataset`` and ``list_datasets``: from a name to three in-memory tensor splits."""

from __future__ import annotations

import logging
import numbers
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigError, DatasetError

from ._common import channel_stats, resize_split, stratified_split
from .cache import cache_path, load_cached, save_cached
from .registry import DATASETS, DatasetReader
from .root import resolve_data_root
from .types import DatasetInfo, DatasetSplits, RawDataset

log = logging.getLogger(__name__)


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted, with MedMNIST subsets spelled out.

    Args:
        pattern: Optional glob, e.g. ``"medmnist:*"``.
    """
    return DATASETS.names(pattern)


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    image_size: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    cache: bool = True,
    **options: Any,
) -> DatasetSplits:
    """Loads a registered dataset as uint8 tensors split into train, validation and test.

    Args:
        name: A name from :func:`list_datasets` (``cifar10``, ``medmnist:pathmnist``, ...).
        root: Data root; defaults to ``$WATTWISE_DATA``, else ``~/.cache/wattwise/data``. Each
            dataset lives in its own folder below it, as published (see docs/datasets.md).
        image_size: Side of the square output images in pixels; ``None`` keeps the dataset's
            own size (64 for Brain Tumor MRI, whose images vary).
        val_fraction: Share of each training class carved out as validation, in [0, 1), for
            datasets without their own validation split (MedMNIST has one and ignores this).
        seed: Seed of the validation carve (and of digits' test split).
        download: Fetch missing files first, verifying published MD5 checksums.
        cache: Read and write the decoded tensors under ``<root>/.wattwise-cache``.
        **options: Dataset-specific options (e.g. ``color="rgb"`` for ``brain_tumor_mri``).

    Returns:
        The splits and their :class:`DatasetInfo` (mean/std measured on the train split).

    Raises:
        DatasetError: Unknown name, missing or corrupt files, failed download.
        ConfigError: Invalid arguments or options.
    """
    if image_size is not None and (not _is_int(image_size) or image_size < 1):
        raise ConfigError(f"image_size must be a positive integer or None, got {image_size!r}")
    if not isinstance(val_fraction, numbers.Real) or not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if not _is_int(seed):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    image_size = None if image_size is None else int(image_size)
    seed, val_fraction = int(seed), float(val_fraction)
    reader = DATASETS.create(name, **options)

    folder: Path | None = None
    entry: Path | None = None
    if reader.folder is not None:
        data_root = resolve_data_root(root)
        folder = reader.locate(data_root)
        if download:
            reader.download(folder, image_size)
        files = reader.source_files(folder, image_size)
        if cache and reader.cacheable:
            entry = cache_path(
                data_root, reader.full_name, reader.cache_options(), image_size, files
            )
    raw = load_cached(entry) if entry is not None else None
    if raw is not None:
        log.debug("dataset %s loaded from cache %s", reader.full_name, entry)
    else:
        raw = _decode(reader, folder, image_size, seed)
        if entry is not None:
            save_cached(entry, raw)
    return _finish(reader, raw, val_fraction, seed)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _decode(
    reader: DatasetReader, folder: Path | None, image_size: int | None, seed: int
) -> RawDataset:
    raw = reader.read(folder, image_size=image_size, seed=seed)
    if image_size is not None:
        raw = RawDataset(
            train=resize_split(raw.train, image_size),
            test=resize_split(raw.test, image_size),
            val=None if raw.val is None else resize_split(raw.val, image_size),
            class_names=raw.class_names,
            source=raw.source,
            test_note=raw.test_note,
        )
    _check(reader.full_name, raw)
    return raw


def _check(name: str, raw: RawDataset) -> None:
    """Checks that all splits agree on image shape and that labels fit the class names."""
    shape = tuple(raw.train.images.shape[1:])
    num_classes = len(raw.class_names)
    for split_name, split in (("train", raw.train), ("val", raw.val), ("test", raw.test)):
        if split is None:
            continue
        if tuple(split.images.shape[1:]) != shape or shape[1] != shape[2]:
            raise DatasetError(
                f"{name}: {split_name} images are {tuple(split.images.shape[1:])}, train images "
                f"{shape}; all must be the same square size ({raw.source})"
            )
        if len(split) and (split.labels.min() < 0 or split.labels.max() >= num_classes):
            raise DatasetError(
                f"{name}: {split_name} labels outside 0..{num_classes - 1} ({raw.source})"
            )
    if len(raw.train) == 0:
        raise DatasetError(f"{name}: the train split is empty ({raw.source})")


def _finish(
    reader: DatasetReader, raw: RawDataset, val_fraction: float, seed: int
) -> DatasetSplits:
    if raw.val is not None:
        train, val = raw.train, raw.val
        notes = f"{raw.test_note}; val as published"
    else:
        keep, take = stratified_split(raw.train.labels, val_fraction, seed)
        train, val = raw.train.subset(keep), raw.train.subset(take)
        notes = (
            f"{raw.test_note}; val = {val_fraction:g} of each train class (stratified, seed {seed})"
            if val_fraction > 0
            else f"{raw.test_note}; no validation split (val_fraction=0)"
        )
    mean, std = channel_stats(train.images)
    info = DatasetInfo(
        name=reader.full_name,
        num_classes=len(raw.class_names),
        in_channels=int(train.images.shape[1]),
        image_size=int(train.images.shape[-1]),
        class_names=raw.class_names,
        mean=mean,
        std=std,
        source=raw.source,
        notes=notes,
    )
    return DatasetSplits(train=train, val=val, test=raw.test, info=info)
