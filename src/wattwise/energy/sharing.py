"""Trials that share a machine: what executors tell their workers, and what the monitor makes of it.

Device-wide meters (RAPL packages and DRAM, an NVML or nvidia-smi GPU) measure the whole device,
whatever runs on it. When an executor runs several trials at once on one machine, each trial's
device-wide energy includes the others'. The executor says so in every worker's environment:

``WATTWISE_PARALLEL_TRIALS=N``
    Up to N trials run at the same time on this machine (unset or 1: this one is alone).
``WATTWISE_OWN_DEVICES=gpu``
    Device kinds (comma-separated: ``cpu``, ``dram``, ``gpu``) that each trial has to itself,
    e.g. the local-gpus executor and Ray in GPU mode pin one GPU per worker.

The :class:`~wattwise.energy.monitor.EnergyMonitor` reads both when it starts and marks every
device-wide component of another kind ``shared`` (``Provenance.shared``, also appended to its
detail). Per-process estimates (``cpu-estimate``, ``dram-estimate``) are never shared.

A GPU is also shared when someone else uses it, whatever the executor said: the NVML meter
lists the processes on each GPU (at most once a second) and reports those outside the measured
process tree in its readings (``Reading.shared``); every window open meanwhile is marked with
:func:`shared_by_processes`, the other PIDs counted. A GPU in MIG mode is marked with
:data:`MIG_NOTE`: NVML's energy is the whole GPU's, every MIG instance's work included. Several
reasons are all kept (:func:`add_shared`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace

from wattwise.energy.base import Provenance
from wattwise.errors import ConfigError

#: The shared note of a GPU in MIG mode.
MIG_NOTE = (
    "the GPU is in MIG mode: NVML measures the whole GPU, the work of every MIG instance "
    "included, not this process's share"
)

#: At most this many PIDs are named in a shared note; the rest are counted.
MAX_LISTED_PIDS = 8

ENV_PARALLEL_TRIALS = "WATTWISE_PARALLEL_TRIALS"
ENV_OWN_DEVICES = "WATTWISE_OWN_DEVICES"


def parallel_env(trials: int, *, own_gpu: bool = False) -> dict[str, str]:
    """The environment an executor gives each of its ``trials`` parallel workers."""
    if trials <= 1:
        return {}
    env = {ENV_PARALLEL_TRIALS: str(trials)}
    if own_gpu:
        env[ENV_OWN_DEVICES] = "gpu"
    return env


def mark_shared(component: str, provenance: Provenance) -> Provenance:
    """``provenance`` of ``component``, marked shared if it is device-wide and shared now."""
    if provenance.scope != "device":
        return provenance
    note = shared_note(component.split(":", 1)[0])
    return add_shared(provenance, note) if note else provenance


def add_shared(provenance: Provenance, note: str) -> Provenance:
    """``provenance`` marked shared with ``note``, keeping a note it already has (both are in
    ``shared`` and in the detail)."""
    marked = provenance.with_shared(note)
    if provenance.shared:
        marked = replace(marked, shared=f"{provenance.shared}; {note}")
    return marked


def shared_by_processes(provenance: Provenance, pids: Iterable[int]) -> Provenance:
    """``provenance`` of a device that the processes ``pids`` (outside the measured tree) used
    during the window, marked shared: how many, and which (the first :data:`MAX_LISTED_PIDS`)."""
    others = sorted(set(pids))
    listed = ", ".join(str(pid) for pid in others[:MAX_LISTED_PIDS])
    if len(others) > MAX_LISTED_PIDS:
        listed += f" and {len(others) - MAX_LISTED_PIDS} more"
    count = f"{len(others)} other process{'es' if len(others) != 1 else ''}"
    note = (
        f"{count} used this GPU during the window (PIDs {listed}); its device-wide energy "
        "includes theirs"
    )
    return add_shared(provenance, note)


def shared_note(kind: str, environ: Mapping[str, str] | None = None) -> str:
    """Why a device-wide component of ``kind`` (``cpu``, ``dram``, ``gpu``, ``psys``) is shared,
    or ``""`` when this process has it to itself.

    Raises:
        ConfigError: ``WATTWISE_PARALLEL_TRIALS`` is not a positive whole number.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(ENV_PARALLEL_TRIALS, "").strip()
    if not text:
        return ""
    try:
        trials = int(text)
    except ValueError:
        trials = 0
    if trials < 1:
        raise ConfigError(f"{ENV_PARALLEL_TRIALS} must be a positive whole number, got {text!r}")
    own = {k.strip() for k in environ.get(ENV_OWN_DEVICES, "").split(",") if k.strip()}
    if trials == 1 or kind in own:
        return ""
    return (
        f"up to {trials} trials ran in parallel on this machine; this device-wide energy "
        f"includes theirs"
    )
