"""What this machine can measure: every meter, available or not and why (``wattwise devices``)."""

from __future__ import annotations

import platform
from typing import Any

import psutil

from wattwise.energy.cpu_model import CpuEstimateMeter, resolve_cpu_power_model
from wattwise.energy.memory import DramEstimateMeter
from wattwise.energy.meters import MeterSettings
from wattwise.energy.nvidia_smi import NvidiaSmiMeter
from wattwise.energy.nvml import NvmlMeter
from wattwise.energy.process import ProcessTree
from wattwise.energy.rapl import RaplMeter


def describe_devices(settings: MeterSettings | None = None) -> dict[str, Any]:
    """Probe every backend (never raising for absent hardware) and describe the machine.

    Returns:
        A JSON-ready dict: ``machine`` (CPU model, CPUs, memory), ``cpu_power_model`` (TDP and
        its source), ``meters`` (one entry per backend: available, provenance, components,
        detail or reason) and ``gpus``.
    """
    settings = settings or MeterSettings()
    tree = ProcessTree(settings.pid)
    power_model = resolve_cpu_power_model(settings.cpu_tdp_w, settings.cpu_threads)
    rapl = RaplMeter(settings.powercap_root)
    nvml = NvmlMeter(settings.nvml, visible_devices=settings.visible_devices)
    smi = NvidiaSmiMeter(settings.nvidia_smi, visible_devices=settings.visible_devices)
    cpu = CpuEstimateMeter(power_model, tree)
    dram = DramEstimateMeter(tree)
    meters = []
    for meter, provenance in (
        (rapl, "measured:rapl"),
        (nvml, "measured:nvml"),
        (smi, "measured:nvidia-smi"),
        (cpu, "estimated:tdp"),
        (dram, "estimated:dram-rss"),
    ):
        availability = meter.availability()
        meters.append(
            {
                "meter": meter.name,
                "available": availability.available,
                "provenance": provenance,
                "components": meter.components() if availability.available else [],
                "detail": availability.reason,
            }
        )
    gpus = nvml.gpus
    nvml.close()
    vm = psutil.virtual_memory()
    return {
        "machine": {
            "cpu_model": power_model.cpu_model,
            "logical_cpus": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False),
            "memory_bytes": vm.total,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "cpu_power_model": {
            "watts_per_cpu": power_model.watts_per_cpu,
            "tdp_w": power_model.tdp_w,
            "threads": power_model.threads,
            "source": power_model.source,
            "description": power_model.description,
        },
        "powercap_root": str(rapl.root),
        "meters": meters,
        "gpus": gpus,
    }
