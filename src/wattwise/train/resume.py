"""Training that survives an interruption: the state of a running training, saved at the end of
an epoch, from which the same trial started again continues instead of training from scratch.

    resume = ResumeFile(study_dir / "checkpoints" / f"{trial_id}.pt", every_s=60)
    result = fit(model, data, config, resume=resume)   # continues after the last saved epoch

A trial starts again after a SLURM requeue (preemption, time limit), a sweep resumed after it was
killed, or ``--retry-failed`` after a worker crashed. :func:`~wattwise.train.loop.fit` saves the
state when an epoch ends and at least ``every_s`` seconds have passed since the training began or
was last saved (0: after every epoch but the last), and deletes the file when the training ends
with a status (``ok``, ``diverged``, ``oom``); an interrupted training leaves it behind.

The file (``torch.save``; it loads with ``weights_only=True``, nothing in it can run code) holds
the model's, optimizer's, learning-rate schedule's and gradient scaler's states, the random
number generators' states, the shuffling epoch, the early-stopping bookkeeping, the finished
epochs' records and the ``fit`` window's measurement so far. A state is resumed only by the
training that wrote it: its fingerprint (the training settings, the parameters' names and
shapes) must match, else the training starts from scratch. The resumed training is the one that
ran uninterrupted: same shuffles, same augmentations, same weights (tested on CPU).

Accounting (every joule in exactly one place): the ``fit`` measurement of a resumed training is
the join of what the earlier attempts measured up to their last save and what this attempt
measured (:func:`join_measurements`: energies and durations add up, peaks take the maximum). What
an interrupted attempt did after its last save (at most ``every_s`` seconds and one epoch) was
measured by nobody; every component of the joined measurement is marked suspect saying so: its
energy is a lower bound. Saving costs time and energy inside the ``fit`` window (it is the
training's); ``every_s`` bounds how often it is paid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.energy.base import ComponentEnergy, Measurement, PowerSample, Provenance

FORMAT = "wattwise-resume/1"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumeFile:
    """Where a training's state is saved, and how often (see the module docstring).

    Attributes:
        path: The file (its folder is created on the first save).
        every_s: Seconds between two saves at least (0: at the end of every epoch).
    """

    path: Path
    every_s: float

    def load(self, fingerprint: str) -> dict[str, Any] | None:
        """The saved state of the training with ``fingerprint``; ``None`` when there is none,
        it cannot be read or another training wrote it (it is then trained from scratch)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged file costs the epochs it held, not the trial
            _log.warning("cannot resume from %s (%s): training from scratch", self.path, err)
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return None
        return state if state.get("fingerprint") == fingerprint else None

    def save(self, state: dict[str, Any]) -> None:
        """Writes ``state`` atomically (a unique temporary file, then a rename). A failure is
        logged, never raised: it costs the ability to resume, not the training."""
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            with os.fdopen(fd, "wb") as out:
                torch.save({"format": FORMAT, **state}, out)
            os.replace(tmp, self.path)
        except (OSError, RuntimeError) as err:
            _log.warning("cannot save the training state to %s: %s", self.path, err)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def discard(self) -> None:
        """Deletes the file (the training ended): nothing to resume any more."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def fingerprint(model: nn.Module, train_config: dict[str, Any]) -> str:
    """What a saved state must match to be resumed: the training settings and the parameters'
    names and shapes."""
    shapes = [[name, list(t.shape)] for name, t in model.state_dict().items()]
    return json.dumps({"train": train_config, "shapes": shapes}, sort_keys=True, default=str)


def saved_state(
    key: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    device: torch.device,
    since_best: int,
) -> dict[str, Any]:
    """What is saved of a training after ``epoch`` finished epochs (the loop adds its records:
    ``attempts``, ``best``, ``history``, ``fit``): the model on the CPU, the optimizer, the
    schedule, the scaler and the random number generators (CPU, and the CUDA device's)."""
    rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "fingerprint": key,
        "epoch": epoch,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng,
        "since_best": since_best,
    }


def restore_state(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    device: torch.device,
) -> int:
    """Loads what :func:`saved_state` saved; returns its number of finished epochs."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["cpu"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    return int(state["epoch"])


def join_measurements(parts: Sequence[Measurement], *, note: str | None = None) -> Measurement:
    """One window made of ``parts`` measured one after another (the segments of one training):
    energies, durations and samples add up, peaks take the maximum, the power timelines follow
    each other. A component some part could not measure is unavailable in the join. ``note``
    (when given) marks every component suspect with it. The name, start and carbon settings are
    the first part's."""
    first = parts[0]
    if len(parts) == 1 and note is None:
        return first
    names = list(dict.fromkeys(c.component for p in parts for c in p.components))
    duration = sum(p.duration_s for p in parts)
    components = []
    for name in names:
        found = [next((c for c in p.components if c.component == name), None) for p in parts]
        last = next(c for c in reversed(found) if c is not None)
        energies = [c.energy_j if c is not None else None for c in found]
        if any(e is None for e in energies):
            missing = next(c for c in found if c is None or c.energy_j is None)
            provenance = (
                missing.provenance
                if missing is not None
                else Provenance.unavailable(f"{name}: not measured in every segment")
            )
            energy = None
        else:
            energy = float(sum(energies))  # type: ignore[arg-type]
            provenance = last.provenance
            if note is not None:
                provenance = provenance.with_suspect(note)
        peaks = [c.peak_power_w for c in found if c is not None and c.peak_power_w is not None]
        components.append(
            ComponentEnergy(
                component=name,
                energy_j=energy,
                provenance=provenance,
                avg_power_w=energy / duration if energy is not None and duration > 0 else None,
                peak_power_w=max(peaks) if peaks else None,
                nested_in=last.nested_in,
            )
        )
    timeline: list[PowerSample] | None = []
    offset = 0.0
    for part in parts:
        if part.timeline is None or timeline is None:
            timeline = None
        else:
            timeline.extend(PowerSample(s.t_s + offset, s.power_w) for s in part.timeline)
        offset += part.duration_s
    gpu_memory: dict[str, int] = {}
    for part in parts:
        for gpu, used in part.peak_gpu_memory_bytes.items():
            gpu_memory[gpu] = max(used, gpu_memory.get(gpu, 0))
    joined = replace(
        first,
        duration_s=duration,
        components=tuple(components),
        peak_power_w=_max(p.peak_power_w for p in parts),
        peak_rss_bytes=_max(p.peak_rss_bytes for p in parts),
        peak_gpu_memory_bytes=gpu_memory,
        peak_cuda_allocated_bytes=_max(p.peak_cuda_allocated_bytes for p in parts),
        peak_cuda_reserved_bytes=_max(p.peak_cuda_reserved_bytes for p in parts),
        timeline=tuple(timeline) if timeline is not None else None,
        profile=None,
        samples=sum(p.samples for p in parts),
    )
    carbon = first.carbon
    if carbon is not None:  # the same intensity and PUE over the joined energy
        co2e = joined.total_energy_j / 3.6e6 * carbon.intensity_g_per_kwh * carbon.pue
        joined = replace(joined, carbon=replace(carbon, co2e_g=co2e))
    return joined


def _max(values: Any) -> Any:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def uncounted_note(epoch: int) -> str:
    """The suspect note of a training resumed after ``epoch`` finished epochs."""
    return (
        f"resumed after epoch {epoch}: what the interrupted attempt spent after its last save "
        "was measured by nobody and is not counted (a lower bound)"
    )
