"""The dataset registry: names, options, argument checks and custom registries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wattwise.data import (
    DATASETS,
    DatasetReader,
    DatasetRegistry,
    RawDataset,
    TensorSplit,
    list_datasets,
    load_dataset,
    register_dataset,
)
from wattwise.errors import ConfigError, DatasetError, WattwiseError


def test_list_datasets_names_every_dataset() -> None:
    names = list_datasets()
    for name in ("cifar10", "fashion_mnist", "brain_tumor_mri", "digits", "synthetic"):
        assert name in names
    assert "medmnist:pathmnist" in names and "medmnist:organsmnist" in names
    assert names == sorted(names)
    assert list_datasets("medmnist:*") == [n for n in names if n.startswith("medmnist:")]
    assert len(list_datasets("medmnist:*")) == 11


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("imagenet")
    message = str(err.value)
    assert "imagenet" in message
    for name in ("cifar10", "fashion_mnist", "brain_tumor_mri", "digits", "synthetic", "medmnist"):
        assert name in message
    assert isinstance(err.value, WattwiseError)


def test_names_are_case_insensitive() -> None:
    assert load_dataset("Digits").info.name == "digits"


def test_unknown_and_mistyped_options_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"no option.*colour.*test_fraction"):
        load_dataset("digits", colour="rgb")
    with pytest.raises(ConfigError, match=r"num_classes=.*int"):
        load_dataset("synthetic", num_classes="4")
    with pytest.raises(ConfigError, match="num_classes must be at least 2"):
        load_dataset("synthetic", num_classes=1)


@pytest.mark.parametrize(
    "kwargs",
    [{"val_fraction": 1.0}, {"val_fraction": -0.1}, {"image_size": 0}, {"image_size": 2.5}],
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        load_dataset("digits", **kwargs)


def test_variant_on_plain_dataset_is_refused() -> None:
    with pytest.raises(DatasetError, match="takes no"):
        load_dataset("digits:big")


def test_custom_registry_and_duplicates() -> None:
    registry = DatasetRegistry()

    @register_dataset("tiny", registry=registry)
    class Tiny(DatasetReader):
        folder = None
        cacheable = False

        def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
            split = TensorSplit(torch.zeros((2, 1, 4, 4), dtype=torch.uint8), torch.tensor([0, 1]))
            return RawDataset(train=split, test=split, class_names=("a", "b"))

    assert registry.names() == ["tiny"]
    assert "tiny" in registry and "tiny" not in DATASETS
    assert isinstance(registry.create("tiny"), Tiny)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("tiny", Tiny)
