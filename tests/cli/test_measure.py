"""The command line: ``wattwise devices`` and ``wattwise monitor``, exit codes and error lines."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from wattwise.cli import main
from wattwise.cli.render import fmt_bytes, fmt_energy, measurement_table
from wattwise.energy.base import CarbonEstimate, ComponentEnergy, Measurement, Provenance
from wattwise.energy.meters import METER_NAMES
from wattwise.energy.nvml import NvmlMeter

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\n"
WATTWISE = Path(sys.executable).with_name("wattwise")


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WATTWISE_POWERCAP_ROOT", "WATTWISE_CPU_TDP_W", "WATTWISE_CPU_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich: no wrapped or elided names


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit code, stdout, stderr); argparse exits are caught."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def fake_rapl(root: Path, energy_uj: int = 1_000_000) -> Path:
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core")):
        (root / zone).mkdir(parents=True)
        (root / zone / "name").write_text(f"{name}\n")
        (root / zone / "energy_uj").write_text(f"{energy_uj}\n")
        (root / zone / "max_energy_range_uj").write_text("262143328850\n")
    return root


# --- devices --------------------------------------------------------------------------------
def test_devices_lists_every_meter(capsys):
    code, out, err = run(["devices"], capsys)
    assert code == 0, err
    for name in METER_NAMES:
        assert name in out
    assert "estimated:tdp" in out
    assert "TDP source" in out


def test_devices_json(tmp_path, capsys):
    target = tmp_path / "sub" / "devices.json"
    root = fake_rapl(tmp_path / "powercap")
    argv = ["devices", "--json", str(target), "--powercap-root", str(root)]
    code, out, _ = run([*argv, "--cpu-tdp-w", "100", "--cpu-threads", "4"], capsys)
    assert code == 0
    info = json.loads(target.read_text())
    by_name = {m["meter"]: m for m in info["meters"]}
    assert set(by_name) == set(METER_NAMES)
    for meter in info["meters"]:
        assert {"available", "provenance", "components", "detail"} <= set(meter)
        if not meter["available"]:
            assert meter["detail"]  # every absent meter says why
    assert by_name["rapl"]["available"] is True
    assert by_name["rapl"]["components"] == ["cpu:0"]
    assert by_name["cpu-estimate"]["available"] is True
    assert info["cpu_power_model"]["source"] == "config"
    assert info["cpu_power_model"]["watts_per_cpu"] == pytest.approx(25.0)
    assert info["powercap_root"] == str(root)
    assert info["machine"]["logical_cpus"] >= 1
    assert "rapl" in out


# --- monitor --------------------------------------------------------------------------------
def test_monitor_runs_a_command_and_prints_the_table(tmp_path, capsys):
    target = tmp_path / "m.json"
    command = [sys.executable, "-c", BUSY]
    code, _, err = run(
        [
            "monitor",
            "--meters",
            "cpu-estimate,dram-estimate",
            "--cpu-tdp-w",
            "20",
            "--cpu-threads",
            "2",
            "--json",
            str(target),
            "--name",
            "busy",
            "--",
            *command,
        ],
        capsys,
    )
    assert code == 0, err
    assert "busy" in err and "total" in err and "estimated:tdp" in err
    data = json.loads(target.read_text())
    assert data["name"] == "busy"
    assert data["command"] == command
    assert data["exit_code"] == 0
    assert data["duration_s"] >= 0.3
    components = {c["component"]: c for c in data["components"]}
    assert set(components) == {"cpu", "dram"}
    assert components["cpu"]["provenance"]["label"] == "estimated:tdp"
    assert components["dram"]["provenance"]["label"] == "estimated:dram-rss"
    assert components["cpu"]["energy_j"] >= 0.3 * 10.0 * 0.9  # >= 0.3 CPU s at 10 W per CPU
    assert data["total_provenance"] == "estimated"
    assert data["timeline"] is not None
    assert data["carbon"]["co2e_g"] > 0


def test_monitor_auto_meters_and_no_timeline(tmp_path, capsys):
    target = tmp_path / "m.json"
    code, _, err = run(
        ["monitor", "--json", str(target), "--no-timeline", "--", sys.executable, "-c", "pass"],
        capsys,
    )
    assert code == 0, err
    data = json.loads(target.read_text())
    assert data["timeline"] is None
    assert data["name"].startswith(sys.executable)
    kinds = {c["component"].split(":")[0] for c in data["components"]}
    assert {"cpu", "dram", "gpu"} <= kinds  # an absent GPU is listed as unavailable
    for comp in data["components"]:
        assert comp["provenance"]["label"]


def test_monitor_measures_rapl_counters_the_command_changes(tmp_path, capsys):
    root = fake_rapl(tmp_path / "powercap", energy_uj=1_000_000)
    target = tmp_path / "m.json"
    counter = root / "intel-rapl:0" / "energy_uj"
    code, _, err = run(
        [
            "monitor",
            "--meters",
            "rapl",
            "--powercap-root",
            str(root),
            "--json",
            str(target),
            "--",
            "sh",
            "-c",
            f"echo 4500000 > '{counter}'",
        ],
        capsys,
    )
    assert code == 0, err
    data = json.loads(target.read_text())
    components = {c["component"]: c for c in data["components"]}
    assert components["cpu:0"]["energy_j"] == pytest.approx(3.5)
    assert components["cpu:0"]["provenance"]["label"] == "measured:rapl"
    assert components["cpu:0/core"]["nested_in"] == "cpu:0"
    assert data["total_energy_j"] == pytest.approx(3.5)
    assert data["total_provenance"] == "measured"


def test_monitor_returns_the_commands_exit_code(tmp_path, capsys):
    target = tmp_path / "m.json"
    code, _, err = run(
        ["monitor", "--meters", "cpu-estimate", "--json", str(target), "--", "sh", "-c", "exit 3"],
        capsys,
    )
    assert code == 3
    assert "exited with code 3" in err
    assert json.loads(target.read_text())["exit_code"] == 3


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("wattwise: error:")]


def test_a_json_that_cannot_be_written_keeps_the_commands_exit_code(tmp_path, capsys, monkeypatch):
    """The disk fills up while the command runs: no file (not even an empty one) is left, one
    line says what was not written, and the exit code is still the command's."""
    target = tmp_path / "out" / "m.json"

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    argv = [
        "monitor",
        "--meters",
        "cpu-estimate",
        "--json",
        str(target),
        "--",
        "sh",
        "-c",
        "exit 3",
    ]
    code, _, err = run(argv, capsys)
    assert code == 3, err
    (line,) = _error_lines(err)
    assert f"cannot write {target}: No space left on device" in line
    assert "exited with code 3" in line and "Traceback" not in err
    assert not target.exists() and os.listdir(target.parent) == []  # no partial, no temporary


