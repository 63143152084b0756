"""Brain Tumor MRI Dataset (Masoud Nickparvar, Kaggle) from its folder of JPEG images.

Expected layout under the data root (the Kaggle archive unzipped)::

    brain_tumor_mri/
        Training/
            glioma/  meningioma/  notumor/  pituitary/    # JPEG files of any size and mode
        Testing/
            glioma/  meningioma/  notumor/  pituitary/

Class names come from the sub-folders of ``Training/`` (sorted); ``Testing/`` must have the same
ones. Hidden entries are skipped: ``.DS_Store`` and the ``._<name>`` AppleDouble files that macOS
writes next to every file copied to a foreign disk. Every image is decoded with PIL, converted
to grey (``color="grayscale"``, the default: MRI is grey) or RGB (``color="rgb"``) and resized,
stretched, to ``image_size`` (default 64) with bilinear filtering. Decoding is the one
per-image loop of this package; the result is cached. Kaggle needs a login, so there is no
automatic download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from wattwise.errors import ConfigError, DatasetError

from ._common import corrupt
from .registry import DatasetReader, register_dataset
from .types import RawDataset, TensorSplit

FOLDER = "brain_tumor_mri"
KAGGLE_URL = "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset"
SPLIT_FOLDERS = ("Training", "Testing")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_SIZE = 64
_WHAT = "Brain Tumor MRI"


def _how(folder: Path) -> str:
    return (
        f"download the dataset from {KAGGLE_URL} (a Kaggle login is needed) and unzip it so that "
        f"{folder}/Training and {folder}/Testing exist"
    )


def _visible(path: Path) -> bool:
    """Not a hidden entry (``.DS_Store``, macOS ``._<name>`` AppleDouble sidecars)."""
    return not path.name.startswith(".")


def _class_folders(split_dir: Path, how: str) -> dict[str, list[Path]]:
    if not split_dir.is_dir():
        raise DatasetError(
            f"{_WHAT}: expected folder {split_dir.name!r} in {split_dir.parent}, not found; {how}"
        )
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in split_dir.iterdir() if p.is_dir() and _visible(p)):
        files = sorted(
            p
            for p in sub.iterdir()
            if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DatasetError(
                f"{_WHAT}: class folder {sub} has no images ({', '.join(IMAGE_SUFFIXES)}); {how}"
            )
        classes[sub.name] = files
    if not classes:
        raise DatasetError(f"{_WHAT}: no class folders in {split_dir}; {how}")
    return classes


def _decode(path: Path, mode: str, size: int, how: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.draft(mode, (size, size))  # JPEG: decode at a reduced scale when much larger
            converted = img.convert(mode)
            resized = converted.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(resized, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise corrupt(path, _WHAT, f"cannot decode image: {err}", how) from err


@register_dataset("brain_tumor_mri")
class BrainTumorMriReader(DatasetReader):
    """Brain Tumor MRI: about 7000 MRI slices, 4 classes (glioma, meningioma, notumor, pituitary).

    Options:
        color: ``"grayscale"`` (1 channel, default) or ``"rgb"`` (3 channels).
    """

    folder = FOLDER
    native_size = DEFAULT_SIZE
    option_defaults: ClassVar[dict[str, Any]] = {"color": "grayscale"}
    summary = "Brain Tumor MRI (Kaggle), JPEG folders, 4 classes"

    def validate_options(self) -> None:
        if self.options["color"] not in ("grayscale", "rgb"):
            raise ConfigError(
                f"option color={self.options['color']!r} of {self.name}: use 'grayscale' or 'rgb'"
            )

    def _scan(self, folder: Path) -> dict[str, dict[str, list[Path]]]:
        how = _how(folder)
        if not folder.is_dir():
            raise DatasetError(
                f"{_WHAT}: expected folder {folder.name!r} in {folder.parent}, not found; {how}"
            )
        scanned = {split: _class_folders(folder / split, how) for split in SPLIT_FOLDERS}
        train_classes, test_classes = list(scanned["Training"]), list(scanned["Testing"])
        if train_classes != test_classes:
            raise DatasetError(
                f"{_WHAT}: class folders differ between {folder / 'Training'} "
                f"({', '.join(train_classes)}) and {folder / 'Testing'} "
                f"({', '.join(test_classes)}); {how}"
            )
        return scanned

    def source_files(self, folder: Path, image_size: int | None) -> list[Path]:
        scanned = self._scan(folder)
        return [f for split in scanned.values() for files in split.values() for f in files]

    def download(self, folder: Path, image_size: int | None) -> None:
        raise DatasetError(f"{_WHAT} cannot be downloaded automatically: {_how(folder)}")

    def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
        if folder is None:
            raise ValueError("Brain Tumor MRI needs a folder")
        scanned = self._scan(folder)
        size = image_size or DEFAULT_SIZE
        mode = "L" if self.options["color"] == "grayscale" else "RGB"
        how = _how(folder)
        splits = []
        for split in SPLIT_FOLDERS:
            images: list[np.ndarray] = []
            labels: list[int] = []
            for index, files in enumerate(scanned[split].values()):
                images.extend(_decode(f, mode, size, how) for f in files)
                labels.extend([index] * len(files))
            stacked = torch.from_numpy(np.stack(images))
            tensor = stacked.unsqueeze(1) if mode == "L" else stacked.permute(0, 3, 1, 2)
            splits.append(TensorSplit(tensor.contiguous(), torch.tensor(labels, dtype=torch.int64)))
        return RawDataset(
            train=splits[0],
            test=splits[1],
            class_names=tuple(scanned["Training"]),
            source=f"Brain Tumor MRI JPEG folders in {folder}",
        )
