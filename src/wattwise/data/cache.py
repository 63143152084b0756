"""Disk cache of decoded datasets: decode once, then load uint8 tensors in a fraction of a second.

A cache file is ``<root>/.wattwise-cache/<name>-<options key>-<source key>.pt``, written with
:func:`torch.save` and read with ``torch.load(weights_only=True)`` (tensors, strings and lists
only; nothing is executed). The options key hashes the dataset name, the variant, the options
that change decoded content and ``image_size``; the source key hashes the relative path, size and
modification time of every source file, so replacing or touching a file invalidates the entry.
Writing a new entry removes older entries with the same options key. A cache that cannot be
written (read-only root) or read (corrupt file) is logged in one line and skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .root import resolve_data_root
from .types import RawDataset, TensorSplit

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".wattwise-cache"
#: Bumped whenever the decoded content or the file layout of the cache changes.
CACHE_FORMAT = 1


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def cache_path(
    root: Path,
    name: str,
    options: dict[str, Any],
    image_size: int | None,
    files: Sequence[Path],
) -> Path:
    """Where the decoded form of a dataset is cached.

    Args:
        root: Data root; the cache lives in ``root / .wattwise-cache``.
        name: Full dataset name (``medmnist:pathmnist``).
        options: Reader options that change decoded content.
        image_size: Requested image side in pixels, or ``None``.
        files: Source files; their sizes and modification times (ns) key the entry.
    """
    options_key = _digest(
        {"format": CACHE_FORMAT, "name": name, "options": options, "image_size": image_size}
    )
    sources = []
    for f in files:
        stat = f.stat()
        try:
            rel = str(f.relative_to(root))
        except ValueError:
            rel = str(f)
        sources.append((rel, stat.st_size, stat.st_mtime_ns))
    return root / CACHE_DIRNAME / f"{_slug(name)}-{options_key}-{_digest(sources)}.pt"


def _pack(split: TensorSplit | None, prefix: str, out: dict[str, Any]) -> None:
    if split is not None:
        out[f"{prefix}_images"] = split.images
        out[f"{prefix}_labels"] = split.labels


def _unpack(obj: dict[str, Any], prefix: str) -> TensorSplit | None:
    if f"{prefix}_images" not in obj:
        return None
    return TensorSplit(obj[f"{prefix}_images"], obj[f"{prefix}_labels"])


def save_cached(path: Path, raw: RawDataset) -> bool:
    """Writes ``raw`` to ``path`` atomically; returns ``False`` (and logs) if it cannot."""
    obj: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "class_names": list(raw.class_names),
        "source": raw.source,
        "test_note": raw.test_note,
    }
    for prefix in ("train", "val", "test"):
        _pack(getattr(raw, prefix), prefix, obj)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(obj, fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        stem_prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(f"{stem_prefix}*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not write dataset cache %s: %s", path, err)
        return False
    return True


def load_cached(path: Path) -> RawDataset | None:
    """Reads a cache entry; ``None`` if absent, from another format, or unreadable."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != CACHE_FORMAT:
            return None
        train, test = _unpack(obj, "train"), _unpack(obj, "test")
        if train is None or test is None:
            return None
        return RawDataset(
            train=train,
            test=test,
            val=_unpack(obj, "val"),
            class_names=tuple(obj["class_names"]),
            source=str(obj["source"]),
            test_note=str(obj["test_note"]),
        )
    except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
        log.warning(
            "ignoring unreadable dataset cache %s (%s); decoding the dataset again",
            path,
            _reason(err),
        )
        return None


def _reason(err: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words on one line (torch's text runs to many)."""
    if isinstance(err, pickle.UnpicklingError):
        if "Unsupported global" in str(err):
            return "it holds objects that are not plain tensors, refused by weights_only=True"
        return "not a file written by torch.save"
    if isinstance(err, EOFError) or "zip archive" in str(err):
        return f"truncated or corrupt: {type(err).__name__}"
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
    first = lines[0].split(". ")[0] if lines else ""
    return f"{type(err).__name__}: {first}"[:200] if first else type(err).__name__


def clear_cache(root: str | Path | None = None, name: str | None = None) -> int:
    """Deletes cached datasets under a data root.

    Args:
        root: Data root (resolved by :func:`wattwise.data.resolve_data_root`).
        name: Only this dataset's entries (full name, e.g. ``medmnist:pathmnist``); all if ``None``.

    Returns:
        The number of files removed.
    """
    folder = resolve_data_root(root) / CACHE_DIRNAME
    if not folder.is_dir():
        return 0
    pattern = f"{_slug(name.lower())}-*.pt" if name else "*.pt"
    removed = 0
    for path in folder.glob(pattern):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
