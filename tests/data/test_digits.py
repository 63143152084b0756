"""digits: scikit-learn's 8x8 digits, embedded, the offline default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wattwise.data import DEFAULT_DATASET, load_dataset


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
