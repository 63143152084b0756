"""Writing files atomically: a temporary file in the same folder, fsync, then rename; and an
exclusive lock on a file that dies with its process (:class:`FileLock`).

A reader (or a crash) sees the old file or the new one, never a truncated one. Reading user
files that must be regular files (a study, a recipe) goes through :func:`read_regular_text`,
which never blocks on a FIFO or reads a device.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (parent folders are created); returns the path.

    Raises:
        OSError: The folder cannot be written (the old file, if any, is left as it was).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_bytes_atomic` of ``text`` in UTF-8."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """``data`` as indented JSON, written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@dataclass(frozen=True)
class LockHolder:
    """Who holds a :class:`FileLock`, as its holder wrote it into the lock file.

    Attributes:
        pid: The holder's process id.
        host: The machine it runs on.
        since_unix_s: When it took the lock.
    """

    pid: int | None
    host: str | None
    since_unix_s: float | None

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> LockHolder:
        """The holder written in ``path``; unknown fields (no file, a half-written one) are
        ``None``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        pid, host, since = data.get("pid"), data.get("host"), data.get("since_unix_s")
        return cls(
            pid if isinstance(pid, int) else None,
            host if isinstance(host, str) else None,
            float(since) if isinstance(since, int | float) else None,
        )

    def describe(self) -> str:
        """``pid 1234 on gpu-07 since 2025-05-01 14:03:12`` (the parts that are known)."""
        if self.pid is None:
            return "another process"
        text = f"pid {self.pid}"
        if self.host:
            text += f" on {self.host}"
        if self.since_unix_s is not None:
            text += (
                f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since_unix_s))}"
            )
        return text


class FileLock:
    """An exclusive lock on a file that the operating system releases when the holder's process
    ends, however it ends (``flock``; SIGKILL and power cuts leave no stale lock behind).

        lock = FileLock(folder / "sweep.lock")
        if not lock.acquire():
            raise SomeError(f"held by {lock.holder().describe()}")
        try:
            ...
        finally:
            lock.release()

    The holder writes its pid, host and start time into the lock file, so that a refused
    process can name it. That one file is written in place, not atomically: the lock belongs to
    the file's inode, and renaming a new file over it would let a third process lock the new
    inode while the first still holds the old one. A reader that finds it half-written gets an
    unknown holder (:meth:`LockHolder.read`).

    Two ``FileLock`` objects on one path conflict even within one process. A child process
    forked (not exec'd) while the lock is held shares it until it exits.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, *, blocking: bool = False) -> bool:
        """Takes the lock; returns ``False`` when another holder has it (``blocking``: waits for
        it instead; a signal handler that raises, such as Ctrl-C, ends the wait).

        Raises:
            OSError: The lock file cannot be created or opened.
        """
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            if not _lock(fd, blocking):
                os.close(fd)
                return False
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since_unix_s": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        except BaseException:
            os.close(fd)  # closing the descriptor releases the lock
            raise
        self._fd = fd
        return True

    def holder(self) -> LockHolder:
        """Who holds (or last held) the lock, as written in the lock file."""
        return LockHolder.read(self.path)

    def release(self) -> None:
        """Releases the lock (the file stays: removing it would race with the next holder)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock(fd: int, blocking: bool) -> bool:
    """``flock`` (POSIX), or ``msvcrt.locking`` of the first byte (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
        while True:
            try:
                msvcrt.locking(fd, mode, 1)
                return True
            except OSError:
                if not blocking:
                    return False
                time.sleep(1.0)  # LK_LOCK gives up after 10 s; keep waiting
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


#: ``stat`` tests of what is not a regular file, and the words for it.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_regular_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of a regular file. Anything else is refused before it is opened (a FIFO
    would block, a device might never end); the descriptor is checked again after opening,
    without blocking, in case the path changed in between.

    Raises:
        OSError: Unreadable, a folder (``IsADirectoryError``), or not a regular file.
        UnicodeDecodeError: Not UTF-8 text.
    """

    def refuse(mode: int) -> None:
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            kind = next((word for test, word in _FILE_KINDS if test(mode)), "not a file")
            raise OSError(0, f"not a regular file ({kind})")

    refuse(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as handle:
        refuse(os.fstat(fd).st_mode)
        return handle.read().decode("utf-8")
