from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wattwise.data import AugmentConfig, TensorLoader, TensorSplit, augment_batch, load_dataset


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic", num_samples=250, num_classes=5, image_size=16)


def _collect(loader: TensorLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_batch_shapes_and_len(splits) -> None:
    loader = TensorLoader(splits.train, 64)
    batches = list(loader)
    n = len(splits.train)  # 180
    assert len(loader) == len(batches) == 3
    assert [len(y) for _, y in batches] == [64, 64, n - 128]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (64, 3, 16, 16)
    assert y.dtype == torch.int64
    assert torch.equal(y, splits.train.labels[:64])
    assert x.min().item() >= 0.0 and x.max().item() <= 1.0  # no mean/std: just scaled to [0, 1]
    assert torch.allclose(x, splits.train.images[:64].float() / 255)


def test_drop_last(splits) -> None:
    loader = TensorLoader(splits.train, 64, drop_last=True, shuffle=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 2
    assert all(len(y) == 64 for _, y in batches)


def test_normalization_is_zero_mean_unit_std_on_train(splits) -> None:
    x, _ = _collect(TensorLoader.from_splits(splits, "train", 50))
    assert x.mean(dim=(0, 2, 3)).abs().max().item() < 1e-4
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max().item() < 1e-3


def test_shuffle_is_a_seeded_permutation(splits) -> None:
    x_a, y_a = _collect(TensorLoader(splits.train, 32, shuffle=True, seed=7))
    x_b, y_b = _collect(TensorLoader(splits.train, 32, shuffle=True, seed=7))
    _, y_c = _collect(TensorLoader(splits.train, 32, shuffle=True, seed=8))
    assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
    assert not torch.equal(y_a, y_c)
    assert torch.equal(y_a.sort().values, splits.train.labels.sort().values)


def test_epochs_differ_and_set_epoch_replays(splits) -> None:
    loader = TensorLoader(splits.train, 32, shuffle=True, augment=True, seed=1)
    epoch0 = _collect(loader)
    epoch1 = _collect(loader)
    assert not torch.equal(epoch0[1], epoch1[1])
    loader.set_epoch(0)
    replay = _collect(loader)
    assert torch.equal(epoch0[0], replay[0]) and torch.equal(epoch0[1], replay[1])


def test_augmentation_changes_images_keeps_shape_and_labels(splits) -> None:
    plain_x, plain_y = _collect(TensorLoader(splits.train, 40))
    aug_x, aug_y = _collect(TensorLoader(splits.train, 40, augment=True, seed=3))
    assert aug_x.shape == plain_x.shape
    assert torch.equal(aug_y, plain_y)
    changed = (aug_x != plain_x).flatten(1).any(1).float().mean().item()
    assert changed > 0.9  # 1/81 of crops are centred, and half of those are not flipped
    again_x, _ = _collect(TensorLoader(splits.train, 40, augment=True, seed=3))
    assert torch.equal(aug_x, again_x)


def test_crop_is_a_window_of_the_padded_image() -> None:
    images = torch.randint(0, 256, (32, 2, 6, 6), dtype=torch.uint8)
    config = AugmentConfig(crop_padding=2, hflip=False)
    out = augment_batch(images, config, torch.Generator().manual_seed(0))
    padded = F.pad(images, (2, 2, 2, 2))
    offsets = set()
    for i in range(32):  # reference: find the window, one image at a time
        matches = [
            (oy, ox)
            for oy in range(5)
            for ox in range(5)
            if torch.equal(out[i], padded[i, :, oy : oy + 6, ox : ox + 6])
        ]
        assert matches, f"image {i} is not a crop of its padded original"
        offsets.update(matches)
    assert len(offsets) > 5  # offsets are random, not one fixed shift


def test_flip_only_mirrors() -> None:
    images = torch.randint(0, 256, (64, 1, 5, 5), dtype=torch.uint8)
    out = augment_batch(images, AugmentConfig(crop_padding=0), torch.Generator().manual_seed(0))
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 10 < int(mirrored.sum()) < 54


def test_channels_last(splits) -> None:
    x, _ = next(iter(TensorLoader(splits.train, 8, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(iter(TensorLoader(splits.train, 8)))
    assert not x.is_contiguous(memory_format=torch.channels_last)


def test_bad_arguments(splits) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(splits.train, 0)
    with pytest.raises(ValueError, match="both mean and std"):
        TensorLoader(splits.train, 8, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="3 channels"):
        TensorLoader(splits.train, 8, mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match="crop_padding"):
        AugmentConfig(crop_padding=-1)
    with pytest.raises(ValueError, match="which"):
        TensorLoader.from_splits(splits, "holdout", 8)


def test_empty_split_yields_nothing() -> None:
    empty = TensorSplit(
        torch.zeros((0, 1, 4, 4), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    )
    loader = TensorLoader(empty, 4)
    assert len(loader) == 0 and list(loader) == []
