from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wattwise.data import list_datasets, load_dataset
from wattwise.data.medmnist_info import MEDMNIST_2D
from wattwise.errors import DatasetError


def test_rgb_subset_uses_its_own_val_split(tmp_path: Path, write_medmnist) -> None:
    path = write_medmnist(tmp_path)
    splits = load_dataset("medmnist:pathmnist", tmp_path, val_fraction=0.5, cache=False)

    assert splits.info.name == "medmnist:pathmnist"
    assert splits.info.num_classes == 9
    assert splits.info.in_channels == 3
    assert splits.info.image_size == 28
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 12)
    npz = np.load(path)
    expected = torch.from_numpy(npz["val_images"]).permute(0, 3, 1, 2)
    assert torch.equal(splits.val.images, expected)
    assert splits.val.labels.tolist() == npz["val_labels"][:, 0].tolist()
    assert "val as published" in splits.info.notes


def test_grey_subset(tmp_path: Path, write_medmnist) -> None:
    write_medmnist(tmp_path, subset="breastmnist", channels=1, num_classes=2)
    splits = load_dataset("medmnist:BreastMNIST", tmp_path, cache=False)
    assert splits.info.in_channels == 1
    assert splits.info.class_names == MEDMNIST_2D["breastmnist"]["labels"]
    assert splits.train.images.shape == (30, 1, 28, 28)


def test_image_size_picks_the_published_file(tmp_path: Path, write_medmnist) -> None:
    write_medmnist(tmp_path, size=64)
    splits = load_dataset("medmnist:pathmnist", tmp_path, image_size=64, cache=False)
    assert splits.info.image_size == 64
    resized = load_dataset("medmnist:pathmnist", tmp_path, image_size=48, cache=False)
    assert resized.train.images.shape[1:] == (3, 48, 48)  # read from the 64 px file
    with pytest.raises(DatasetError, match=r"pathmnist_128\.npz"):
        load_dataset("medmnist:pathmnist", tmp_path, image_size=128)


def test_missing_key(tmp_path: Path, write_medmnist) -> None:
    write_medmnist(tmp_path, drop_key="test_labels")
    with pytest.raises(DatasetError, match=r"pathmnist\.npz.*missing keys test_labels"):
        load_dataset("medmnist:pathmnist", tmp_path, cache=False)


def test_wrong_channels_and_labels(tmp_path: Path, write_medmnist) -> None:
    write_medmnist(tmp_path, channels=1)  # pathmnist is RGB
    with pytest.raises(DatasetError, match="train_images"):
        load_dataset("medmnist:pathmnist", tmp_path, cache=False)
    write_medmnist(tmp_path, subset="breastmnist", channels=1, num_classes=5)
    with pytest.raises(DatasetError, match=r"labels outside 0\.\.1"):
        load_dataset("medmnist:breastmnist", tmp_path, cache=False)


def test_not_a_zip(tmp_path: Path) -> None:
    folder = tmp_path / "medmnist"
    folder.mkdir()
    (folder / "dermamnist.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DatasetError, match=r"dermamnist\.npz.*corrupt"):
        load_dataset("medmnist:dermamnist", tmp_path, cache=False)


def test_missing_file_explains_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("medmnist:octmnist", tmp_path)
    message = str(err.value)
    assert "octmnist.npz" in message
    assert str(tmp_path / "medmnist") in message
    assert "zenodo.org/records/10519652/files/octmnist.npz" in message


def test_chestmnist_is_refused_as_multilabel(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"multi-label.*single-label"):
        load_dataset("medmnist:chestmnist", tmp_path)
    assert "medmnist:chestmnist" not in list_datasets()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("medmnist", "name a MedMNIST subset"),
        ("medmnist:organmnist3d", "3D volumes"),
        ("medmnist:nosuchmnist", "unknown MedMNIST subset"),
    ],
)
def test_bad_subset_names(tmp_path: Path, name: str, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        load_dataset(name, tmp_path)


def test_subset_metadata_matches_medmnist() -> None:
    # Class counts and channels of the supported subsets, as published by MedMNIST.
    expected = {
        "pathmnist": (9, 3),
        "dermamnist": (7, 3),
        "octmnist": (4, 1),
        "pneumoniamnist": (2, 1),
        "retinamnist": (5, 3),
        "breastmnist": (2, 1),
        "bloodmnist": (8, 3),
        "tissuemnist": (8, 1),
        "organamnist": (11, 1),
        "organcmnist": (11, 1),
        "organsmnist": (11, 1),
    }
    actual = {
        k: (len(v["labels"]), v["n_channels"]) for k, v in MEDMNIST_2D.items() if k != "chestmnist"
    }
    assert actual == expected
    assert all(len(v["md5"]) == 4 for v in MEDMNIST_2D.values())


def test_verify_checks_published_md5(tmp_path: Path, write_medmnist) -> None:
    write_medmnist(tmp_path)
    with pytest.raises(DatasetError, match=r"pathmnist\.npz.*published md5 a8b06965"):
        load_dataset("medmnist:pathmnist", tmp_path, verify=True)
