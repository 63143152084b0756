from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from wattwise.data import fashion_mnist, load_dataset
from wattwise.errors import DatasetError


def _rewrite(path: Path, raw: bytes) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(raw)


def test_reads_gzipped_idx(tmp_path: Path, write_fashion) -> None:
    folder = write_fashion(tmp_path)
    splits = load_dataset("fashion_mnist", tmp_path, val_fraction=0.25, cache=False)

    assert splits.info.in_channels == 1
    assert splits.info.image_size == 28
    assert splits.info.class_names[-1] == "Ankle boot"
    assert len(splits.train) == 30 and len(splits.val) == 10 and len(splits.test) == 20
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as fh:
        raw = fh.read()
    expected = np.frombuffer(raw, np.uint8, offset=16).reshape(20, 1, 28, 28)
    assert torch.equal(splits.test.images, torch.from_numpy(expected.copy()))
    assert splits.test.labels.tolist() == [i % 10 for i in range(20)]


def test_torchvision_layout_is_accepted(tmp_path: Path, write_fashion) -> None:
    write_fashion(tmp_path, folder="FashionMNIST/raw")
    splits = load_dataset("fashion_mnist", tmp_path, cache=False)
    assert len(splits.test) == 20
    assert "FashionMNIST" in splits.info.source


def test_bad_magic(tmp_path: Path, write_fashion, idx_bytes) -> None:
    images, _ = idx_bytes
    folder = write_fashion(tmp_path)
    _rewrite(folder / "train-images-idx3-ubyte.gz", images(np.zeros((40, 28, 28)), magic=2049))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*magic number 2049"):
        load_dataset("fashion_mnist", tmp_path, cache=False)


def test_truncated_gzip(tmp_path: Path, write_fashion) -> None:
    folder = write_fashion(tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz.*gzip"):
        load_dataset("fashion_mnist", tmp_path, cache=False)


def test_length_mismatch(tmp_path: Path, write_fashion, idx_bytes) -> None:
    images, labels = idx_bytes
    folder = write_fashion(tmp_path)
    _rewrite(folder / "t10k-images-idx3-ubyte.gz", images(np.zeros((20, 28, 28)))[:-5])
    with pytest.raises(DatasetError, match="header says 20x28x28"):
        load_dataset("fashion_mnist", tmp_path, cache=False)
    _rewrite(folder / "t10k-images-idx3-ubyte.gz", images(np.zeros((20, 28, 28))))
    _rewrite(folder / "t10k-labels-idx1-ubyte.gz", labels(np.zeros(19)))
    with pytest.raises(DatasetError, match="19 labels for 20 images"):
        load_dataset("fashion_mnist", tmp_path, cache=False)


def test_missing_file(tmp_path: Path, write_fashion) -> None:
    folder = write_fashion(tmp_path)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion_mnist", tmp_path)
    assert "train-labels-idx1-ubyte.gz" in str(err.value)
    assert str(folder) in str(err.value)
    assert "download=True" in str(err.value)


def test_download_tries_mirrors_and_verifies(
    tmp_path: Path, write_fashion, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.utils as tv_utils
    from torchvision.datasets.utils import calculate_md5

    source = write_fashion(tmp_path / "src")
    asked: list[str] = []

    def retrieve(url: str, filename: str, chunk_size: int = 0) -> None:
        asked.append(url)
        if url.startswith(fashion_mnist.MIRRORS[0]):
            raise OSError("mirror down")
        Path(filename).write_bytes((source / Path(url).name).read_bytes())

    monkeypatch.setattr(tv_utils, "_urlretrieve", retrieve)
    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)

    root = tmp_path / "root"
    with pytest.raises(DatasetError, match="md5"):  # the fixture is not the published data
        load_dataset("fashion_mnist", root, download=True)
    assert any(u.startswith(fashion_mnist.MIRRORS[1]) for u in asked)

    md5s = {name: calculate_md5(source / name) for name in fashion_mnist.FILE_MD5}
    monkeypatch.setattr(fashion_mnist, "FILE_MD5", md5s)
    splits = load_dataset("fashion_mnist", root, download=True, cache=False)
    assert len(splits.test) == 20


def test_verify_checks_published_md5(tmp_path: Path, write_fashion) -> None:
    write_fashion(tmp_path)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*published md5 8d4fb7e6"):
        load_dataset("fashion_mnist", tmp_path, verify=True)
