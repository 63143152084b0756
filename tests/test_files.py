"""wattwise.files: atomic writes leave the old file or the new one, and the exclusive lock that
the OS releases when its holder's process ends."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wattwise.files import FileLock, LockHolder, write_bytes_atomic

HOLD = textwrap.dedent(
    """
    import sys, time
    from wattwise.files import FileLock

    lock = FileLock(sys.argv[1])
    assert lock.acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    target.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_bytes_atomic(target, b"new and longer")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.json"]


def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path):
    path = tmp_path / "sweep.lock"
    first, second = FileLock(path), FileLock(path)
    assert first.acquire()
    try:
        assert not second.acquire()  # flock: two opens conflict, even in one process
        holder = second.holder()
        assert holder.pid == os.getpid() and holder.host and holder.since_unix_s
        assert f"pid {os.getpid()} on {holder.host} since " in holder.describe()
    finally:
        first.release()
    assert second.acquire()
    second.release()


def test_the_lock_dies_with_its_process(tmp_path):
    path = tmp_path / "sweep.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        lock = FileLock(path)
        assert not lock.acquire()
        assert lock.holder().pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert lock.acquire()  # SIGKILL ran no cleanup: the OS released it
    assert lock.holder().pid == os.getpid()
    lock.release()


def test_an_unreadable_holder_is_described_as_unknown(tmp_path):
    path = tmp_path / "sweep.lock"
    path.write_text("{partial")
    assert LockHolder.read(path) == LockHolder(None, None, None)
    assert LockHolder(None, None, None).describe() == "another process"
    assert isinstance(FileLock(Path(path)).holder(), LockHolder)
