"""MedMNIST 2D subsets from the published ``.npz`` files (``medmnist:<subset>``).

Expected layout under the data root (the files as downloaded from Zenodo)::

    medmnist/
        pathmnist.npz          # 28 x 28
        pathmnist_64.npz       # 64 x 64 (likewise _128, _224)
        ...

Each file holds ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
``test_images``, ``test_labels``; images are uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]``
(RGB), labels integer ``[N, 1]``. The published validation split is used as is.

``image_size`` picks the file: a published size (28, 64, 128, 224) reads that file; another size
reads the smallest published file at least that large (224 if none) and resizes. ChestMNIST is
multi-label (14 findings per image) and is refused: the classifiers here train with a
single-label cross-entropy loss. RetinaMNIST (ordinal 0..4 grading) is treated as 5 classes.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from wattwise.errors import DatasetError

from ._common import corrupt, fetch, nchw_from_nhwc, or_download, require_file, verify_md5
from .medmnist_info import MEDMNIST_2D, SIZES, ZENODO_RECORD
from .registry import DatasetReader, register_dataset
from .types import RawDataset, TensorSplit

FOLDER = "medmnist"
KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")
MULTI_LABEL = ("chestmnist",)
SUPPORTED = tuple(sorted(s for s in MEDMNIST_2D if s not in MULTI_LABEL))


def file_name(subset: str, size: int) -> str:
    """Published file name of ``subset`` at ``size`` pixels (``pathmnist_64.npz``)."""
    return f"{subset}.npz" if size == 28 else f"{subset}_{size}.npz"


def source_size(image_size: int | None) -> int:
    """The published size to read for a requested ``image_size`` (``None``: 28)."""
    if image_size is None:
        return 28
    return next((s for s in SIZES if s >= image_size), SIZES[-1])


@register_dataset("medmnist")
class MedMnistReader(DatasetReader):
    """MedMNIST 2D single-label subsets, at 28, 64, 128 or 224 pixels.

    Options:
        verify: Check the file's published MD5 on each load, cached or not. Downloads are
            always verified.
    """

    folder = FOLDER
    native_size = 28
    variants = SUPPORTED
    option_defaults: ClassVar[dict[str, Any]] = {"verify": False}
    summary = "MedMNIST 2D subsets (npz), 28/64/128/224 px"

    @classmethod
    def check_variant(cls, variant: str | None) -> str | None:
        if variant is None:
            raise DatasetError(
                f"name a MedMNIST subset as medmnist:<subset>, one of: {', '.join(SUPPORTED)}"
            )
        subset = variant.strip().lower()
        if subset in MULTI_LABEL:
            raise DatasetError(
                f"medmnist:{subset} is multi-label (several findings per image); wattwise's "
                "classifiers use a single-label cross-entropy loss, so it is not supported; "
                f"choose one of: {', '.join(SUPPORTED)}"
            )
        if subset.endswith("3d"):
            raise DatasetError(
                f"medmnist:{subset} holds 3D volumes; only 2D subsets are supported: "
                f"{', '.join(SUPPORTED)}"
            )
        if subset not in MEDMNIST_2D:
            raise DatasetError(
                f"unknown MedMNIST subset {variant!r}; known subsets: {', '.join(SUPPORTED)}"
            )
        return subset

    @property
    def meta(self) -> dict[str, Any]:
        return MEDMNIST_2D[str(self.variant)]

    def _file(self, folder: Path, image_size: int | None) -> tuple[Path, int]:
        size = source_size(image_size)
        return folder / file_name(str(self.variant), size), size

    def how_to_obtain(self, path: Path) -> str:
        return or_download(
            f"download {ZENODO_RECORD}{path.name} into {path.parent} "
            "(or run `pip install medmnist` and copy it from ~/.medmnist)"
        )

    def source_files(self, folder: Path, image_size: int | None) -> list[Path]:
        path, size = self._file(folder, image_size)
        how = self.how_to_obtain(path)
        require_file(path, self._what, how)
        if self.options["verify"]:
            verify_md5(path, self.meta["md5"][size], self._what, how)
        return [path]

    def download(self, folder: Path, image_size: int | None) -> None:
        path, size = self._file(folder, image_size)
        url = f"{ZENODO_RECORD}{path.name}?download=1"
        fetch([url], folder, path.name, self.meta["md5"][size], self._what)

    def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
        if folder is None:
            raise ValueError("MedMNIST needs a folder")
        path, size = self._file(folder, image_size)
        how = self.how_to_obtain(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in KEYS if k not in npz.files]
                if missing:
                    raise corrupt(path, self._what, f"missing keys {', '.join(missing)}", how)
                arrays = {k: npz[k] for k in KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise corrupt(path, self._what, f"cannot read npz: {err}", how) from err
        splits = {
            name: self._split(path, arrays, name, size, how) for name in ("train", "val", "test")
        }
        return RawDataset(
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            class_names=tuple(self.meta["labels"]),
            source=f"MedMNIST {path.name} in {path.parent}",
        )

    @property
    def _what(self) -> str:
        return f"MedMNIST {self.variant}"

    def _split(
        self, path: Path, arrays: dict[str, np.ndarray], name: str, size: int, how: str
    ) -> TensorSplit:
        images, labels = arrays[f"{name}_images"], arrays[f"{name}_labels"]
        channels = self.meta["n_channels"]
        expected = (size, size) if channels == 1 else (size, size, channels)
        if images.dtype != np.uint8 or images.shape[1:] != expected:
            raise corrupt(
                path,
                self._what,
                f"{name}_images is {images.dtype} {images.shape}, expected uint8 [N, "
                f"{', '.join(map(str, expected))}]",
                how,
            )
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise corrupt(
                path,
                self._what,
                f"{name}_labels is {labels.dtype} {labels.shape}, expected integers "
                f"[{images.shape[0]}, 1]",
                how,
            )
        num_classes = len(self.meta["labels"])
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise corrupt(path, self._what, f"{name}_labels outside 0..{num_classes - 1}", how)
        return TensorSplit(
            nchw_from_nhwc(torch.from_numpy(np.ascontiguousarray(images))),
            torch.from_numpy(labels.astype(np.int64)),
        )
