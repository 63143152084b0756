"""Measuring a command: spawn it, wait for it, and return its exit code with the measurement.

    from wattwise.energy.command import run_command
    from wattwise.energy.monitor import EnergyMonitor

    with EnergyMonitor() as monitor:
        result = run_command(["python", "train.py"], monitor)
    result.exit_code, result.measurement.total_energy_j

Like ``time``, the command keeps the terminal's Ctrl-C: while it runs, SIGINT does nothing here
(the terminal sends it to the whole foreground process group, so the command receives it) and a
SIGTERM sent to this process is forwarded to the command. Both handlers are in place from just
before the command is started (a SIGTERM that comes before the command exists is forwarded as
soon as it does), so no signal can end this process with the command left running unmeasured.
When the command ends, the window is closed and the result is returned whatever the exit status.
The window measures this process's tree, which contains the command and everything it starts.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError

#: Characters of the command line used as the window's default name.
NAME_CHARS = 60


@dataclass(frozen=True)
class CommandResult:
    """What a measured command did and cost.

    Attributes:
        command: The command and its arguments, as run.
        returncode: The status as :mod:`subprocess` reports it: the exit status, or ``-N`` when
            signal ``N`` ended the command.
        measurement: The window from just before the command started to just after it ended.
    """

    command: tuple[str, ...]
    returncode: int
    measurement: Measurement

    @property
    def signal(self) -> signal.Signals | None:
        """The signal that ended the command, or ``None`` when it exited by itself."""
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode)
        except ValueError:  # a number this platform does not name
            return None

    @property
    def exit_code(self) -> int:
        """The status a shell reports: the exit status, or ``128 + N`` after signal ``N``."""
        return 128 - self.returncode if self.returncode < 0 else self.returncode

    @property
    def interrupted(self) -> bool:
        """Ctrl-C ended the command (it died of SIGINT, or exited with 130 after handling it)."""
        return self.returncode in (-signal.SIGINT, 128 + signal.SIGINT)

    def to_dict(self, *, timeline: bool = True) -> dict[str, Any]:
        """The measurement's dict plus ``command`` (a list) and ``exit_code``."""
        data = self.measurement.to_dict(timeline=timeline)
        data["command"] = list(self.command)
        data["exit_code"] = self.exit_code
        return data


def default_name(command: Sequence[str]) -> str:
    """The window name of a command: on one line (a multi-line ``-c`` script's newlines and runs
    of spaces become one space), at most :data:`NAME_CHARS` characters, ``…`` where it was cut."""
    text = " ".join(" ".join(str(part).split()) for part in command)
    return text if len(text) <= NAME_CHARS else text[: NAME_CHARS - 1] + "…"


def run_command(
    command: Sequence[str], monitor: EnergyMonitor, *, name: str | None = None
) -> CommandResult:
    """Runs ``command`` inside a window of ``monitor`` and waits for it to end.

    Args:
        command: The program and its arguments (no shell: pass ``["sh", "-c", "..."]`` for one).
        monitor: The monitor to measure with; it stays open (the caller closes it).
        name: Name of the window (default: :func:`default_name` of the command). A name that is
            already open in ``monitor`` is a ``ValueError``.

    Returns:
        The :class:`CommandResult`, also when the command failed or was killed.

    Raises:
        ConfigError: No command, or it cannot be started (not found, not executable, not a
            program); the window is closed first.
    """
    argv = [str(part) for part in command]
    if not argv:
        raise ConfigError("no command to run")
    key = name or default_name(argv)
    monitor.begin_window(key)
    with _signals_for_the_child() as forward:
        try:
            proc = subprocess.Popen(argv)
        except OSError as err:
            monitor.end_window(key)
            raise ConfigError(_spawn_error(argv[0], err)) from None
        forward.started(proc)
        monitor.tree.refresh_children()  # count the child from its first sample on
        returncode = proc.wait()
    return CommandResult(tuple(argv), returncode, monitor.end_window(key))


def _spawn_error(program: str, err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return f"command not found: {program}"
    if isinstance(err, PermissionError):
        return f"command is not executable: {program}"
    return f"cannot run {program}: {err.strerror or err}"  # e.g. a script without a #! line


class _Forward:
    """The SIGTERM handler: sends the signal to the child, or keeps it until the child exists."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []

    def __call__(self, sig: int, _frame: Any) -> None:
        if self.proc is None:
            self.pending.append(sig)
        else:
            self.proc.send_signal(sig)

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        while self.pending:
            proc.send_signal(self.pending.pop(0))


@contextlib.contextmanager
def _signals_for_the_child() -> Iterator[_Forward]:
    """In the main thread: SIGINT does nothing and SIGTERM goes to the child, until the block
    ends; then the previous handlers are back. Elsewhere (no handlers can be set) nothing.

    SIGINT gets a handler that does nothing rather than ``SIG_IGN``: an ignored signal would be
    inherited by the command (which must keep its Ctrl-C), a handler is reset when it starts.
    """
    forward = _Forward()
    if threading.current_thread() is not threading.main_thread():
        yield forward
        return
    previous_int = signal.signal(signal.SIGINT, _leave_to_the_child)
    previous_term = signal.signal(signal.SIGTERM, forward)
    try:
        yield forward
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def _leave_to_the_child(_sig: int, _frame: Any) -> None:
    """SIGINT while the command runs: the command got it too (it is in the foreground group)."""
