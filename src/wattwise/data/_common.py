"""Helpers shared by the readers: file checks, checksums, downloads, resizing, splitting, stats."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import urllib.error
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from wattwise.errors import DatasetError

from .types import TensorSplit

log = logging.getLogger(__name__)

#: Images per chunk when resizing (bounds the temporary float copy).
_CHUNK = 2048

#: How the caller asks for missing files to be fetched, in its own words: the Python API's
#: ``download=True`` unless a :func:`download_hint` block says otherwise (the CLI: ``--download``).
_DOWNLOAD_HINT: contextvars.ContextVar[str] = contextvars.ContextVar(
    "download_hint", default="pass download=True"
)


@contextlib.contextmanager
def download_hint(text: str) -> Iterator[None]:
    """Within the block, dataset messages end with ``or <text>`` where they offer a download.

    Args:
        text: How this caller asks for a download, e.g. ``"pass --download"`` (the command
            line) or ``"set download: true"`` (a study file).
    """
    token = _DOWNLOAD_HINT.set(text)
    try:
        yield
    finally:
        _DOWNLOAD_HINT.reset(token)


def or_download(how: str) -> str:
    """``how`` to obtain a dataset by hand, followed by how the caller asks for a download."""
    return f"{how}, or {_DOWNLOAD_HINT.get()}"


def require_file(path: Path, what: str, how: str) -> Path:
    """Returns ``path`` if it is a file; otherwise raises one clear :class:`DatasetError`.

    Args:
        path: The expected file.
        what: Human name of the dataset, e.g. ``CIFAR-10``.
        how: How to obtain the file (a sentence fragment).
    """
    if not path.is_file():
        raise DatasetError(
            f"{what}: expected file {path.name!r} in {path.parent}, not found; {how}"
        )
    return path


def corrupt(path: Path, what: str, problem: str, how: str) -> DatasetError:
    """Builds the one-line error for a file that exists but cannot be decoded."""
    return DatasetError(
        f"{what}: file {path} is corrupt or not in the expected format ({problem}); {how}"
    )


def verify_md5(path: Path, md5: str, what: str, how: str) -> None:
    """Raises :class:`DatasetError` unless ``path`` has the published MD5 checksum."""
    from torchvision.datasets.utils import calculate_md5

    actual = calculate_md5(path)
    if actual != md5:
        raise corrupt(path, what, f"md5 {actual}, published md5 {md5}", how)


def fetch(urls: Sequence[str], folder: Path, filename: str, md5: str, what: str) -> Path:
    """Downloads ``filename`` into ``folder`` from the first of ``urls`` that works.

    Uses torchvision's ``download_url``, which skips a file already present with the right MD5
    and verifies the checksum after downloading.

    Returns:
        The path of the verified file.

    Raises:
        DatasetError: No mirror could be reached, or the download had the wrong checksum.
    """
    from torchvision.datasets.utils import check_integrity, download_url

    path = folder / filename
    errors: list[str] = []
    for url in urls:
        try:
            log.info("downloading %s from %s", filename, url)
            download_url(url, str(folder), filename=filename, md5=md5)
        except (urllib.error.URLError, OSError, RuntimeError, ValueError) as err:
            errors.append(f"{url}: {err}")
            continue
        if check_integrity(str(path), md5):
            return path
        errors.append(f"{url}: md5 mismatch")
    if path.is_file() and not check_integrity(str(path), md5):
        path.unlink()  # a partial or corrupt download must not be mistaken for the dataset later
        detail = "downloaded file had the wrong md5 and was removed"
    else:
        detail = "; ".join(errors)
    raise DatasetError(
        f"{what}: could not download {filename} (md5 {md5}) into {folder}: {detail}; "
        "check the network or place the file there by hand"
    )


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resizes a ``uint8 [N, C, H, W]`` batch to ``size`` x ``size`` pixels.

    Bilinear interpolation with antialiasing (when shrinking), rounded back to uint8; processed
    in chunks so that the float copy stays small.
    """
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].float()
        resized = F.interpolate(
            chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + _CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def resize_split(split: TensorSplit, size: int) -> TensorSplit:
    """Returns ``split`` with its images resized to ``size`` x ``size`` pixels."""
    return TensorSplit(resize_images(split.images, size), split.labels)


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits indices into two parts, taking ``round(fraction * n_c)`` of each class ``c``.

    Deterministic for a given ``seed``; vectorized (no per-sample Python work).

    Args:
        labels: ``int64 [N]`` class indices.
        fraction: Share of each class for the second part, in [0, 1).
        seed: Seed of the permutation that picks which samples go where.

    Returns:
        ``(kept, taken)``: sorted ``int64`` index tensors that partition ``range(N)``.
    """
    n = labels.shape[0]
    if n == 0 or fraction <= 0:
        return torch.arange(n), torch.zeros(0, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    order = torch.argsort(labels[perm], stable=True)
    grouped = perm[order]  # indices grouped by class, random order within each class
    grouped_labels = labels[grouped]
    counts = torch.bincount(grouped_labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[grouped_labels]
    take = torch.round(counts.double() * fraction).long()
    is_taken = rank < take[grouped_labels]
    return grouped[~is_taken].sort().values, grouped[is_taken].sort().values


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``uint8 [N, C, H, W]`` images in [0, 1] units.

    Exact: computed from a 256-bin histogram per channel (fast, no float copy of the images).
    An empty tensor gives mean 0 and std 1; a constant channel gets std 1 (nothing to scale).
    """
    channels = images.shape[1]
    if images.numel() == 0:
        return (0.0,) * channels, (1.0,) * channels
    counts = torch.stack(
        [torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(channels)]
    ).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64, device=counts.device) / 255.0  # GPU images
    total = counts.sum(1)
    mean = (counts * values).sum(1) / total
    var = ((counts * values.square()).sum(1) / total - mean.square()).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def nchw_from_nhwc(array: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` (grey) or ``[N, H, W, C]`` → contiguous ``[N, C, H, W]``."""
    if array.dim() == 3:
        return array.unsqueeze(1).contiguous()
    return array.permute(0, 3, 1, 2).contiguous()
