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
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
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
    """The file the lines go to, opened (and its folder created) on the first line; ``lines``
    counts the lines written to it. When it cannot be opened, lines go to stderr (uncounted).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._file: IO[str] | None = None
        self._failed = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            if self._file is None and not self._failed:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", buffering=1, encoding="utf-8")
                except OSError:
                    self._failed = True
            if self._file is None:
                return sys.stderr.write(text)
            try:
                written = self._file.write(text)
            except OSError:  # a full disk: the rest goes to stderr, as without routing
                self._failed, self._file = True, None
                return sys.stderr.write(text)
            self.lines += text.count("\n")
            return written

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None


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
def route_third_party(path: str | Path) -> Iterator[ThirdPartyLog]:
    """Sends third-party log records and warnings to ``path`` (appended) while the block runs,
    and restores the loggers' handlers (with those added meanwhile) and
    ``warnings.showwarning`` after it.

    Args:
        path: The log file, in the folder the command writes to.

    Yields:
        The :class:`ThirdPartyLog`: after the block, ``lines`` tells how many lines it holds.
    """
    log = ThirdPartyLog(Path(path))
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
