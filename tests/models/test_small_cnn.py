"""small_cnn: size, input range and that it actually learns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wattwise.models import SmallCNN, count_parameters, create_model


@pytest.mark.parametrize("size", [8, 16, 28, 32, 64, 96, 224])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_any_size_from_8_to_224(size: int, in_channels: int) -> None:
    model = create_model("small_cnn", num_classes=7, in_channels=in_channels, input_size=size)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, in_channels, size, size)).shape == (2, 7)


def test_parameter_budget() -> None:
    assert 20_000 <= count_parameters(create_model("small_cnn", num_classes=10)) <= 100_000
    assert count_parameters(create_model("small_cnn", num_classes=10, in_channels=1)) >= 20_000
    assert isinstance(create_model("small_cnn", num_classes=10), SmallCNN)


def test_width_scales_channels() -> None:
    model = create_model("small_cnn", num_classes=10, width=2.0)
    assert [block[0].out_channels for block in model.features] == [32, 64, 128, 128]


def _two_blob_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: bright left half; class 1: bright right half; both with strong noise."""
    labels = torch.randint(0, 2, (n,), generator=generator)
    images = 0.5 * torch.randn(n, 1, 16, 16, generator=generator)
    images[labels == 0, :, :, :8] += 1.0
    images[labels == 1, :, :, 8:] += 1.0
    return images, labels


def test_learns_a_separable_task_quickly() -> None:
    generator = torch.Generator().manual_seed(0)
    images, labels = _two_blob_task(128, generator)
    model = create_model("small_cnn", num_classes=2, in_channels=1, input_size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()

    def accuracy() -> float:
        with torch.no_grad():
            return float((model.eval()(images).argmax(1) == labels).float().mean())

    assert accuracy() < 0.8  # not solved by chance at initialization
    model.train()
    for step in range(40):
        batch = slice((step * 32) % 128, (step * 32) % 128 + 32)
        optimizer.zero_grad()
        loss = loss_fn(model(images[batch]), labels[batch])
        loss.backward()
        optimizer.step()
    assert accuracy() > 0.9
    test_images, test_labels = _two_blob_task(128, generator)
    with torch.no_grad():
        held_out = (model.eval()(test_images).argmax(1) == test_labels).float().mean()
    assert float(held_out) > 0.9
