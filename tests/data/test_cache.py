from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import pytest
import torch

from wattwise.data import CACHE_DIRNAME, clear_cache, load_dataset
from wattwise.data.cifar10 import Cifar10Reader
from wattwise.errors import DatasetError


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the CIFAR-10 decoder."""
    calls: list[int] = []
    original = Cifar10Reader.read

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Cifar10Reader, "read", counting)
    return calls


def _entries(root: Path) -> list[Path]:
    return sorted((root / CACHE_DIRNAME).glob("*.pt"))


def test_second_load_hits_the_cache(tmp_path: Path, write_cifar, count_reads) -> None:
    write_cifar(tmp_path)
    first = load_dataset("cifar10", tmp_path)
    assert len(count_reads) == 1
    assert len(_entries(tmp_path)) == 1
    second = load_dataset("cifar10", tmp_path, seed=1)  # seed only moves the val carve
    assert len(count_reads) == 1
    assert torch.equal(first.test.images, second.test.images)
    assert torch.equal(
        torch.cat([first.train.images, first.val.images]).sum(0),
        torch.cat([second.train.images, second.val.images]).sum(0),
    )
    assert first.info.class_names == second.info.class_names
    assert first.info.source == second.info.source


def test_changed_source_invalidates(tmp_path: Path, write_cifar, count_reads) -> None:
    folder = write_cifar(tmp_path)
    load_dataset("cifar10", tmp_path)
    old_entry = _entries(tmp_path)
    batch = folder / "data_batch_4"
    stat = batch.stat()
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_dataset("cifar10", tmp_path)
    assert len(count_reads) == 2
    new_entry = _entries(tmp_path)
    assert len(new_entry) == 1 and new_entry != old_entry  # the stale entry was replaced


def test_options_get_their_own_entry(tmp_path: Path, write_cifar, count_reads) -> None:
    write_cifar(tmp_path)
    small = load_dataset("cifar10", tmp_path, image_size=16)
    load_dataset("cifar10", tmp_path)
    assert len(count_reads) == 2 and len(_entries(tmp_path)) == 2
    again = load_dataset("cifar10", tmp_path, image_size=16)
    assert len(count_reads) == 2
    assert again.train.images.shape[-1] == 16 and torch.equal(again.test.images, small.test.images)


def test_cache_false_neither_reads_nor_writes(tmp_path: Path, write_cifar, count_reads) -> None:
    write_cifar(tmp_path)
    load_dataset("cifar10", tmp_path)
    load_dataset("cifar10", tmp_path, cache=False)
    assert len(count_reads) == 2
    clear_cache(tmp_path)
    load_dataset("cifar10", tmp_path, cache=False)
    assert _entries(tmp_path) == []


def test_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path, write_cifar, count_reads) -> None:
    write_cifar(tmp_path)
    load_dataset("cifar10", tmp_path)
    (entry,) = _entries(tmp_path)
    entry.write_bytes(b"garbage")
    splits = load_dataset("cifar10", tmp_path)
    assert len(count_reads) == 2 and len(splits.test) == 30
    load_dataset("cifar10", tmp_path)
    assert len(count_reads) == 2  # rewritten, so the third load hits


def test_clear_cache(tmp_path: Path, write_cifar, write_fashion) -> None:
    write_cifar(tmp_path)
    write_fashion(tmp_path)
    load_dataset("cifar10", tmp_path)
    load_dataset("fashion_mnist", tmp_path)
    assert clear_cache(tmp_path, "cifar10") == 1
    assert [p.name.split("-")[0] for p in _entries(tmp_path)] == ["fashion_mnist"]
    assert clear_cache(tmp_path) == 1
    assert clear_cache(tmp_path / "nothing-here") == 0


def test_verify_runs_even_on_a_cache_hit(tmp_path: Path, write_cifar, count_reads) -> None:
    write_cifar(tmp_path)
    load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetError, match=r"data_batch_1.*md5"):
        load_dataset("cifar10", tmp_path, verify=True)  # the fixture is not the published data
    assert len(count_reads) == 1


@pytest.mark.parametrize("damage", ["truncated", "pickled objects", "garbage", "empty"])
def test_a_corrupt_cache_entry_is_one_log_line(
    damage: str, tmp_path: Path, write_cifar, count_reads, caplog: pytest.LogCaptureFixture
) -> None:
    write_cifar(tmp_path)
    load_dataset("cifar10", tmp_path)
    (entry,) = _entries(tmp_path)
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:4000])
    elif damage == "pickled objects":
        torch.save({"format": 1, "when": datetime.datetime(2024, 1, 1)}, entry)
    elif damage == "garbage":
        entry.write_bytes(b"garbage")
    else:
        entry.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="wattwise.data.cache"):
        splits = load_dataset("cifar10", tmp_path)
    assert len(count_reads) == 2 and len(splits.test) == 30  # decoded again
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message and "\x1b" not in message, message
    assert "weights_only=False" not in message and str(entry) in message
    assert message.endswith("decoding the dataset again")
