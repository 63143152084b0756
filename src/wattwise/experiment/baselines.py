"""Train once, compress many: the trained baselines that a study's trials share.

Trials with the same :func:`~wattwise.experiment.spec.training_key` (dataset, model, training
settings and seed; everything but the technique and the measurement settings) would train the
identical model. The first of them trains it; every other reuses the trained weights, so the
techniques are compared on the same weights and the study spends one training instead of one
per technique. A trained baseline is looked up, in order, in the caller's cache
(``("baseline", key)``) and in the study's ``baselines/`` folder (``<key>.pt``, a wattwise
checkpoint whose ``result`` holds what the training measured), so a resumed study or another
worker process reuses it too; it is written atomically under a unique temporary name.

Accounting (every joule in exactly one place): the trial that trained the baseline keeps its
``train`` and ``test`` phases; a trial that reused it has none, and records what it reused in
``details["baseline"]`` (``key``, ``trained_here``, ``trained_by_trial``,
``training_energy_j``). Analysis charges the training 1/k to each of the k trials with the same
key and counts it once for the study (:func:`wattwise.analysis.costs.baseline_shares`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.experiment.spec import TrialSpec, training_key, trial_hash
from wattwise.experiment.teachers import TrialCache, save_shared
from wattwise.train.checkpoint import load_checkpoint

#: Folder (below the study folder, next to ``teachers/``) of trained baselines.
BASELINE_DIR = "baselines"


def baseline_key(spec: TrialSpec) -> str:
    """The identity of the training ``spec`` runs: a hash of its training key."""
    return trial_hash({"training": training_key(spec.to_dict())})


@dataclass(frozen=True)
class TrainedBaseline:
    """Trained weights and what their training measured.

    Attributes:
        key: :func:`baseline_key` of the trials that share it.
        state: The trained ``state_dict`` (on CPU; never modified: trials load a copy).
        summary: What the training measured and the trial that ran it (JSON-safe):
            ``trained_by_trial``, ``training_energy_j`` (phases ``train`` + ``test``),
            ``train_energy_j`` and its provenance, ``history``, ``train`` (the training's
            details), ``memory_cap``.
        path: Its file in the study's ``baselines/`` folder, or ``None``.
    """

    key: str
    state: dict[str, torch.Tensor]
    summary: dict[str, Any]
    path: Path | None = None

    def details(self, trained_here: bool) -> dict[str, Any]:
        """What a trial records of the baseline it trained or reused (``details["baseline"]``)."""
        return {
            "key": self.key,
            "trained_here": trained_here,
            "trained_by_trial": self.summary.get("trained_by_trial"),
            "training_energy_j": self.summary.get("training_energy_j"),
            "path": str(self.path) if self.path is not None else None,
        }


def _path(folder: str | Path | None, key: str) -> Path | None:
    return Path(folder) / f"{key}.pt" if folder is not None else None


def find_baseline(
    spec: TrialSpec, cache: TrialCache | None, folder: str | Path | None
) -> TrainedBaseline | None:
    """The trained baseline of ``spec``'s training, from ``cache`` or ``folder``; ``None`` when
    it has not been trained yet (or its file cannot be read: it is then trained again)."""
    key = baseline_key(spec)
    if cache is not None and ("baseline", key) in cache:
        return cache[("baseline", key)]  # type: ignore[no-any-return]
    path = _path(folder, key)
    if path is None or not path.is_file():
        return None
    try:
        checkpoint = load_checkpoint(path)
    except Exception:  # a damaged file costs a training, not the trial
        return None
    found = TrainedBaseline(key, checkpoint.state_dict, dict(checkpoint.result), path)
    if cache is not None:
        cache[("baseline", key)] = found
    return found


def keep_baseline(
    spec: TrialSpec,
    model: nn.Module,
    model_spec: dict[str, Any],
    summary: dict[str, Any],
    cache: TrialCache | None,
    folder: str | Path | None,
) -> TrainedBaseline:
    """Keeps ``model``'s trained weights for the other trials of the same training: a copy in
    ``cache`` and a checkpoint in ``folder`` (when given)."""
    key = baseline_key(spec)
    path = _path(folder, key)
    shared = cache is not None or path is not None
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if shared else {}
    kept = TrainedBaseline(key, state, summary, path)
    if path is not None:
        with contextlib.suppress(OSError):  # an unwritable folder costs trainings, not results
            path.parent.mkdir(parents=True, exist_ok=True)
        save_shared(path, model, model_spec, spec.train, spec, summary)
    if cache is not None:
        cache[("baseline", key)] = kept
    return kept
