"""load_dataset: the stratified validation carve and the train-split statistics."""

from __future__ import annotations

import pytest
import torch

from wattwise.data import download_hint, load_dataset
from wattwise.data._common import stratified_split
from wattwise.errors import DatasetError


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


@pytest.mark.parametrize("name", ["cifar10", "fashion_mnist", "medmnist:pathmnist"])
def test_the_download_hint_speaks_the_callers_language(name: str, tmp_path) -> None:
    """The Python API says ``download=True``; the command line says ``--download``."""
    with pytest.raises(DatasetError) as api:
        load_dataset(name, tmp_path)
    assert str(api.value).endswith("or pass download=True")
    with download_hint("pass --download"), pytest.raises(DatasetError) as cli:
        load_dataset(name, tmp_path)
    assert str(cli.value).endswith("or pass --download")
    assert "download=True" not in str(cli.value)
    with pytest.raises(DatasetError, match="download=True"):  # the block restored the API's
        load_dataset(name, tmp_path)
