from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wattwise.data import DEFAULT_DATASET, load_dataset
from wattwise.data._common import stratified_split


def test_digits_is_the_offline_default(tmp_path: Path) -> None:
    assert DEFAULT_DATASET == "digits"
    splits = load_dataset("digits", tmp_path / "unused")
    assert not (tmp_path / "unused").exists()  # embedded: no files, no cache
    info = splits.info
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, 8)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert len(splits.test) == pytest.approx(0.2 * 1797, abs=6)
    assert splits.train.images.max().item() == 255  # 16 -> 255
    assert torch.bincount(splits.test.labels, minlength=10).min() >= 34  # stratified
    assert 0.0 < info.mean[0] < 1.0 and 0.0 < info.std[0] < 1.0


def test_digits_split_is_deterministic_per_seed() -> None:
    a = load_dataset("digits", seed=3)
    b = load_dataset("digits", seed=3)
    c = load_dataset("digits", seed=4)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.test.images, c.test.images)
    assert not torch.equal(a.val.images, c.val.images)


def test_digits_upscaled() -> None:
    splits = load_dataset("digits", image_size=16)
    assert splits.train.images.shape[1:] == (1, 16, 16)
    assert splits.info.image_size == 16


def test_synthetic_is_deterministic_and_configurable() -> None:
    kwargs = {"num_samples": 300, "num_classes": 3, "channels": 2}
    a = load_dataset("synthetic", image_size=12, **kwargs)
    b = load_dataset("synthetic", image_size=12, **kwargs)
    assert torch.equal(a.train.images, b.train.images)
    assert a.train.images.shape[1:] == (2, 12, 12)
    assert a.info.num_classes == 3
    assert len(a.train) + len(a.val) + len(a.test) == 300
    other = load_dataset("synthetic", image_size=12, data_seed=1, **kwargs)
    assert not torch.equal(a.test.images, other.test.images)
    # ``seed`` moves the validation carve but not the generated data.
    reseeded = load_dataset("synthetic", image_size=12, seed=5, **kwargs)
    assert torch.equal(a.test.images, reseeded.test.images)
    assert not torch.equal(a.val.images, reseeded.val.images)


def test_synthetic_is_learnable() -> None:
    """A nearest-class-mean classifier fit on train must beat chance by far on test."""
    splits = load_dataset("synthetic", num_samples=1000, num_classes=5, image_size=16)
    x_train = splits.train.images.flatten(1).float()
    centroids = torch.stack([x_train[splits.train.labels == c].mean(0) for c in range(5)])
    predicted = torch.cdist(splits.test.images.flatten(1).float(), centroids).argmin(1)
    accuracy = (predicted == splits.test.labels).float().mean().item()
    assert accuracy > 0.9
    noisy = load_dataset("synthetic", num_samples=1000, num_classes=5, image_size=16, noise=20.0)
    predicted = torch.cdist(noisy.test.images.flatten(1).float(), centroids).argmin(1)
    assert (predicted == noisy.test.labels).float().mean().item() < accuracy


def test_val_split_is_stratified_disjoint_and_seeded() -> None:
    labels = torch.arange(1000) % 4
    keep, take = stratified_split(labels, 0.1, seed=0)
    assert torch.equal(torch.cat([keep, take]).sort().values, torch.arange(1000))
    assert torch.bincount(labels[take]).tolist() == [25, 25, 25, 25]
    _, take2 = stratified_split(labels, 0.1, seed=0)
    assert torch.equal(take, take2)
    _, take3 = stratified_split(labels, 0.1, seed=1)
    assert not torch.equal(take, take3)
    keep0, take0 = stratified_split(labels, 0.0, seed=0)
    assert len(take0) == 0 and len(keep0) == 1000


def test_val_fraction_controls_loaded_val_split() -> None:
    none = load_dataset("synthetic", num_samples=500, val_fraction=0.0)
    some = load_dataset("synthetic", num_samples=500, val_fraction=0.3)
    assert len(none.val) == 0 and len(none.train) == 400
    assert len(some.val) == 120 and len(some.train) == 280
    # Train mean/std come from the train split only.
    pixels = some.train.images.double() / 255
    assert some.info.mean == pytest.approx(pixels.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert some.info.std == pytest.approx(
        pixels.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-9
    )
