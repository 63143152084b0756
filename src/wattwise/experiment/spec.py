"""Trials: one typed spec per point of a study's grid, and its stable identity.

    from wattwise.experiment.spec import expand_grid

    for spec in expand_grid(config):              # datasets x models x ... x GPU power limits
        print(spec.trial_id, spec.technique, spec.train.epochs, spec.measurement.inference_s)

A :class:`TrialSpec` holds the trial's complete :class:`~wattwise.train.TrainConfig` and its
:class:`~wattwise.config.MeasurementSettings`; ``to_dict()`` is the flat JSON that stores and
analysis read. Importing this module is cheap (no torch): TrainConfig is imported when a spec is
built.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wattwise.config import (
    CARBON_KEYS,
    CHECKPOINT_EVERY_S,
    TOP_LEVEL_TRAIN,
    MeasurementSettings,
    StudyConfig,
)
from wattwise.errors import ConfigError
from wattwise.validation import dump, fields_of, validate

#: Measurement settings that say where or how CO2e is counted, or how long a meter read may
#: take, not what is measured.
_NOT_MEASUREMENT_IDENTITY = (*CARBON_KEYS, "powercap_root", "read_timeout_s")
#: Measurement settings in the identity only when they differ from this value, so that trials
#: stored before the setting existed keep their ids. ``profile`` is identity: profiled steps run
#: slower (their energy is in the trial's training) and add profile windows.
_MEASUREMENT_IDENTITY_UNLESS = {"profile": False}

if TYPE_CHECKING:
    from wattwise.optimize.base import TechniqueConfig
    from wattwise.train.config import TrainConfig

#: What says where things are, not what the trial is: outside its identity. The carbon settings
#: are outside too: CO2e is computed from stored joules when results are analysed. So is
#: ``keep_models`` and ``checkpoint_every_s``: whether the trial's final model is kept, and how
#: often its training is saved to continue after an interruption, change nothing it measures.
_NOT_IDENTITY = (
    "trial_id",
    "study",
    "data_root",
    "download",
    "keep_models",
    "checkpoint_every_s",
)

#: Settings added after trials were stored -> the value they had before (the behaviour of then):
#: at that value a setting is left out of the identity and the training key, so that stored
#: trials keep their ids and their trained baselines.
_ADDED_LATER: dict[str, Any] = {"gpu_power_limit_w": None}


def _without_added_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not (k in _ADDED_LATER and v == _ADDED_LATER[k])}


@dataclass(frozen=True)
class TrialSpec:
    """One point of a study's grid: everything a trial's result depends on.

    ``trial_id`` is the first 16 hex digits of the SHA-256 of the canonical JSON of
    :meth:`identity`: :meth:`to_dict` without ``study``, ``data_root``, ``download`` and
    ``keep_models`` (names, locations and what is kept, not content) and without the carbon
    settings (``measurement.country``, ``carbon_intensity_g_per_kwh``, ``pue``). The same trial
    has the same id in every run, on every machine and under any key order.

    Attributes:
        train: The trial's complete training settings; ``epochs``, ``batch_size``, ``lr``,
            ``seed``, ``gpu_memory_gib``, ``gpu_power_limit_w``, ``optimizer`` and
            ``precision`` read them too.
        measurement: How the trial is measured.
        keep_models: Whether a trial run in a study folder saves its final model there
            (:mod:`wattwise.experiment.kept_models`; the study's ``keep_models``).
        checkpoint_every_s: How often a trial run in a study folder saves its running training
            there, at most, to continue from it when started again (:mod:`wattwise.train.resume`;
            the study's ``checkpoint_every_s``); ``None``: never.
    """

    study: str
    dataset: str
    model: str
    technique: str
    train: TrainConfig
    measurement: MeasurementSettings
    image_size: int | None
    width: float
    weights: str | None
    val_fraction: float
    data_root: str | None = None
    download: bool = False
    keep_models: bool = True
    checkpoint_every_s: float | None = CHECKPOINT_EVERY_S
    trial_id: str = field(init=False)

    def __post_init__(self) -> None:
        for name in ("width", "val_fraction"):  # 1 and 1.0 are the same trial
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "trial_id", trial_hash(self.identity()))

    def __hash__(self) -> int:
        return hash(self.trial_id)

    @property
    def epochs(self) -> int:
        return self.train.epochs

    @property
    def batch_size(self) -> int:
        return self.train.batch_size

    @property
    def lr(self) -> float:
        return self.train.lr

    @property
    def seed(self) -> int:
        return self.train.seed

    @property
    def gpu_memory_gib(self) -> float | None:
        return self.train.gpu_memory_gib

    @property
    def gpu_power_limit_w(self) -> float | None:
        return self.train.gpu_power_limit_w

    @property
    def optimizer(self) -> str:
        return self.train.optimizer

    @property
    def precision(self) -> str:
        return self.train.precision

    @property
    def steps(self) -> tuple[TechniqueConfig, ...]:
        """The technique as recipe steps (technique configs; frozen, so shared between specs)."""
        return _steps(self.technique)

    def identity(self) -> dict[str, Any]:
        """The content that ``trial_id`` hashes."""
        data = self.to_dict(with_id=False)
        content = {k: v for k, v in _without_added_defaults(data).items() if k not in _NOT_IDENTITY}
        content["measurement"] = {
            k: v
            for k, v in data["measurement"].items()
            if k not in _NOT_MEASUREMENT_IDENTITY
            and not (k in _MEASUREMENT_IDENTITY_UNLESS and v == _MEASUREMENT_IDENTITY_UNLESS[k])
        }
        return content

    def to_dict(self, *, with_id: bool = True) -> dict[str, Any]:
        """JSON-ready dict: the swept training settings at the top level, the other TrainConfig
        settings under ``train``, the measurement settings under ``measurement``, and
        ``trial_id`` (unless ``with_id`` is false)."""
        train = self.train.to_dict()
        top = {name: train.pop(name) for name in TOP_LEVEL_TRAIN}
        data = {
            "study": self.study,
            "dataset": self.dataset,
            "model": self.model,
            "technique": self.technique,
            **top,
            "image_size": self.image_size,
            "width": self.width,
            "weights": self.weights,
            "val_fraction": self.val_fraction,
            "train": train,
            "measurement": dump(self.measurement),
            "data_root": self.data_root,
            "download": self.download,
        }
        if not self.keep_models:  # only where off: the specs stored before it existed stay equal
            data["keep_models"] = False
        if self.checkpoint_every_s != CHECKPOINT_EVERY_S:  # the same: only where not the default
            data["checkpoint_every_s"] = self.checkpoint_every_s
        if with_id:
            data["trial_id"] = self.trial_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        """Inverse of :meth:`to_dict` (keys it does not know are ignored); ``trial_id`` is
        recomputed from the content. The previous version's ``gpu_memory_gb`` is read as
        ``gpu_memory_gib``.

        Raises:
            ConfigError: A training or measurement setting is invalid.
        """
        from wattwise.train.config import TrainConfig, current_keys

        data = current_keys(data)
        train_fields = fields_of(TrainConfig)
        train = {k: v for k, v in dict(data.get("train") or {}).items() if k in train_fields}
        train |= {name: data[name] for name in TOP_LEVEL_TRAIN if name in data}
        known = {*fields_of(MeasurementSettings), *CARBON_KEYS}
        measurement = {k: v for k, v in dict(data.get("measurement") or {}).items() if k in known}
        names = [name for name in cls.__dataclass_fields__ if name not in ("train", "measurement")]
        return cls(
            train=validate(TrainConfig, train, "trial spec: train"),
            measurement=validate(MeasurementSettings, measurement, "trial spec: measurement"),
            **{name: data[name] for name in names if name in data and name != "trial_id"},
        )


def trial_hash(content: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``content`` as canonical JSON (sorted keys)."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@functools.lru_cache(maxsize=512)
def _steps(technique: str) -> tuple[TechniqueConfig, ...]:
    """Parsed once per technique text: a grid of 31,104 trials has a handful of techniques."""
    from wattwise.optimize import parse_recipe

    return tuple(parse_recipe(technique))


def expand_grid(config: StudyConfig) -> list[TrialSpec]:
    """Every trial of the study: datasets x models x techniques x batch sizes x learning rates x
    epochs x seeds x GPU memory caps x GPU power limits, in that nesting order (the last varies
    fastest).

    Raises:
        ConfigError: The grid is empty, or two points are the same trial.
    """
    from wattwise.train.config import TrainConfig

    trials: list[TrialSpec] = []
    axes = itertools.product(
        config.datasets,
        config.models,
        config.techniques,
        config.batch_sizes,
        config.learning_rates,
        config.epochs,
        config.seeds,
        config.gpu_memory_gib,
        config.gpu_power_limits_w,
    )
    for dataset, model, technique, batch, lr, epochs, seed, cap, watts in axes:
        train = TrainConfig(
            **config.train,
            batch_size=batch,
            lr=lr,
            epochs=epochs,
            seed=seed,
            gpu_memory_gib=cap,
            gpu_power_limit_w=watts,
            optimizer=config.optimizer,
            precision=config.precision,
        )
        trials.append(
            TrialSpec(
                study=config.name,
                dataset=dataset,
                model=model,
                technique=technique,
                train=train,
                measurement=config.measurement,
                image_size=config.image_size,
                width=config.width,
                weights=config.weights,
                val_fraction=config.val_fraction,
                data_root=config.data_root,
                download=config.download,
                keep_models=config.keep_models,
                checkpoint_every_s=config.checkpoint_every_s,
            )
        )
    if not trials:
        raise ConfigError(f"study {config.name!r}: the grid is empty (every axis needs a value)")
    ids = [t.trial_id for t in trials]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"study {config.name!r}: the grid repeats a trial (duplicate values)")
    return trials


#: Spec keys (of ``TrialSpec.to_dict()``) that do not change what a trial's training computes.
_NOT_TRAINING = frozenset({*_NOT_IDENTITY, "technique", "seed", "measurement"})


def training_key(spec: Mapping[str, Any], *, seed: bool = True) -> str:
    """What a trial's training depends on, as text: its spec (``TrialSpec.to_dict()``) without
    the technique and the measurement settings, plus the technique's first step when that step
    trains the model (``distill:<teacher>``). Trials with the same key ran the identical
    training (``seed=False`` leaves the seed out: the key of a configuration over seeds)."""
    first = str(spec.get("technique") or "").split(",", 1)[0].strip()
    values = {k: v for k, v in _without_added_defaults(spec).items() if k not in _NOT_TRAINING}
    values["trains_by"] = first if first.startswith("distill") else "fit"
    if seed:
        values["seed"] = spec.get("seed")
    return json.dumps(values, sort_keys=True, default=str)
