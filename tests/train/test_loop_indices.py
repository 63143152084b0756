"""TensorLoader.iter_with_indices: each batch carries its rows' indices in the split."""

from __future__ import annotations

import pytest
import torch

from wattwise.data import AugmentConfig, DatasetSplits, TensorLoader


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("augment", [False, True])
def test_indices_match_the_rows(digits: DatasetSplits, shuffle: bool, augment: bool) -> None:
    split = digits.train
    loader = TensorLoader(
        split,
        100,
        shuffle=shuffle,
        seed=3,
        augment=AugmentConfig(crop_padding=1, hflip=False) if augment else False,
    )
    seen = []
    for x, y, idx in loader.iter_with_indices():
        assert idx.dtype == torch.int64 and idx.shape == y.shape
        assert torch.equal(split.labels[idx], y)
        if not augment:
            assert torch.allclose(x, split.images[idx].float() / 255)
        seen.append(idx)
    order = torch.cat(seen)
    assert torch.equal(order.sort().values, torch.arange(len(split)))  # every row once
    assert torch.equal(order, torch.arange(len(split))) is not shuffle


def test_indices_follow_the_same_sequence_as_plain_iteration(digits: DatasetSplits) -> None:
    a = TensorLoader(digits.train, 64, shuffle=True, seed=5, augment=True)
    b = TensorLoader(digits.train, 64, shuffle=True, seed=5, augment=True)
    for _ in range(2):  # two epochs: both advance the epoch counter alike
        for (xa, ya), (xb, yb, _) in zip(a, b.iter_with_indices(), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.epoch == b.epoch == 2


def test_drop_last_indices(digits: DatasetSplits) -> None:
    loader = TensorLoader(digits.train, 500, shuffle=True, drop_last=True)
    sizes = [len(idx) for _, _, idx in loader.iter_with_indices()]
    assert sizes == [500, 500]
