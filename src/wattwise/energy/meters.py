"""Choosing meters: auto-detection, or exactly the ones a user asked for.

Absent hardware degrades, a request for it fails: in auto mode each component kind
(cpu, dram, gpu) gets the best available meter, and a kind with none is reported ``unavailable``
with the reasons; a meter named by the user that cannot measure raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Strict

from wattwise.energy.base import Availability, Meter, Provenance
from wattwise.energy.cpu_model import CpuEstimateMeter, resolve_cpu_power_model
from wattwise.energy.memory import DramEstimateMeter
from wattwise.energy.nvidia_smi import NvidiaSmiMeter
from wattwise.energy.nvml import NvmlMeter
from wattwise.energy.process import ProcessTree
from wattwise.energy.rapl import RaplMeter
from wattwise.errors import ConfigError
from wattwise.validation import PositiveInt, PositiveNumber, Text, config_dataclass

#: Meter names a user can ask for.
METER_NAMES = ("rapl", "nvml", "nvidia-smi", "cpu-estimate", "dram-estimate")


@config_dataclass
class MeterSettings:
    """Backend settings (each backend's root or handle can be substituted, e.g. by tests).

    Attributes:
        powercap_root: RAPL sysfs root (default ``$WATTWISE_POWERCAP_ROOT`` or
            ``/sys/class/powercap``).
        cpu_tdp_w: TDP of one CPU package in W for the CPU estimate (default: env, table,
            default).
        cpu_threads: Hardware threads that share that TDP.
        nvml: An NVML bindings module (default ``pynvml``).
        nvidia_smi: Path of ``nvidia-smi`` (default: found on PATH).
        visible_devices: A ``CUDA_VISIBLE_DEVICES`` value (default: the environment's; ``""``
            hides every GPU).
        pid: Root of the measured process tree (default: this process).
    """

    powercap_root: Text | None = None
    cpu_tdp_w: PositiveNumber | None = None
    cpu_threads: PositiveInt | None = None
    nvml: Any = None
    nvidia_smi: Text | None = None
    visible_devices: Annotated[str, Strict()] | None = None
    pid: PositiveInt | None = None


@dataclass
class MeterSet:
    """The meters in use, and what each component kind lacks (kind -> reason)."""

    meters: list[Meter]
    unavailable: dict[str, str] = field(default_factory=dict)
    probed: dict[str, Availability] = field(default_factory=dict)
    tree: ProcessTree | None = None
    #: Why a better meter was not used, per component kind (e.g. RAPL permission + the fix).
    notes: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        for meter in self.meters:
            meter.close()

    def unavailable_provenance(self) -> dict[str, Provenance]:
        return {kind: Provenance.unavailable(why) for kind, why in self.unavailable.items()}


def parse_meter_names(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"rapl,nvml"`` -> ``("rapl", "nvml")``; ``None``/``"auto"`` -> ``None`` (auto)."""
    if text is None:
        return None
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in names if n.strip()]
    if not names or names == ["auto"]:
        return None
    unknown = [n for n in names if n not in METER_NAMES]
    if unknown:
        raise ConfigError(f"unknown meter {unknown[0]!r}; choose from: {', '.join(METER_NAMES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"meter listed twice in {','.join(names)!r}")
    return tuple(names)


def _meter_names(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return parse_meter_names(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return parse_meter_names(value)
    return value  # not text: the type check below names what is wrong


#: Meter names that must work (``"rapl,nvml"`` or a list), or ``None``/``"auto"``: auto-detect.
MeterNames = Annotated[tuple[str, ...] | None, BeforeValidator(_meter_names)]


def create_meters(
    names: Sequence[str] | None = None, settings: MeterSettings | None = None
) -> MeterSet:
    """Build the meters: exactly ``names`` (each must work), or auto-detect when ``None``."""
    settings = settings or MeterSettings()
    tree = ProcessTree(settings.pid)
    if names is not None:
        names = parse_meter_names(list(names))
    if names is not None:
        return MeterSet([_build(name, settings, tree, required=True) for name in names], tree=tree)

    meters: list[Meter] = []
    probed: dict[str, Availability] = {}
    unavailable: dict[str, str] = {}

    rapl = RaplMeter(settings.powercap_root)
    probed["rapl"] = rapl.availability()
    rapl_components = rapl.components() if rapl.availability().available else []
    if rapl_components:
        meters.append(rapl)
    has_rapl_cpu = any(c.startswith("cpu") for c in rapl_components)
    has_rapl_dram = any(c.startswith("dram") for c in rapl_components)
    notes: dict[str, str] = {}
    if "permission" in probed["rapl"].reason.lower():
        notes["cpu"] = notes["dram"] = f"RAPL not used: {probed['rapl'].reason}"
    if not has_rapl_cpu:
        meters.append(_build("cpu-estimate", settings, tree, required=False))
    if not has_rapl_dram:
        meters.append(_build("dram-estimate", settings, tree, required=False))

    nvml = NvmlMeter(settings.nvml, visible_devices=settings.visible_devices, tree=tree)
    probed["nvml"] = nvml.availability()
    if nvml.availability().available:
        meters.append(nvml)
    else:
        smi = NvidiaSmiMeter(settings.nvidia_smi, visible_devices=settings.visible_devices)
        probed["nvidia-smi"] = smi.availability()
        if smi.availability().available:
            meters.append(smi)
        else:
            unavailable["gpu"] = (
                f"NVML: {nvml.availability().reason}; nvidia-smi: {smi.availability().reason}"
            )
    return MeterSet(meters, unavailable, probed, tree, notes)


def _build(name: str, settings: MeterSettings, tree: ProcessTree, *, required: bool) -> Meter:
    if name == "rapl":
        return RaplMeter(settings.powercap_root, required=required)
    if name == "nvml":
        return NvmlMeter(
            settings.nvml, required=required, visible_devices=settings.visible_devices, tree=tree
        )
    if name == "nvidia-smi":
        return NvidiaSmiMeter(
            settings.nvidia_smi, required=required, visible_devices=settings.visible_devices
        )
    if name == "cpu-estimate":
        model = resolve_cpu_power_model(settings.cpu_tdp_w, settings.cpu_threads)
        return CpuEstimateMeter(model, tree)
    if name == "dram-estimate":
        return DramEstimateMeter(tree)
    raise ConfigError(f"unknown meter {name!r}; choose from: {', '.join(METER_NAMES)}")
