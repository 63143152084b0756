"""GPU power limits through a FAKE NVML: set, always restored, refused in one line.

No test here touches a real GPU: every limit is set on :class:`FakeNvml` (the subprocess tests
build one too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.energy.conftest import (
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeNvmlError,
)
from wattwise.energy.power_limit import gpu_power_limit
from wattwise.energy.sharing import ENV_OWN_DEVICES, ENV_PARALLEL_TRIALS
from wattwise.errors import ConfigError, WattwiseError

ROOT = Path(__file__).resolve().parents[2]


def test_no_limit_touches_nothing(fake_nvml):
    fake_nvml.add_gpu()
    with gpu_power_limit(None, "cuda:0", nvml=fake_nvml) as limit:
        assert limit is None
    with gpu_power_limit(None, "cpu", nvml=fake_nvml) as limit:  # no GPU needed either
        assert limit is None
    assert fake_nvml.init_calls == 0


def test_the_limit_holds_inside_and_is_restored_after(fake_nvml):
    gpu = fake_nvml.add_gpu(name="NVIDIA A100-SXM4-40GB")
    with gpu_power_limit(200, "cuda:0", nvml=fake_nvml) as limit:
        assert gpu.power_limit_mw == 200_000
        assert limit is not None
        assert (limit.limit_w, limit.applied_w, limit.original_w) == (200.0, 200.0, 300.0)
        assert (limit.min_w, limit.max_w) == (100.0, 400.0)
        assert limit.gpu == "NVIDIA A100-SXM4-40GB" and limit.device == "cuda:0"
        data = limit.to_dict()
        assert data["limit_w"] == 200.0 and data["original_w"] == 300.0
    assert gpu.power_limit_mw == 300_000
    assert gpu.set_limit_calls == [200_000, 300_000]
    assert fake_nvml.shutdown_calls == fake_nvml.init_calls == 1


@pytest.mark.parametrize("error", [RuntimeError("the trial failed"), KeyboardInterrupt()])
def test_the_limit_is_restored_when_the_body_raises(fake_nvml, error):
    gpu = fake_nvml.add_gpu()
    with pytest.raises(type(error)), gpu_power_limit(250.5, "cuda", nvml=fake_nvml):
        assert gpu.power_limit_mw == 250_500
        raise error
    assert gpu.power_limit_mw == 300_000
    assert fake_nvml.shutdown_calls == 1


def test_without_permission_it_refuses_in_one_line(fake_nvml):
    gpu = fake_nvml.add_gpu()
    gpu.set_limit_errors = [FakeNvmlError("Insufficient Permissions", NVML_ERROR_NO_PERMISSION)]
    with (
        pytest.raises(ConfigError, match="setting GPU power limits needs root") as caught,
        gpu_power_limit(200, "cuda:0", nvml=fake_nvml),
    ):
        pytest.fail("the body must not run without the limit")
    assert "\n" not in str(caught.value)
    assert gpu.power_limit_mw == 300_000 and gpu.set_limit_calls == [200_000]
    assert fake_nvml.shutdown_calls == 1  # NVML is not left initialized


@pytest.mark.parametrize("watts", [50, 400.5, 1000])
def test_a_value_outside_the_constraints_is_refused_before_setting(fake_nvml, watts):
    gpu = fake_nvml.add_gpu()
    with (
        pytest.raises(ConfigError, match=r"outside the range of .*: 100-400 W"),
        gpu_power_limit(watts, "cuda:0", nvml=fake_nvml),
    ):
        pass
    assert gpu.set_limit_calls == []
    assert fake_nvml.shutdown_calls == 1


def test_the_device_limits_are_the_edges_of_the_range(fake_nvml):
    gpu = fake_nvml.add_gpu()
    for watts in (100, 400):
        with gpu_power_limit(watts, "cuda:0", nvml=fake_nvml):
            assert gpu.power_limit_mw == watts * 1000


def test_no_gpu_is_refused(fake_nvml, broken_nvml):
    with (
        pytest.raises(ConfigError, match="needs a GPU: this trial runs on cpu"),
        gpu_power_limit(200, "cpu", nvml=fake_nvml),
    ):
        pass
    with (
        pytest.raises(ConfigError, match=r"NVML could not start.*Driver Not Loaded"),
        gpu_power_limit(200, "cuda:0", nvml=broken_nvml),
    ):
        pass
    with (
        pytest.raises(ConfigError, match="no GPU cuda:0"),
        gpu_power_limit(200, "cuda:0", nvml=fake_nvml),
    ):
        pass
    fake_nvml.add_gpu()
    with (
        pytest.raises(ConfigError, match=r"no GPU cuda:1 \(1 visible\)"),
        gpu_power_limit(200, "cuda:1", nvml=fake_nvml),
    ):
        pass
    assert fake_nvml.shutdown_calls == fake_nvml.init_calls


def test_a_gpu_without_power_management_is_refused(fake_nvml, monkeypatch):
    fake_nvml.add_gpu()

    def unsupported(handle):
        raise FakeNvmlError("Not Supported", NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetPowerManagementLimitConstraints", unsupported)
    with (
        pytest.raises(ConfigError, match=r"cannot limit the power of .*Not Supported"),
        gpu_power_limit(200, "cuda:0", nvml=fake_nvml),
    ):
        pass


def test_the_visible_gpu_is_the_one_limited(fake_nvml, monkeypatch):
    first, second = fake_nvml.add_gpu(), fake_nvml.add_gpu()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with gpu_power_limit(150, "cuda:0", nvml=fake_nvml) as limit:
        assert limit is not None and limit.nvml_index == 1
        assert (first.power_limit_mw, second.power_limit_mw) == (300_000, 150_000)
    assert second.power_limit_mw == 300_000 and first.set_limit_calls == []


def test_parallel_trials_on_one_gpu_are_refused(fake_nvml, monkeypatch):
    gpu = fake_nvml.add_gpu()
    monkeypatch.setenv(ENV_PARALLEL_TRIALS, "2")
    with (
        pytest.raises(ConfigError, match="device-wide"),
        gpu_power_limit(200, "cuda:0", nvml=fake_nvml),
    ):
        pass
    assert gpu.set_limit_calls == []
    monkeypatch.setenv(ENV_OWN_DEVICES, "gpu")  # one GPU per worker: allowed
    with gpu_power_limit(200, "cuda:0", nvml=fake_nvml):
        assert gpu.power_limit_mw == 200_000


def test_a_restore_failure_is_loud(fake_nvml, capsys):
    gpu = fake_nvml.add_gpu()
    with (
        pytest.raises(WattwiseError, match=r"nvidia-smi -i 0 -pl 300"),
        gpu_power_limit(200, "cuda:0", nvml=fake_nvml),
    ):
        gpu.set_limit_errors = [FakeNvmlError("GPU is lost")]
    err = capsys.readouterr().err
    assert "could not restore the power limit" in err and "GPU is lost" in err
    assert fake_nvml.shutdown_calls == 1


def test_a_restore_failure_does_not_hide_the_trial_error(fake_nvml, capsys):
    gpu = fake_nvml.add_gpu()
    with (
        pytest.raises(RuntimeError, match="the trial failed"),
        gpu_power_limit(200, "cuda:0", nvml=fake_nvml),
    ):
        gpu.set_limit_errors = [FakeNvmlError("GPU is lost")]
        raise RuntimeError("the trial failed")
    assert "could not restore the power limit" in capsys.readouterr().err


def test_sigterm_restores_then_runs_the_previous_handler(fake_nvml):
    gpu = fake_nvml.add_gpu()
    seen: list[int] = []

    def previous(signum, frame):  # what ``wattwise sweep`` installs: stop as Ctrl-C does
        seen.append(gpu.power_limit_mw)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with pytest.raises(KeyboardInterrupt), gpu_power_limit(200, "cuda:0", nvml=fake_nvml):
            assert signal.getsignal(signal.SIGTERM) is not previous
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        assert seen == [300_000]  # restored before the previous handler ran
        assert gpu.set_limit_calls == [200_000, 300_000]  # once, not again on exit
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
from tests.energy.conftest import FakeNvml
from wattwise.energy.power_limit import GpuPowerLimit, gpu_power_limit

class Logged(FakeNvml):
    def nvmlDeviceSetPowerManagementLimit(self, handle, limit_mw):
        super().nvmlDeviceSetPowerManagementLimit(handle, limit_mw)
        print("set", limit_mw, flush=True)

nvml = Logged()
nvml.add_gpu()
"""


def _run(body: str) -> subprocess.CompletedProcess[str]:
    code = _SCRIPT.format(root=str(ROOT)) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_sigterm_with_the_default_action_restores_and_still_terminates():
    done = _run("""
        with gpu_power_limit(200, "cuda:0", nvml=nvml):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):
                pass
        print("not reached", flush=True)
    """)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert done.stdout.split("\n")[:2] == ["set 200000", "set 300000"]
    assert "not reached" not in done.stdout


def test_an_exit_without_leaving_the_context_restores_at_exit():
    done = _run("""
        GpuPowerLimit(200, "cuda:0", nvml=nvml).__enter__()  # never exited: atexit restores
        print("leaving", flush=True)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["set", "200000", "leaving", "set", "300000"]
