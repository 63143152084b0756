"""scikit-learn's embedded handwritten digits: the default offline dataset.

1797 grey 8x8 images of the digits 0..9 ship inside scikit-learn (no download, no data root).
Pixel values 0..16 are scaled to 0..255 (``round(v * 255 / 16)``). There is no official test
split: a stratified ``test_fraction`` (default 20 %) is drawn with ``seed``, and validation is then
carved from the rest. ``image_size`` upsamples with bilinear interpolation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from wattwise.errors import ConfigError

from ._common import stratified_split
from .registry import DatasetReader, register_dataset
from .types import RawDataset, TensorSplit


@register_dataset("digits")
class DigitsReader(DatasetReader):
    """scikit-learn digits: 1797 8x8 grey images, 10 classes, embedded (offline).

    Options:
        test_fraction: Share of each class held out as the test split, in (0, 1).
    """

    folder = None
    cacheable = False  # decoding takes milliseconds, and the split depends on the seed
    native_size = 8
    option_defaults: ClassVar[dict[str, Any]] = {"test_fraction": 0.2}
    summary = "scikit-learn digits, 8x8 grey, 10 classes (embedded, offline)"

    def validate_options(self) -> None:
        if not 0.0 < self.options["test_fraction"] < 1.0:
            raise ConfigError(
                f"option test_fraction={self.options['test_fraction']} of digits must be in (0, 1)"
            )

    def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
        images = torch.from_numpy(pixels.astype(np.uint8)).unsqueeze(1).contiguous()
        labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
        train_idx, test_idx = stratified_split(labels, self.options["test_fraction"], seed)
        everything = TensorSplit(images, labels)
        return RawDataset(
            train=everything.subset(train_idx),
            test=everything.subset(test_idx),
            class_names=tuple(str(d) for d in range(10)),
            source="sklearn.datasets.load_digits (embedded)",
            test_note=(
                f"test = {self.options['test_fraction']:g} of each class (stratified, seed {seed})"
            ),
        )
