"""Datasets: a registry of readers of the real on-disk formats, and a fast tensor pipeline.

Typical use::

    from wattwise.data import TensorLoader, load_dataset

    splits = load_dataset("cifar10", "/data", download=True)
    train = TensorLoader.from_splits(splits, "train", 128, shuffle=True, augment=True)
    for x, y in train:  # float32 [128, 3, 32, 32] normalized, int64 [128]
        ...

Registered names: ``cifar10``, ``fashion_mnist``, ``medmnist:<subset>``, ``brain_tumor_mri``,
``digits`` (embedded, offline; the default) and ``synthetic``. See docs/datasets.md.
"""

from __future__ import annotations

# Importing the reader modules registers them.
from . import brain_tumor_mri, cifar10, digits, fashion_mnist, medmnist, synthetic  # noqa: F401
from ._common import download_hint
from .api import list_datasets, load_dataset
from .cache import CACHE_DIRNAME, clear_cache
from .loader import AugmentConfig, TensorLoader, augment_batch
from .registry import DATASETS, DatasetReader, DatasetRegistry, register_dataset
from .root import DATA_ROOT_ENV, default_data_root, resolve_data_root
from .types import DatasetInfo, DatasetSplits, RawDataset, TensorSplit

#: The dataset used when a configuration names none: embedded, so it works offline.
DEFAULT_DATASET = "digits"

__all__ = [
    "CACHE_DIRNAME",
    "DATASETS",
    "DATA_ROOT_ENV",
    "DEFAULT_DATASET",
    "AugmentConfig",
    "DatasetInfo",
    "DatasetReader",
    "DatasetRegistry",
    "DatasetSplits",
    "RawDataset",
    "TensorLoader",
    "TensorSplit",
    "augment_batch",
    "clear_cache",
    "default_data_root",
    "download_hint",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "resolve_data_root",
]
