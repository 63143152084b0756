"""Writers of small datasets in the real published on-disk formats, as factory fixtures."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CIFAR_TRAIN_PER_BATCH = 20
CIFAR_TEST = 30


def _write_cifar(
    root: Path, per_batch: int = CIFAR_TRAIN_PER_BATCH, test: int = CIFAR_TEST
) -> Path:
    """``root/cifar-10-batches-py`` with five train batches, a test batch and the meta file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in np.arange(n) % 10],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        b"label_names": [
            b"airplane",
            b"automobile",
            b"bird",
            b"cat",
            b"deer",
            b"dog",
            b"frog",
            b"horse",
            b"ship",
            b"truck",
        ],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def idx_images(images: np.ndarray, magic: int = 2051) -> bytes:
    """Raw (uncompressed) IDX3 bytes of ``uint8 [N, rows, cols]`` images."""
    n, rows, cols = images.shape
    return struct.pack(">iiii", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic: int = 2049) -> bytes:
    """Raw (uncompressed) IDX1 bytes of ``uint8 [N]`` labels."""
    return struct.pack(">ii", magic, labels.shape[0]) + labels.astype(np.uint8).tobytes()


def _write_fashion(
    root: Path, n_train: int = 40, n_test: int = 20, folder: str = "fashion-mnist"
) -> Path:
    target = root / folder
    target.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        with gzip.open(target / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(idx_images(images))
        with gzip.open(target / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(idx_labels(labels))
    return target


def _write_medmnist(
    root: Path,
    subset: str = "pathmnist",
    size: int = 28,
    channels: int = 3,
    num_classes: int = 9,
    counts: tuple[int, int, int] = (30, 10, 12),
    drop_key: str | None = None,
) -> Path:
    folder = root / "medmnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        shape = (n, size, size) if channels == 1 else (n, size, size, channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % num_classes).reshape(n, 1).astype(np.uint8)
    if drop_key:
        del arrays[drop_key]
    name = f"{subset}.npz" if size == 28 else f"{subset}_{size}.npz"
    path = folder / name
    np.savez(path, **arrays)
    return path


BRAIN_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def _write_brain(root: Path, per_class: tuple[int, int] = (3, 2)) -> Path:
    """``root/brain_tumor_mri/{Training,Testing}/<class>/*.jpg`` with mixed sizes and modes."""
    folder = root / "brain_tumor_mri"
    rng = np.random.default_rng(3)
    sizes = [(40, 52), (80, 80), (33, 61), (120, 90)]
    for split, n in zip(("Training", "Testing"), per_class, strict=True):
        for c, cls in enumerate(BRAIN_CLASSES):
            sub = folder / split / cls
            sub.mkdir(parents=True)
            for i in range(n):
                w, h = sizes[(i + c) % len(sizes)]
                value = 40 + 50 * c  # class-dependent brightness, so labels are checkable
                pixels = np.clip(value + rng.integers(-5, 6, size=(h, w, 3)), 0, 255)
                img = Image.fromarray(pixels.astype(np.uint8), "RGB")
                if i % 2:
                    img = img.convert("L")
                img.save(sub / f"{split[:2]}_{i}.jpg", quality=95)
    return folder


@pytest.fixture
def write_cifar() -> Callable[..., Path]:
    return _write_cifar


@pytest.fixture
def write_fashion() -> Callable[..., Path]:
    return _write_fashion


@pytest.fixture
def write_medmnist() -> Callable[..., Path]:
    return _write_medmnist


@pytest.fixture
def write_brain() -> Callable[..., Path]:
    return _write_brain


@pytest.fixture
def idx_bytes() -> tuple[Callable[..., bytes], Callable[..., bytes]]:
    return idx_images, idx_labels


@pytest.fixture(autouse=True)
def _isolated_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may touch the real ~/.cache/wattwise/data or a user's $WATTWISE_DATA."""
    monkeypatch.delenv("WATTWISE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
