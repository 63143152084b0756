"""Measuring a command: spawn it, wait for it, and return its exit code with the measurement.

    from wattwise.energy.command import run_command
    from wattwise.energy.monitor import EnergyMonitor

    with EnergyMonitor() as monitor:
        result = run_command(["python", "train.py"], monitor)
    result.exit_code, result.measurement.total_energy_j

Like ``time``, the command keeps the terminal's Ctrl-C: while it runs, SIGINT is ignored here
(the terminal sends it to the whole foreground process group, so the command receives it) and a
SIGTERM sent to this process is forwarded to the command. When the command ends, the window is
closed and the result is returned whatever the exit status. The window measures this process's
tree, which contains the command and everything it starts.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Sequence
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
    """The window name of a command: its first :data:`NAME_CHARS` characters."""
    return " ".join(command)[:NAME_CHARS]


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
    try:
        proc = subprocess.Popen(argv)
    except OSError as err:
        monitor.end_window(key)
        raise ConfigError(_spawn_error(argv[0], err)) from None
    monitor.tree.refresh_children()  # count the child from its first sample on
    returncode = _wait(proc)
    return CommandResult(tuple(argv), returncode, monitor.end_window(key))


def _spawn_error(program: str, err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return f"command not found: {program}"
    if isinstance(err, PermissionError):
        return f"command is not executable: {program}"
    return f"cannot run {program}: {err.strerror or err}"  # e.g. a script without a #! line


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """Waits for ``proc``; in the main thread, with SIGINT ignored and SIGTERM forwarded.

    Signal handlers can only be set in the main thread; elsewhere this is a plain wait.
    """
    if threading.current_thread() is not threading.main_thread():
        return proc.wait()
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, lambda sig, _frame: proc.send_signal(sig))
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
