"""run_command: a measured child process, its exit status, and the signals around it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wattwise.energy.command import CommandResult, default_name, run_command
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.errors import ConfigError

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\n"


@pytest.fixture
def monitor() -> Iterator[EnergyMonitor]:
    with EnergyMonitor(MonitorConfig(meters=("cpu-estimate",), sample_hz=20)) as m:
        yield m


def test_the_window_covers_the_child_and_its_cpu_time(monitor):
    command = [sys.executable, "-c", BUSY]
    result = run_command(command, monitor, name="busy")
    assert result.command == tuple(command)
    assert (result.returncode, result.exit_code, result.signal) == (0, 0, None)
    assert not result.interrupted
    m = result.measurement
    assert m.name == "busy" and m.duration_s >= 0.3
    (cpu,) = [c for c in m.components if c.component == "cpu"]
    assert cpu.provenance.label == "estimated:tdp" and cpu.energy_j > 0
    data = result.to_dict(timeline=False)
    assert data["command"] == command and data["exit_code"] == 0 and data["timeline"] is None


def test_the_default_name_is_the_start_of_the_command(monitor):
    command = ["sh", "-c", "true", "x" * 100]
    assert run_command(command, monitor).measurement.name == default_name(command)
    assert len(default_name(command)) == 60 and default_name(command).endswith("…")


def test_a_multi_line_command_is_named_on_one_line():
    command = ["python", "-c", "import time\n\nfor i in range(3):\n    time.sleep(0)\n"]
    name = default_name(command)
    assert name == "python -c import time for i in range(3): time.sleep(0)"
    assert default_name(["sh", "-c", "true"]) == "sh -c true"


def test_an_exit_status_is_returned_not_raised(monitor):
    result = run_command(["sh", "-c", "exit 3"], monitor)
    assert (result.returncode, result.exit_code, result.signal) == (3, 3, None)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_child_killed_by_a_signal_exits_128_plus_n(monitor, sig):
    result = run_command(["sh", "-c", f"kill -{int(sig)} $$"], monitor)
    assert result.returncode == -sig and result.signal == sig
    assert result.exit_code == 128 + sig
    assert result.interrupted == (sig == signal.SIGINT)


def test_exit_130_after_handling_ctrl_c_counts_as_interrupted():
    assert CommandResult(("x",), 130, None).interrupted  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([], "no command to run"),
        (["/nonexistent/wattwise-test-command"], "command not found"),
        (["wattwise-no-such-command-on-path"], "command not found"),
    ],
)
def test_a_command_that_cannot_start_is_a_config_error_and_closes_the_window(
    monitor, command, message
):
    with pytest.raises(ConfigError, match=message):
        run_command(command, monitor, name="w")
    monitor.begin_window("w")  # the name is free again: the window was closed
    monitor.end_window("w")


def test_a_directory_or_a_script_without_shebang_is_a_config_error(monitor, tmp_path):
    with pytest.raises(ConfigError, match="not executable"):
        run_command([str(tmp_path)], monitor)
    script = tmp_path / "no-shebang.sh"
    script.write_text("echo hello\n")
    script.chmod(0o755)
    with pytest.raises(ConfigError, match="cannot run"):
        run_command([str(script)], monitor)


def _signal_when_ready(ready: Path, sig: signal.Signals) -> threading.Thread:
    """Sends ``sig`` to this process once the child has created ``ready`` (and a moment more,
    so that run_command is waiting with its handlers installed)."""

    def send() -> None:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        os.kill(os.getpid(), sig)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def early() -> Iterator[list[int]]:
    """Handlers that record a SIGINT/SIGTERM arriving outside run_command's wait (a test race),
    so that it fails the test instead of stopping pytest."""
    seen: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda s, _f: seen.append(s))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield seen
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_sigterm_to_the_monitor_is_forwarded_to_the_child(monitor, tmp_path, early):
    ready = tmp_path / "ready"
    thread = _signal_when_ready(ready, signal.SIGTERM)
    result = run_command(["sh", "-c", f"touch '{ready}'; sleep 10"], monitor)
    thread.join(5)
    assert early == []
    assert result.signal == signal.SIGTERM and result.exit_code == 143
    assert result.measurement.duration_s < 9


def test_ctrl_c_is_left_to_the_child_and_handlers_are_put_back(monitor, tmp_path, early):
    ready = tmp_path / "ready"
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    thread = _signal_when_ready(ready, signal.SIGINT)
    result = run_command(["sh", "-c", f"touch '{ready}'; sleep 1"], monitor)
    thread.join(5)
    assert early == []  # ignored while the child ran: no KeyboardInterrupt here
    assert result.exit_code == 0  # only this process got it: the child finished
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_just_after_the_child_started_is_handled_as_during_the_wait(
    monitor, monkeypatch, early, sig
):
    """Ctrl-C or SIGTERM between the spawn and the wait: no KeyboardInterrupt (or death) here
    with the child left running unmeasured; the exit status is still the command's."""
    real = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = real(*args, **kwargs)  # type: ignore[call-overload]
        os.kill(os.getpid(), sig)  # lands before run_command waits
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    result = run_command(["sh", "-c", "sleep 0.5; exit 3"], monitor)
    assert early == []
    if sig == signal.SIGINT:
        assert result.exit_code == 3  # left to the child, which only this process got
    else:
        assert result.signal == signal.SIGTERM  # forwarded once the child existed


def test_outside_the_main_thread_it_waits_without_signal_handlers(monitor):
    results: list[CommandResult] = []
    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=lambda: results.append(run_command(["true"], monitor)))
    thread.start()
    thread.join(30)
    assert results and results[0].exit_code == 0
    assert signal.getsignal(signal.SIGINT) is before
