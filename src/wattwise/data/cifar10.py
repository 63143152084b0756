"""CIFAR-10 from the published "python version" pickle batches.

Expected layout under the data root (what ``cifar-10-python.tar.gz`` extracts to)::

    cifar-10-batches-py/
        data_batch_1 ... data_batch_5   # 10000 images each
        test_batch                      # 10000 images
        batches.meta                    # label names

Each batch is a pickled dict with bytes keys: ``b"data"`` (uint8 ``[10000, 3072]``, the 1024
red, then green, then blue values of a 32x32 image, row-major) and ``b"labels"`` (list of ints).

Pickle can run arbitrary code, and CIFAR's format *is* pickle, so the batches are loaded with
:class:`_CifarUnpickler`, which resolves only the few globals that rebuild a numpy array
(``numpy ... _reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) and ``_codecs.encode``
restricted to latin-1 (how Python 3 protocol-2 pickles store bytes). Any other global is refused,
so a tampered file fails with a :class:`DatasetError` instead of executing code.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from wattwise.errors import DatasetError

from ._common import corrupt, fetch, or_download, require_file, verify_md5
from .registry import DatasetReader, register_dataset
from .types import RawDataset, TensorSplit

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
#: Published MD5 of each extracted file (as listed by torchvision.datasets.CIFAR10).
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_WHAT = "CIFAR-10"


def _reconstruct_function() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, dicts, lists, ints and bytes."""

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct_function(),
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct_function(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def load_pickle(path: Path, how: str) -> dict[bytes, Any]:
    """Loads one CIFAR pickle with the restricted unpickler; Python 2 strings come back as bytes."""
    try:
        obj = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise corrupt(path, _WHAT, f"cannot unpickle: {err}", how) from err
    if not isinstance(obj, dict):
        raise corrupt(path, _WHAT, f"expected a dict, found {type(obj).__name__}", how)
    return obj


def _read_batch(path: Path, how: str) -> TensorSplit:
    batch = load_pickle(path, how)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if data is None or labels is None:
        raise corrupt(path, _WHAT, "missing b'data' or b'labels'", how)
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise corrupt(
            path, _WHAT, f"b'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]", how
        )
    labels_arr = np.asarray(labels)
    if labels_arr.shape != (data.shape[0],) or not np.issubdtype(labels_arr.dtype, np.integer):
        raise corrupt(
            path,
            _WHAT,
            f"{labels_arr.shape[0] if labels_arr.ndim else 0} labels for {data.shape[0]} images",
            how,
        )
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() >= len(CLASS_NAMES)):
        raise corrupt(path, _WHAT, "labels outside 0..9", how)
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return TensorSplit(images, torch.from_numpy(labels_arr.astype(np.int64)))


def _concat(parts: list[TensorSplit]) -> TensorSplit:
    return TensorSplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


@register_dataset("cifar10")
class Cifar10Reader(DatasetReader):
    """CIFAR-10: 60000 32x32 RGB images in 10 classes (50000 train, 10000 test).

    Options:
        verify: Check every file's published MD5 on each load (about 0.5 s), cached or not;
            off by default because the format checks catch truncation. Downloads are always
            verified.
    """

    folder = FOLDER
    native_size = 32
    option_defaults: ClassVar[dict[str, Any]] = {"verify": False}
    summary = "CIFAR-10, 32x32 RGB, 10 classes (python pickle batches)"

    def how_to_obtain(self, folder: Path) -> str:
        return or_download(
            f"download {URL} (md5 {ARCHIVE_MD5}) and extract it into {folder.parent}"
        )

    def source_files(self, folder: Path, image_size: int | None) -> list[Path]:
        how = self.how_to_obtain(folder)
        files = [require_file(folder / n, _WHAT, how) for n in (*TRAIN_FILES, "test_batch")]
        if self.options["verify"]:
            for name, md5 in FILE_MD5.items():
                verify_md5(require_file(folder / name, _WHAT, how), md5, _WHAT, how)
        meta = folder / "batches.meta"
        return [*files, meta] if meta.is_file() else files

    def download(self, folder: Path, image_size: int | None) -> None:
        from torchvision.datasets.utils import extract_archive

        if all((folder / name).is_file() for name in FILE_MD5):
            return
        archive = fetch([URL], folder.parent, ARCHIVE, ARCHIVE_MD5, _WHAT)
        try:
            extract_archive(str(archive), str(folder.parent))
        except (OSError, EOFError, ValueError) as err:
            raise corrupt(
                archive, _WHAT, f"cannot extract: {err}", "delete it and download again"
            ) from err

    def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
        if folder is None:
            raise ValueError("CIFAR-10 needs a folder")
        how = self.how_to_obtain(folder)
        train = _concat([_read_batch(folder / name, how) for name in TRAIN_FILES])
        test = _read_batch(folder / "test_batch", how)
        return RawDataset(
            train=train,
            test=test,
            class_names=self._class_names(folder / "batches.meta", how),
            source=f"CIFAR-10 python batches in {folder}",
        )

    @staticmethod
    def _class_names(meta_path: Path, how: str) -> tuple[str, ...]:
        if not meta_path.is_file():
            return CLASS_NAMES
        names = load_pickle(meta_path, how).get(b"label_names")
        if not isinstance(names, list) or len(names) != len(CLASS_NAMES):
            raise corrupt(meta_path, _WHAT, "b'label_names' is not a list of 10 names", how)
        try:
            return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        except UnicodeDecodeError as err:
            raise DatasetError(f"{_WHAT}: bad label name in {meta_path}: {err}") from err
