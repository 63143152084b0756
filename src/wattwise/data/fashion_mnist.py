"""Fashion-MNIST from the published gzipped IDX files.

Expected layout under the data root::

    fashion-mnist/
        train-images-idx3-ubyte.gz   # 60000 x 28 x 28
        train-labels-idx1-ubyte.gz
        t10k-images-idx3-ubyte.gz    # 10000 x 28 x 28
        t10k-labels-idx1-ubyte.gz

torchvision's layout ``FashionMNIST/raw/`` (same four files) is accepted too, so a copy that
torchvision already downloaded is reused.

IDX format (big-endian): images start with magic 2051, count, rows, cols (four int32) then
``count * rows * cols`` bytes; labels start with magic 2049 and count, then ``count`` bytes.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ._common import corrupt, fetch, or_download, require_file, verify_md5
from .registry import DatasetReader, register_dataset
from .types import RawDataset, TensorSplit

#: Mirrors tried in order: torchvision's (Zalando's S3 bucket), then Zalando's GitHub repository.
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
#: Published MD5 of each .gz file, as listed by torchvision.datasets.FashionMNIST.
FILE_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FOLDER = "fashion-mnist"
TORCHVISION_FOLDER = Path("FashionMNIST") / "raw"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_WHAT = "Fashion-MNIST"


def _gunzip(path: Path, how: str) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise corrupt(path, _WHAT, f"bad gzip: {err}", how) from err


def read_idx_images(path: Path, how: str) -> torch.Tensor:
    """Decodes an IDX3 image file into ``uint8 [N, 1, rows, cols]``."""
    raw = _gunzip(path, how)
    if len(raw) < 16:
        raise corrupt(path, _WHAT, f"{len(raw)} bytes, shorter than the 16-byte IDX3 header", how)
    magic, count, rows, cols = struct.unpack(">iiii", raw[:16])
    if magic != IMAGES_MAGIC:
        raise corrupt(path, _WHAT, f"magic number {magic}, expected {IMAGES_MAGIC}", how)
    expected = 16 + count * rows * cols
    if count < 0 or rows <= 0 or cols <= 0 or len(raw) != expected:
        raise corrupt(
            path,
            _WHAT,
            f"header says {count}x{rows}x{cols} ({expected} bytes), file has {len(raw)}",
            how,
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, 1, rows, cols)
    return torch.from_numpy(data.copy())


def read_idx_labels(path: Path, how: str, num_classes: int) -> torch.Tensor:
    """Decodes an IDX1 label file into ``int64 [N]``; labels must be below ``num_classes``."""
    raw = _gunzip(path, how)
    if len(raw) < 8:
        raise corrupt(path, _WHAT, f"{len(raw)} bytes, shorter than the 8-byte IDX1 header", how)
    magic, count = struct.unpack(">ii", raw[:8])
    if magic != LABELS_MAGIC:
        raise corrupt(path, _WHAT, f"magic number {magic}, expected {LABELS_MAGIC}", how)
    if count < 0 or len(raw) != 8 + count:
        raise corrupt(path, _WHAT, f"header says {count} labels, file has {len(raw) - 8}", how)
    labels = np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)
    if labels.size and labels.max() >= num_classes:
        raise corrupt(path, _WHAT, f"label {labels.max()} outside 0..{num_classes - 1}", how)
    return torch.from_numpy(labels)


@register_dataset("fashion_mnist")
class FashionMnistReader(DatasetReader):
    """Fashion-MNIST: 70000 28x28 grey images of clothing in 10 classes (60000 train, 10000 test).

    Options:
        verify: Check each file's published MD5 on each load, cached or not. Downloads are
            always verified.
    """

    folder = FOLDER
    native_size = 28
    option_defaults: ClassVar[dict[str, Any]] = {"verify": False}
    summary = "Fashion-MNIST, 28x28 grey, 10 classes (gzipped IDX)"

    def locate(self, root: Path) -> Path:
        """``<root>/fashion-mnist``, or torchvision's ``FashionMNIST/raw`` if only it has them."""
        own, theirs = root / FOLDER, root / TORCHVISION_FOLDER
        if not own.exists() and all((theirs / n).is_file() for n in FILE_MD5):
            return theirs
        return own

    @staticmethod
    def how_to_obtain(folder: Path) -> str:
        return or_download(f"download the four .gz files from {MIRRORS[0]} into {folder}")

    def source_files(self, folder: Path, image_size: int | None) -> list[Path]:
        how = self.how_to_obtain(folder)
        files = [require_file(folder / name, _WHAT, how) for name in FILE_MD5]
        if self.options["verify"]:
            for path in files:
                verify_md5(path, FILE_MD5[path.name], _WHAT, how)
        return files

    def download(self, folder: Path, image_size: int | None) -> None:
        for name, md5 in FILE_MD5.items():
            fetch([m + name for m in MIRRORS], folder, name, md5, _WHAT)

    def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
        if folder is None:
            raise ValueError("Fashion-MNIST needs a folder")
        how = self.how_to_obtain(folder)
        splits = []
        for prefix in ("train", "t10k"):
            images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
            labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
            images = read_idx_images(images_path, how)
            labels = read_idx_labels(labels_path, how, len(CLASS_NAMES))
            if images.shape[0] != labels.shape[0]:
                raise corrupt(
                    labels_path,
                    _WHAT,
                    f"{labels.shape[0]} labels for {images.shape[0]} images",
                    how,
                )
            if images.shape[-2:] != (28, 28):
                raise corrupt(
                    images_path,
                    _WHAT,
                    f"images are {tuple(images.shape[-2:])}, expected 28x28",
                    how,
                )
            splits.append(TensorSplit(images, labels))
        return RawDataset(
            train=splits[0],
            test=splits[1],
            class_names=CLASS_NAMES,
            source=f"Fashion-MNIST IDX files in {folder}",
        )
