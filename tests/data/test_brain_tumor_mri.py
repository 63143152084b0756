from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from wattwise.data import load_dataset
from wattwise.data.brain_tumor_mri import KAGGLE_URL
from wattwise.errors import ConfigError, DatasetError

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def test_default_grayscale_64(tmp_path: Path, write_brain) -> None:
    write_brain(tmp_path)
    splits = load_dataset("brain_tumor_mri", tmp_path, val_fraction=0.0, cache=False)

    assert splits.info.class_names == CLASSES
    assert splits.info.in_channels == 1
    assert splits.info.image_size == 64
    assert splits.train.images.shape == (12, 1, 64, 64)
    assert splits.test.images.shape == (8, 1, 64, 64)
    assert len(splits.val) == 0
    # The fixture makes class c about 40 + 50 c bright: labels follow the folders.
    means = splits.train.images.float().mean(dim=(1, 2, 3))
    for c in range(4):
        class_mean = means[splits.train.labels == c].mean().item()
        assert abs(class_mean - (40 + 50 * c)) < 8


def test_rgb_and_size(tmp_path: Path, write_brain) -> None:
    write_brain(tmp_path)
    splits = load_dataset("brain_tumor_mri", tmp_path, image_size=24, color="rgb", cache=False)
    assert splits.info.in_channels == 3
    assert splits.train.images.shape[1:] == (3, 24, 24)
    assert splits.info.std != (1.0, 1.0, 1.0)


def test_bad_color_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grayscale"):
        load_dataset("brain_tumor_mri", tmp_path, color="cmyk")


def test_empty_class_folder(tmp_path: Path, write_brain) -> None:
    folder = write_brain(tmp_path)
    for f in (folder / "Testing" / "notumor").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"Testing/notumor has no images"):
        load_dataset("brain_tumor_mri", tmp_path)


def test_classes_must_match_between_splits(tmp_path: Path, write_brain) -> None:
    folder = write_brain(tmp_path)
    shutil.rmtree(folder / "Testing" / "pituitary")
    with pytest.raises(DatasetError, match="class folders differ"):
        load_dataset("brain_tumor_mri", tmp_path)


def test_corrupt_image(tmp_path: Path, write_brain) -> None:
    folder = write_brain(tmp_path)
    bad = folder / "Training" / "glioma" / "Tr_0.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DatasetError, match=r"Tr_0\.jpg.*cannot decode"):
        load_dataset("brain_tumor_mri", tmp_path, cache=False)


def test_missing_dataset_and_no_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("brain_tumor_mri", tmp_path)
    assert "brain_tumor_mri" in str(err.value) and KAGGLE_URL in str(err.value)
    with pytest.raises(DatasetError, match=r"cannot be downloaded automatically.*Kaggle"):
        load_dataset("brain_tumor_mri", tmp_path, download=True)


def test_decoded_once_then_cached(tmp_path: Path, write_brain) -> None:
    write_brain(tmp_path)
    first = load_dataset("brain_tumor_mri", tmp_path, image_size=16)
    assert len(list((tmp_path / ".wattwise-cache").glob("brain_tumor_mri-*.pt"))) == 1
    second = load_dataset("brain_tumor_mri", tmp_path, image_size=16)
    assert torch.equal(first.train.images, second.train.images)


def _apple_double(name: str) -> bytes:
    """A macOS AppleDouble sidecar (``._<name>``): magic, version, one Finder-info entry."""
    header = b"\x00\x05\x16\x07" + b"\x00\x02\x00\x00" + b"Mac OS X        " + b"\x00\x01"
    entry = b"\x00\x00\x00\x09" + b"\x00\x00\x00\x32" + b"\x00\x00\x00\x20"
    return header + entry + b"\x00" * 32 + name.encode()


def test_macos_sidecar_and_hidden_files_are_skipped(tmp_path: Path, write_brain) -> None:
    """A folder copied from a Mac holds ``._x.jpg`` AppleDouble files and ``.DS_Store``."""
    folder = write_brain(tmp_path)
    for image in list(folder.rglob("*.jpg")):
        (image.parent / f"._{image.name}").write_bytes(_apple_double(image.name))
    for sub in [folder, *folder.iterdir(), *folder.glob("*/*")]:
        (sub / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 64)
    (folder / "Training" / "._glioma").write_bytes(_apple_double("glioma"))
    splits = load_dataset("brain_tumor_mri", tmp_path, val_fraction=0.0)
    assert splits.info.class_names == CLASSES
    assert splits.train.images.shape == (12, 1, 64, 64)
    assert splits.test.images.shape == (8, 1, 64, 64)
