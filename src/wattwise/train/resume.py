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
measured (:func:`wattwise.energy.segments.combine`: energies and durations add up, peaks take
the maximum, the power timeline keeps the time between the attempts). What
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

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


def uncounted_note(epoch: int) -> str:
    """The suspect note of a training resumed after ``epoch`` finished epochs."""
    return (
        f"resumed after epoch {epoch}: what the interrupted attempt spent after its last save "
        "was measured by nobody and is not counted (a lower bound)"
    )
