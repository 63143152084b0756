from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from wattwise.data import cifar10, load_dataset
from wattwise.errors import DatasetError


def test_reads_published_layout(tmp_path: Path, write_cifar) -> None:
    folder = write_cifar(tmp_path)
    splits = load_dataset("cifar10", tmp_path, val_fraction=0.2, cache=False)

    assert splits.info.name == "cifar10"
    assert splits.info.num_classes == 10
    assert splits.info.in_channels == 3
    assert splits.info.image_size == 32
    assert splits.info.class_names[0] == "airplane"
    assert len(splits.train) + len(splits.val) == 5 * 20
    assert len(splits.val) == 20  # 20 % of each of the 10 classes (10 images each)
    assert len(splits.test) == 30
    assert splits.train.images.dtype == torch.uint8
    assert splits.train.images.shape[1:] == (3, 32, 32)

    # Row-major, channel-planar layout: the first 1024 bytes are the red plane.
    batch = pickle.loads((folder / "test_batch").read_bytes())
    first = batch[b"data"][0]
    assert torch.equal(splits.test.images[0, 0, 0], torch.from_numpy(first[:32]))
    assert torch.equal(splits.test.images[0, 2, 31], torch.from_numpy(first[-32:]))
    assert splits.test.labels.tolist() == batch[b"labels"]


def test_unpickler_refuses_code(tmp_path: Path, write_cifar) -> None:
    folder = write_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_2.*not allowed"):
        load_dataset("cifar10", tmp_path, cache=False)
    assert not marker.exists()


def test_unpickler_refuses_non_latin1_codec() -> None:
    payload = pickle.dumps({b"data": b"\x00\xff"}, protocol=2)  # uses _codecs.encode(latin1)
    assert cifar10._CifarUnpickler(io.BytesIO(payload), encoding="bytes").load() == {
        b"data": b"\x00\xff"
    }
    evil = payload.replace(b"latin1", b"rot_13")
    with pytest.raises(pickle.UnpicklingError, match="rot_13"):
        cifar10._CifarUnpickler(io.BytesIO(evil), encoding="bytes").load()


def test_missing_batch_names_file_and_fix(tmp_path: Path, write_cifar) -> None:
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", tmp_path)
    message = str(err.value)
    assert "data_batch_3" in message
    assert str(folder) in message
    assert "download=True" in message and cifar10.URL in message
    assert "\n" not in message


def test_truncated_pickle_is_corrupt(tmp_path: Path, write_cifar) -> None:
    folder = write_cifar(tmp_path)
    path = folder / "data_batch_1"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match=r"data_batch_1.*corrupt"):
        load_dataset("cifar10", tmp_path, cache=False)


def test_wrong_shape_is_corrupt(tmp_path: Path, write_cifar) -> None:
    folder = write_cifar(tmp_path)
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DatasetError, match=r"test_batch.*3072"):
        load_dataset("cifar10", tmp_path, cache=False)


def test_verify_reports_md5_mismatch(tmp_path: Path, write_cifar) -> None:
    write_cifar(tmp_path)
    with pytest.raises(DatasetError, match="md5"):
        load_dataset("cifar10", tmp_path, cache=False, verify=True)


def _fake_tarball(tmp_path: Path, write_cifar) -> bytes:
    source = write_cifar(tmp_path / "src")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
    return buffer.getvalue()


@pytest.fixture
def fake_network(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Serves URL -> bytes through torchvision's real download helpers, without a network."""
    import torchvision.datasets.utils as tv_utils

    served: dict[str, bytes] = {}

    def retrieve(url: str, filename: str, chunk_size: int = 0) -> None:
        if url not in served:
            raise OSError(f"unreachable {url}")
        Path(filename).write_bytes(served[url])

    monkeypatch.setattr(tv_utils, "_urlretrieve", retrieve)
    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    return served


def test_download_extracts_and_loads(
    tmp_path: Path, write_cifar, fake_network, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets.utils import calculate_md5

    payload = _fake_tarball(tmp_path, write_cifar)
    fake_network[cifar10.URL] = payload
    probe = tmp_path / "probe.tgz"
    probe.write_bytes(payload)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", calculate_md5(probe))
    root = tmp_path / "root"
    splits = load_dataset("cifar10", root, download=True, cache=False)
    assert len(splits.test) == 30
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_download_with_bad_md5_fails_and_removes_file(
    tmp_path: Path, write_cifar, fake_network
) -> None:
    fake_network[cifar10.URL] = _fake_tarball(tmp_path, write_cifar)  # not the published md5
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match=f"{cifar10.ARCHIVE}.*md5"):
        load_dataset("cifar10", root, download=True)
    assert not (root / cifar10.ARCHIVE).exists()