def test_a_json_folder_that_vanished_while_the_command_ran(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "m.json"
    script = f"rm -r '{folder}' && echo x > '{folder}'; exit 0"  # the folder is now a file
    code, _, err = run(["monitor", "--json", str(target), "--", "sh", "-c", script], capsys)
    assert code == 0, err
    (line,) = _error_lines(err)
    assert f"cannot write {target}" in line
    assert folder.read_text() == "x\n"


def test_inspect_json_that_cannot_be_written_leaves_no_file(tmp_path, capsys, monkeypatch):
    target = tmp_path / "model.json"
    target.write_text("old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    argv = ["inspect", "small_cnn", "--input", "1x8x8", "--num-classes", "10", "--json"]
    line = _assert_one_error_line(*run([*argv, str(target)], capsys))
    assert f"cannot write {target}: No space left on device" in line
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.json"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_monitor_command_killed_by_a_signal(capsys, sig):
    # (compared with the handler before, not with Python's default: a process started in the
    # background of a non-interactive shell begins with SIGINT ignored)
    before = signal.getsignal(signal.SIGINT)
    code, _, err = run(
        ["monitor", "--meters", "cpu-estimate", "--", "sh", "-c", f"kill -{int(sig)} $$"], capsys
    )
    assert code == 128 + int(sig)
    assert f"exited with code {128 + int(sig)}" in err
    # the handlers the monitor installs while it waits are put back
    assert signal.getsignal(signal.SIGINT) is before


# --- bad input: one line, exit code 2, no traceback -----------------------------------------
def _assert_one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wattwise: error:")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["monitor", "--meters", "bogus", "--", "true"], "unknown meter 'bogus'"),
        (["monitor", "--meters", "rapl,rapl", "--", "true"], "twice"),
        (["monitor", "--interval", "-1", "--", "true"], "--interval"),
        (["monitor", "--interval", "abc", "--", "true"], "--interval"),
        (["monitor", "--interval", "0", "--", "true"], "--interval"),
        (["monitor", "--interval", "20", "--", "true"], "--interval"),
        (["monitor", "--cpu-tdp-w", "-5", "--", "true"], "--cpu-tdp-w"),
        (["monitor", "--cpu-threads", "0", "--", "true"], "--cpu-threads"),
        (["monitor", "--pue", "0.5", "--", "true"], "--pue: must be >= 1"),
        (["monitor", "--carbon-intensity", "-3", "--", "true"], "--carbon-intensity-g-per-kwh"),
        (["monitor", "--country", "XYZ", "--", "true"], "XYZ"),
        (["monitor", "--", "/nonexistent/wattwise-test-command"], "command not found"),
        (["monitor", "--", "wattwise-no-such-command-on-path"], "command not found"),
        (["monitor"], "no command"),
        (["monitor", "--"], "no command"),
        (["monitor", "--powercap-root", "/nonexistent/powercap", "--", "true"], "does not exist"),
        (["devices", "--powercap-root", "/nonexistent/powercap"], "does not exist"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    line = _assert_one_error_line(*run(argv, capsys))
    assert needle in line


def test_powercap_root_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    line = _assert_one_error_line(
        *run(["monitor", "--powercap-root", str(path), "--", "true"], capsys)
    )
    assert "not a readable directory" in line


def test_a_directory_is_not_a_command(tmp_path, capsys):
    line = _assert_one_error_line(*run(["monitor", "--", str(tmp_path)], capsys))
    assert "not executable" in line


def test_json_target_checked_before_the_command_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    line = _assert_one_error_line(
        *run(["monitor", "--json", str(tmp_path), "--", "touch", str(marker)], capsys)
    )
    assert "is a directory" in line
    assert not marker.exists()


def test_json_target_below_a_file_is_checked_before_the_command_runs(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    marker = tmp_path / "ran"
    code, out, err = run(
        ["monitor", "--json", str(blocker / "m.json"), "--", "touch", str(marker)], capsys
    )
    assert not marker.exists()
    _assert_one_error_line(code, out, err)


def test_requested_nvml_that_cannot_measure(capsys):
    if NvmlMeter().availability().available:
        pytest.skip("this machine has a working NVML")
    line = _assert_one_error_line(*run(["monitor", "--meters", "nvml", "--", "true"], capsys))
    assert "NVML" in line


def test_requested_nvidia_smi_that_is_absent(capsys):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    line = _assert_one_error_line(*run(["monitor", "--meters", "nvidia-smi", "--", "true"], capsys))
    assert "nvidia-smi" in line


def test_script_without_shebang_is_one_error_line(tmp_path, capsys):
    script = tmp_path / "no-shebang.sh"
    script.write_text("echo hello\n")
    script.chmod(0o755)
    _assert_one_error_line(*run(["monitor", "--", str(script)], capsys))


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.startswith("wattwise ")


# --- real processes -------------------------------------------------------------------------
def test_console_script_end_to_end(tmp_path):
    exe = [str(WATTWISE)] if WATTWISE.exists() else [sys.executable, "-m", "wattwise"]
    target = tmp_path / "m.json"
    result = subprocess.run(
        [*exe, "monitor", "--json", str(target), "--", sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(target.read_text())
    assert data["exit_code"] == 0
    assert data["command"] == [sys.executable, "-c", "pass"]
    failing = subprocess.run(
        [*exe, "monitor", "--", "sh", "-c", "exit 5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failing.returncode == 5


@pytest.mark.parametrize(
    "argv",
    [["frobnicate"], ["monitor", "--interval", "abc", "--", "true"], ["monitor", "--", "/no/such"]],
)
def test_module_errors_in_a_real_process(argv):
    result = subprocess.run(
        [sys.executable, "-m", "wattwise", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _assert_one_error_line(result.returncode, result.stdout, result.stderr)


# --- console presentation -------------------------------------------------------------------
def _render(renderable) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(renderable)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (3 * 2**30, "3.0 GiB")],
)
def test_fmt_bytes(value, text):
    assert fmt_bytes(value) == text


@pytest.mark.parametrize(
    ("joules", "text"),
    [
        (None, "-"),
        (0.5, "500.000 mJ"),
        (2.5, "2.500 J"),
        (1500.0, "1.500 kJ"),
        (7.2e6, "2.000 kWh"),
    ],
)
def test_fmt_energy(joules, text):
    assert fmt_energy(joules) == text


def test_measurement_table_shows_provenance_nesting_and_reasons():
    m = Measurement(
        name="train/epoch1",
        start_unix_s=0.0,
        duration_s=2.0,
        components=(
            ComponentEnergy("cpu:0", 10.0, Provenance.measured("rapl", "intel-rapl:0 (package)")),
            ComponentEnergy(
                "cpu:0/core", 6.0, Provenance.measured("rapl", "core"), nested_in="cpu:0"
            ),
            ComponentEnergy("dram", 1.0, Provenance.estimated("dram-rss", "0.375 W per GiB")),
            ComponentEnergy("gpu", None, Provenance.unavailable("NVML could not start")),
        ),
        peak_rss_bytes=2**30,
        carbon=CarbonEstimate(1.0, 480, 1.0, "default"),
    )
    text = _render(measurement_table(m))
    assert "train/epoch1: 2.00 s" in text
    assert "cpu:0/core (inside cpu:0)" in text
    assert "11.000 J" in text  # the total leaves the nested core out
    assert "mixed" in text
    assert "NVML could not start" in text
    assert "1.0 GiB" in text
    assert "CO2e" in text


# --- monitor --prometheus-port ----------------------------------------------------------------
def test_monitor_serves_prometheus_metrics_while_the_command_runs(tmp_path):
    """The URL is printed before the command starts; a scrape during the command reads its
    window (energy with provenance, up); the server ends with the command."""
    parser = pytest.importorskip("prometheus_client.parser")
    exe = [str(WATTWISE)] if WATTWISE.exists() else [sys.executable, "-m", "wattwise"]
    command = [sys.executable, "-c", "import time; time.sleep(1.5)"]
    proc = subprocess.Popen(
        [*exe, "monitor", "--meters", "cpu-estimate", "--prometheus-port", "0", "--", *command],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving Prometheus metrics on http://127.0.0.1:" in line, line
        url = line.split(" on ", 1)[1].strip()
        up = energy = None
        deadline = time.monotonic() + 1.4
        while up != 1.0 and time.monotonic() < deadline:  # the window opens just after the URL
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            families = {f.name: f for f in parser.text_string_to_metric_families(text)}
            up = families["wattwise_up"].samples[0].value
            energy = families.get("wattwise_energy_joules")
        assert up == 1.0
        assert energy is not None
        (total,) = [s for s in energy.samples if s.name == "wattwise_energy_joules_total"]
        assert total.labels == {
            "component": "cpu",
            "provenance": "estimated",
            "source": "tdp",
        }
        assert total.value >= 0
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_prometheus_port_in_use_is_one_line_and_exit_2(tmp_path, capsys):
    pytest.importorskip("prometheus_client")
    marker = tmp_path / "ran"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["monitor", "--prometheus-port", str(port), "--", "touch", str(marker)]
        line = _assert_one_error_line(*run(argv, capsys))
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert not marker.exists()  # the command never ran


def test_prometheus_port_without_prometheus_client(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    marker = tmp_path / "ran"
    argv = ["monitor", "--prometheus-port", "0", "--", "touch", str(marker)]
    line = _assert_one_error_line(*run(argv, capsys))
    assert "pip install 'wattwise[prometheus]'" in line
    assert not marker.exists()


@pytest.mark.parametrize(
    ("port", "needle"),
    [
        ("-1", "--prometheus-port must be at least 0"),
        ("http", "--prometheus-port must be an integer"),
        ("65536", "port must be 0 to 65535"),
    ],
)
def test_a_bad_prometheus_port_is_one_line(tmp_path, capsys, port, needle):
    pytest.importorskip("prometheus_client")
    marker = tmp_path / "ran"
    argv = ["monitor", "--prometheus-port", port, "--", "touch", str(marker)]
    line = _assert_one_error_line(*run(argv, capsys))
    assert needle in line
    assert not marker.exists()
