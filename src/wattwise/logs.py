"""Third-party noise to a file: while a long command runs, the warnings and log lines of the
libraries it drives (PyTorch's compile and pytree warnings, Optuna's sampler notes, Ray's
start-up lines) go to ``third_party.log`` in the command's folder instead of the terminal.

Two channels are routed, both only for the duration of :func:`route_third_party`:

* the ``logging`` loggers of :data:`THIRD_PARTY_LOGGERS` and torch's own loggers
  (``torch._dynamo``, ``torch._inductor``, ...; each prints through its own stderr handler and
  does not propagate): their handlers are replaced by one file handler;
* Python ``warnings`` (``warnings.showwarning``) raised outside the wattwise package.

wattwise's own loggers and warnings, and whatever is printed to stderr directly (wattwise's
error lines, C-level prints to file descriptor 2), stay on the terminal. The file is opened on
the first captured line, so a command that captured nothing leaves none; a file that cannot be
written sends the lines to stderr, as without routing: logging never fails a command.

Worker processes that run a sweep's trials (``local-gpus``' pool, Ray tasks) route theirs to the
same file with :func:`route_worker_third_party`. Several processes append to it at once: each
line (each log record, each warning with its source line) is one ``write`` to a file opened
with ``O_APPEND``, so lines of different processes never mix; the driver's closing line counts
what the file gained (:meth:`ThirdPartyLog.appended_lines`), the workers' lines included.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: The file, in the command's folder, that receives third-party lines.
THIRD_PARTY_LOG = "third_party.log"
#: The root loggers of the libraries whose lines are routed (their children propagate to them).
THIRD_PARTY_LOGGERS = (
    "torch",
    "torchvision",
    "torchao",
    "optuna",
    "ray",
    "PIL",
    "matplotlib",
    "filelock",
    "fsspec",
    "urllib3",
    "mlflow",
    "alembic",
    "lightning",
    "lightning.pytorch",
    "transformers",
    "submitit",
)
_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ThirdPartyLog:
    """The file the lines go to, opened (and, with ``create_folder``, its folder created) on
    the first line; ``lines`` counts the lines this process wrote to it. Each :meth:`write` is
    one ``write`` to the file opened with ``O_APPEND``: other processes may append to it too.
    When it cannot be opened, lines go to stderr (uncounted).

    Args:
        path: The log file.
        create_folder: Create its folder when missing; a worker that may run on another machine
            passes ``False`` (a folder missing there means the study's is out of reach).
    """

    def __init__(self, path: Path, *, create_folder: bool = True) -> None:
        self.path = path
        self.lines = 0
        self._create_folder = create_folder
        self._fd: int | None = None
        self._failed = False
        self._lock = threading.Lock()
        #: The file's size when routing began: :meth:`appended_lines` counts from there.
        self.offset = _size(path)

    def write(self, text: str) -> int:
        with self._lock:
            if self._fd is None and not self._failed:
                try:
                    if self._create_folder:
                        self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                except OSError:
                    self._failed = True
            if self._fd is None:
                return sys.stderr.write(text)
            data = text.encode("utf-8", "backslashreplace")
            try:
                while data:  # one write for a regular file; the loop covers a partial one
                    data = data[os.write(self._fd, data) :]
            except OSError:  # a full disk: the rest goes to stderr, as without routing
                self._failed = True
                self._close()
                return sys.stderr.write(text)
            self.lines += text.count("\n")
            return len(text)

    def flush(self) -> None:
        """Nothing to do: every :meth:`write` reaches the file at once."""

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def appended_lines(self) -> int:
        """The lines the file gained since routing began: this process's and those other
        processes (the sweep's workers) appended meanwhile; 0 when there is no file."""
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset if self.offset <= _size(self.path) else 0)
                return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
        except OSError:
            return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Routed(list):  # type: ignore[type-arg]
    """A library logger's ``handlers`` while routed: it holds only the file handler, and keeps
    in ``kept`` the handlers the library believes it has (``addHandler`` and ``removeHandler``
    act on ``kept``: torch and Optuna add their stderr handler when imported); ``kept`` is put
    back at the end."""

    def __init__(self, handler: logging.Handler, kept: list[logging.Handler]) -> None:
        super().__init__([handler])
        self.kept = list(kept)

    def __contains__(self, handler: object) -> bool:
        return handler in self.kept

    def append(self, handler: logging.Handler) -> None:
        self.kept.append(handler)

    def remove(self, handler: logging.Handler) -> None:
        self.kept.remove(handler)


def _logger_names() -> tuple[str, ...]:
    """:data:`THIRD_PARTY_LOGGERS` and torch's registered loggers. torch creates those (with
    their handlers) when imported, so it is imported here, where it is installed: the commands
    that route import it anyway."""
    names = list(THIRD_PARTY_LOGGERS)
    if importlib.util.find_spec("torch") is not None:
        try:
            from torch._logging._internal import log_registry

            names += sorted(log_registry.get_log_qnames())
        except (ImportError, AttributeError):  # a torch without that registry: "torch" alone
            pass
    return tuple(dict.fromkeys(names))


def _is_own(filename: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return str(Path(filename).resolve()).startswith(_PACKAGE_DIR)
    return False


@contextlib.contextmanager
def route_third_party(path: str | Path, *, create_folder: bool = True) -> Iterator[ThirdPartyLog]:
    """Sends third-party log records and warnings to ``path`` (appended) while the block runs,
    and restores the loggers' handlers (with those added meanwhile) and
    ``warnings.showwarning`` after it.

    Args:
        path: The log file, in the folder the command writes to.
        create_folder: Create the file's folder when missing (see :class:`ThirdPartyLog`).

    Yields:
        The :class:`ThirdPartyLog`: after the block, ``lines`` tells how many lines this process
        wrote to it, :meth:`~ThirdPartyLog.appended_lines` how many the file gained.
    """
    log = ThirdPartyLog(Path(path), create_folder=create_folder)
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter(_FORMAT))
    loggers = [logging.getLogger(name) for name in _logger_names()]
    routed = [(logger, _Routed(handler, logger.handlers)) for logger in loggers]
    previous_show = warnings.showwarning

    def show(
        message: Any,
        category: Any,
        filename: str,
        lineno: int,
        file: IO[str] | None = None,
        line: str | None = None,
    ) -> None:
        if file is not None or _is_own(filename):
            previous_show(message, category, filename, lineno, file, line)
        else:
            log.write(warnings.formatwarning(message, category, filename, lineno, line))

    for logger, handlers in routed:
        logger.handlers = handlers
    warnings.showwarning = show
    try:
        yield log
    finally:
        warnings.showwarning = previous_show
        for logger, handlers in routed:
            if logger.handlers is handlers:
                logger.handlers = handlers.kept
        log.close()


def route_worker_third_party(
    teacher_dir: str | Path | None,
) -> contextlib.AbstractContextManager[ThirdPartyLog | None]:
    """In a process that runs a sweep's trials for its driver (a ``local-gpus`` worker, a Ray
    task): routes its third-party lines to the study folder's :data:`THIRD_PARTY_LOG`, the file
    the driver routes its own to, with the study folder the parent of ``teacher_dir`` (the
    study's ``teachers/``, which every executor hands its workers).

    The folder is not created: a worker on a machine that does not see it (a Ray node without
    the shared file system) leaves its lines on stderr, where they were (Ray forwards them to
    the driver's terminal). Without ``teacher_dir`` (trials run outside a study) nothing is
    routed.
    """
    if teacher_dir is None:
        return contextlib.nullcontext()
    where = Path(teacher_dir).parent / THIRD_PARTY_LOG
    return route_third_party(where, create_folder=False)
