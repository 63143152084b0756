"""What a trial records about its device: versions, GPUs, driver and a stable ``device_id``.

The CPU path runs for real; the CUDA path runs with ``torch.cuda`` monkeypatched and the fake NVML
of the energy tests, so that it needs no GPU. Describing the device never initializes CUDA.
"""

from __future__ import annotations

import platform
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.energy.conftest import FakeNvml
from wattwise.energy.cpu_model import cpu_model_name
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.nvml import NvmlMeter
from wattwise.experiment.environment import environment

UUID_A = "GPU-ab12cd34-1111-2222-3333-444455556666"
UUID_B = "GPU-ef56ab78-1111-2222-3333-444455556666"
H200 = "NVIDIA H200"


class DriverNvml(FakeNvml):
    """The fake NVML of the energy tests, with the driver version (a real pynvml function)."""

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"570.124.06"  # older bindings return bytes


def test_the_fake_driver_query_exists_in_pynvml() -> None:
    pynvml = pytest.importorskip("pynvml")
    assert hasattr(pynvml, "nvmlSystemGetDriverVersion")


def _no_cuda_init(monkeypatch: pytest.MonkeyPatch, *, gpus: int = 2) -> None:
    """A host with ``gpus`` GPUs on which this process has not initialized CUDA: any call that
    would initialize it fails the test."""

    def initializes(*args: object, **kwargs: object) -> None:
        raise AssertionError("describing the device initialized CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    for name in ("init", "get_device_properties", "get_device_name", "current_device"):
        monkeypatch.setattr(torch.cuda, name, initializes)


def test_cpu_trial_records_versions_threads_and_its_device_id() -> None:
    info = environment("cpu")
    host, cpu = platform.node(), cpu_model_name()
    assert info["device"] == "cpu"
    assert info["device_id"] == f"cpu:{cpu}@{host}"
    assert info["hostname"] == host and info["cpu_model"] == cpu
    assert info["torch"] == torch.__version__
    assert info["cuda"] == torch.version.cuda
    assert info["cudnn"] == (
        torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    )
    assert info["torch_threads"] == torch.get_num_threads()
    assert "driver" in info  # None without NVML


def test_cpu_trial_on_a_gpu_host_does_not_initialize_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_cuda_init(monkeypatch)
    info = environment("cpu")
    assert info["device_id"] == f"cpu:{cpu_model_name()}@{platform.node()}"
    assert info["cuda_available"] is True
    assert "gpus" not in info  # neither CUDA (not initialized) nor NVML (no meter) can say


def test_gpu_trial_reads_initialized_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where this process has initialized CUDA: name, UUID (``GPU-`` added, as NVML writes it)
    and total memory of every visible GPU; the device_id names the trial's GPU."""
    props = [
        SimpleNamespace(name="NVIDIA A100", uuid="ab12cd34-1111-2222-3333-444455556666",
                        total_memory=40 * 2**30),
        SimpleNamespace(name=H200, uuid="ef56ab78-1111-2222-3333-444455556666",
                        total_memory=141 * 2**30),
    ]  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    info = environment("cuda")  # no index: the current device
    assert info["gpus"] == [
        {"index": 0, "name": "NVIDIA A100", "uuid": UUID_A, "total_memory_bytes": 40 * 2**30},
        {"index": 1, "name": H200, "uuid": UUID_B, "total_memory_bytes": 141 * 2**30},
    ]
    assert info["device_id"] == f"cuda:{H200}:{UUID_B}"
    assert environment("cuda:0")["device_id"] == f"cuda:NVIDIA A100:{UUID_A}"


def test_gpu_trial_before_cuda_starts_reads_the_monitors_nvml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh process: CUDA is not initialized yet, so the GPUs, their memory and the driver
    come from the NVML that the trial's monitor has already opened."""
    _no_cuda_init(monkeypatch)
    nvml = DriverNvml()
    nvml.add_gpu(UUID_A)
    nvml.add_gpu(UUID_B, name=H200)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    meter = NvmlMeter(nvml, visible_devices="1,0")  # cuda:0 is NVML's GPU 1
    monitor = EnergyMonitor(meters=[meter])
    try:
        info = environment("cuda:0", monitor)
    finally:
        monitor.close()
    assert info["driver"] == "570.124.06"
    assert info["gpus"] == [
        {"index": 0, "name": H200, "uuid": UUID_B, "total_memory_bytes": 40 * 2**30},
        {"index": 1, "name": "NVIDIA A100-SXM4-40GB", "uuid": UUID_A,
         "total_memory_bytes": 40 * 2**30},
    ]  # fmt: skip
    assert info["device_id"] == f"cuda:{H200}:{UUID_B}"
    assert nvml.init_calls == 1  # the meter's own: describing opened nothing


def test_gpu_trial_with_no_source_is_still_one_stable_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_cuda_init(monkeypatch)
    info = environment("cuda:1")
    assert info["device_id"] == f"cuda:unknown:1@{platform.node()}"
    assert environment("cuda:1")["device_id"] == info["device_id"]
