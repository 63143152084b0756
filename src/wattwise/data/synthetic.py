"""Synthetic, deterministic and learnable images for tests and benchmarks.

Each class has a smooth random prototype pattern (a 4x4 grid of values in [-1, 1] per channel,
upsampled bilinearly); a sample is ``128 + 80 * prototype + 80 * noise * N(0, 1)``, clipped to
0..255. With the default ``noise=0.5`` a small convnet separates the classes in a few epochs,
so tests can check that training learns; ``noise`` makes the task harder. The data depend only
on the options and ``data_seed`` (not on ``seed``, which only drives the validation split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from wattwise.errors import ConfigError

from .registry import DatasetReader, register_dataset
from .types import RawDataset, TensorSplit

DEFAULT_SIZE = 32
_CHUNK = 4096
_GRID = 4


def make_synthetic(
    num_samples: int,
    num_classes: int,
    channels: int,
    image_size: int,
    noise: float,
    data_seed: int,
) -> TensorSplit:
    """Generates ``num_samples`` images with balanced, shuffled labels (see module docstring).

    Returns:
        A split with ``uint8 [num_samples, channels, image_size, image_size]`` images.
    """
    generator = torch.Generator().manual_seed(data_seed)
    grid = torch.rand((num_classes, channels, _GRID, _GRID), generator=generator) * 2 - 1
    prototypes = F.interpolate(
        grid, size=(image_size, image_size), mode="bilinear", align_corners=True
    )
    labels = (torch.arange(num_samples) % num_classes)[
        torch.randperm(num_samples, generator=generator)
    ]
    images = torch.empty((num_samples, channels, image_size, image_size), dtype=torch.uint8)
    for start in range(0, num_samples, _CHUNK):
        chunk_labels = labels[start : start + _CHUNK]
        shape = (chunk_labels.shape[0], channels, image_size, image_size)
        values = 128.0 + 80.0 * prototypes[chunk_labels]
        values += 80.0 * noise * torch.randn(shape, generator=generator)
        images[start : start + _CHUNK] = values.round_().clamp_(0, 255).to(torch.uint8)
    return TensorSplit(images, labels)


@register_dataset("synthetic")
class SyntheticReader(DatasetReader):
    """Generated class-pattern images; no files.

    Options:
        num_samples: Images in train + test (default 2000).
        num_classes: Number of classes (default 10).
        channels: Channels per image (default 3).
        test_fraction: Share of ``num_samples`` in the test split (default 0.2).
        noise: Noise standard deviation relative to the pattern amplitude (default 0.5).
        data_seed: Seed of the generator (default 0).
    """

    folder = None
    cacheable = False  # generating is as fast as loading from disk
    native_size = DEFAULT_SIZE
    option_defaults: ClassVar[dict[str, Any]] = {
        "num_samples": 2000,
        "num_classes": 10,
        "channels": 3,
        "test_fraction": 0.2,
        "noise": 0.5,
        "data_seed": 0,
    }
    summary = "synthetic learnable class patterns (generated)"

    def validate_options(self) -> None:
        o = self.options
        problems = []
        if o["num_classes"] < 2:
            problems.append("num_classes must be at least 2")
        if o["channels"] < 1:
            problems.append("channels must be at least 1")
        if not 0.0 < o["test_fraction"] < 1.0:
            problems.append("test_fraction must be in (0, 1)")
        if o["noise"] < 0:
            problems.append("noise must be >= 0")
        if o["num_samples"] < 2 * o["num_classes"]:
            problems.append("num_samples must be at least 2 * num_classes")
        if problems:
            raise ConfigError(f"synthetic dataset: {'; '.join(problems)}")

    def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
        o = self.options
        data = make_synthetic(
            o["num_samples"],
            o["num_classes"],
            o["channels"],
            image_size or DEFAULT_SIZE,
            float(o["noise"]),
            o["data_seed"],
        )
        num_test = max(1, round(o["num_samples"] * o["test_fraction"]))
        n = len(data)
        return RawDataset(
            train=data.subset(torch.arange(0, n - num_test)),
            test=data.subset(torch.arange(n - num_test, n)),
            class_names=tuple(f"class_{i}" for i in range(o["num_classes"])),
            source=f"synthetic patterns (data_seed={o['data_seed']}, noise={o['noise']})",
            test_note=f"test = last {num_test} of {n} generated samples",
        )
