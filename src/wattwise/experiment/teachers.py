"""Distillation teachers of a study: trained once, stored in the study folder, reused.

A trial whose technique starts with ``distill:<model>`` needs a trained teacher. It is trained
with the trial's own training settings on the same data, once per (teacher, data, settings):
looked up, in order, in the caller's cache, in ``teacher_dir`` (``<name>-<key>.pt``, a wattwise
checkpoint whose ``result`` holds the teacher's measured training), and else trained here, in
the trial's monitor. Files are written atomically under a unique temporary name, because
workers may race.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from wattwise.data import DatasetSplits
from wattwise.data.types import DatasetInfo
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.experiment.spec import TrialSpec, trial_hash
from wattwise.models import create_model
from wattwise.optimize.distill_config import SELF_TEACHER
from wattwise.optimize.distill_teacher import train_teacher
from wattwise.train.checkpoint import load_checkpoint, save_checkpoint
from wattwise.train.config import TrainConfig

#: Folder (below the study folder) of trained distillation teachers, shared by trials.
TEACHER_DIR = "teachers"

#: A cache the caller owns: ``("data", ...)`` -> DatasetSplits, ``("teacher", key)`` -> teacher.
TrialCache = MutableMapping[tuple[Any, ...], Any]


class TrialFailure(Exception):
    """A trial that ended without a result (divergence, out of memory); ``str`` is the reason."""


def model_spec_for(name: str, info: DatasetInfo, width: float = 1.0) -> dict[str, Any]:
    """``{"name", **create_model arguments}`` of registry model ``name`` for a dataset."""
    return {
        "name": name,
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": info.image_size,
        "width": width,
    }


@dataclass(frozen=True)
class Teacher:
    """A trained teacher and what it cost.

    Attributes:
        module: The teacher (width 1.0, no pretrained weights), on CPU.
        summary: Its training's energy, provenance, duration, test accuracy and the trial that
            trained it (JSON-safe).
        key: Its identity (hash of teacher, data and training settings).
        path: Its file in ``teacher_dir``, or ``None``.
        training: Its training's measurement when it was trained in this call, else ``None``.
    """

    module: nn.Module
    summary: dict[str, Any]
    key: str
    path: Path | None
    training: Measurement | None

    def details(self) -> dict[str, Any]:
        """What a trial records about its teacher (``details["teacher"]``)."""
        return {
            **self.summary,
            "key": self.key,
            "trained_here": self.training is not None,
            "path": str(self.path) if self.path is not None else None,
        }


def teacher_for(
    spec: TrialSpec,
    name: str,
    data: DatasetSplits,
    monitor: EnergyMonitor,
    cache: TrialCache | None,
    teacher_dir: str | Path | None,
    teacher_kwargs: Mapping[str, Any] | None = None,
) -> Teacher:
    """The trained teacher ``name`` for ``spec``'s data and training settings, built with
    ``teacher_kwargs`` (the step's ``teacher_kwargs``, e.g. ``width``) over the dataset's
    classes and channels.

    Raises:
        TrialFailure: The teacher's training diverged or ran out of memory.
    """
    tc: TrainConfig = spec.train
    teacher_spec = (  # "self": the trial's own model, trained as the trial trains it
        model_spec_for(spec.model, data.info, spec.width)
        if name == SELF_TEACHER
        else {**model_spec_for(name, data.info), **dict(teacher_kwargs or {})}
    )
    key = trial_hash(
        {
            "teacher": teacher_spec,
            "dataset": spec.dataset,
            "image_size": spec.image_size,
            "val_fraction": spec.val_fraction,
            "seed": tc.seed,
            "train": tc.to_dict(),
        }
    )
    path = Path(teacher_dir) / f"{name}-{key}.pt" if teacher_dir is not None else None
    entry = cache.get(("teacher", key)) if cache is not None else None
    if entry is None and path is not None and path.is_file():
        checkpoint = load_checkpoint(path)
        entry = (checkpoint.state_dict, checkpoint.result)
    training = None
    if entry is None:
        module, result = train_teacher(teacher_spec, data, tc, monitor=monitor)
        if result.status != "ok" or result.fit is None:
            raise TrialFailure(f"teacher {name} {result.status}: {result.reason}")
        training = result.fit
        summary = {
            "model": teacher_spec,
            "train_energy_j": result.train_energy_j,
            "train_energy_provenance": result.fit.total_provenance,
            "train_duration_s": result.fit.duration_s,
            "test_accuracy": result.test_accuracy,
            "trained_by_trial": spec.trial_id,
        }
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        entry = (state, summary)
        if path is not None:
            save_shared(path, module, teacher_spec, tc, spec, summary)
    state, summary = entry
    if cache is not None:
        cache[("teacher", key)] = entry
    module = create_model(**teacher_spec)
    module.load_state_dict(state)
    return Teacher(module, {"model": teacher_spec, **summary}, key, path, training)


def save_shared(
    path: Path,
    teacher: nn.Module,
    teacher_spec: dict[str, Any],
    tc: TrainConfig,
    spec: TrialSpec,
    summary: dict[str, Any],
) -> None:
    """Writes a model that trials share (a teacher, a trained baseline) as a wattwise checkpoint,
    atomically under a unique temporary name (workers may race); a folder that cannot be
    written costs time, not results."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        save_checkpoint(
            tmp,
            teacher,
            model_spec=teacher_spec,
            train_config=tc.to_dict(),
            dataset={"name": spec.dataset, "image_size": spec.image_size, "seed": tc.seed},
            result=summary,
        )
        os.replace(tmp, path)
    except OSError:  # a cache that cannot be written costs time, not results
        with contextlib.suppress(OSError):
            tmp.unlink()
