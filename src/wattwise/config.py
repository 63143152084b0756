"""A study as one YAML file: validated sections, the loader, the resolved YAML.

    from wattwise.config import load_study_config, resolved_yaml
    from wattwise.experiment.spec import expand_grid

    config = load_study_config("study.yaml")      # ConfigError: one line naming the key
    trials = expand_grid(config)                  # datasets x models x techniques x hyperparameters
    (out / "study.resolved.yaml").write_text(resolved_yaml(config))

YAML is loaded safely: nothing in a study file can build Python objects or run code. Every
section is a :func:`~wattwise.validation.config_dataclass`, so every validation failure is a
:class:`~wattwise.errors.ConfigError` whose message is one line, e.g.
``study.yaml: models[1]: unknown model 'resnet19'; choose from: ...``. See docs/experiments.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Strict, ValidationInfo, field_validator, model_serializer, model_validator
from pydantic_core import ArgsKwargs

from wattwise.energy.carbon import CarbonConfig
from wattwise.energy.meters import MeterNames, MeterSettings
from wattwise.energy.monitor import MonitorConfig, SampleRate
from wattwise.errors import ConfigError
from wattwise.files import read_regular_text
from wattwise.recipe_space import RecipeSearchStudy
from wattwise.run_settings import ExecutorSettings as ExecutorSettings  # re-exported
from wattwise.run_settings import MlflowSettings as MlflowSettings
from wattwise.run_settings import SearchSettings as SearchSettings
from wattwise.run_settings import TrackingSettings as TrackingSettings
from wattwise.train.config import Optimizer, Precision
from wattwise.validation import (
    Bool,
    Fraction,
    KeyedError,
    NonNegativeInt,
    NonNegativeNumber,
    PositiveInt,
    PositiveNumber,
    Text,
    checked,
    config_dataclass,
    dump,
    fields_of,
    flat,
    validate,
    validate_nested,
)

# --- value types -----------------------------------------------------------------------------


def _as_tuple(value: Any) -> Any:
    """A sweep axis may be one value or a list of values."""
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def _check_dataset(name: str) -> str:
    from wattwise.data import list_datasets

    key = name.strip().lower()
    known = list_datasets()
    if key not in known:
        raise ValueError(f"unknown dataset {name!r}; choose from: {', '.join(known)}")
    return key


def _check_model(name: str) -> str:
    from wattwise.models import list_models

    key = name.strip()
    known = list_models()
    if key not in known:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(known)}")
    return key


def _check_technique(text: str) -> str:
    from wattwise.optimize.grammar import canonical_recipe

    return canonical_recipe(text)  # its ConfigError is a ValueError: pydantic's kind


def _check_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise ValueError(f"use letters, digits, '.', '_' and '-' (no spaces), got {text!r}")
    return text


StudyName = Annotated[str, Strict(), checked(_check_name)]
DatasetName = Annotated[str, Strict(), checked(_check_dataset)]
ModelName = Annotated[str, Strict(), checked(_check_model)]
#: A recipe, kept as its canonical text (``prune:structured:.50`` -> ``prune:structured:0.5``).
Technique = Annotated[str, Strict(), checked(_check_technique)]


def _check_store(url: str) -> str:
    if not url.lower().startswith(("postgresql://", "postgres://")):  # the value is not echoed:
        raise ValueError(  # it may hold a password
            "use a postgresql://user@host:port/database URL (leave store out for the study "
            "folder's results.sqlite)"
        )
    return url


#: A PostgreSQL results store (:mod:`wattwise.experiment.store_postgres`).
StoreURL = Annotated[str, Strict(), checked(_check_store)]

# --- sections --------------------------------------------------------------------------------

#: ``measurement.<key>`` -> the :class:`CarbonConfig` field it sets: a study writes the carbon
#: settings flat, next to the other measurement settings.
CARBON_KEYS = {
    "country": "country",
    "carbon_intensity_g_per_kwh": "intensity_g_per_kwh",
    "pue": "pue",
}


@config_dataclass
class MeasurementSettings:
    """How every trial is measured (see docs/measuring.md).

    The monitor's and the carbon settings' types and defaults are theirs
    (:class:`~wattwise.energy.monitor.MonitorConfig`, :class:`CarbonConfig`). In a study, and in
    :func:`~wattwise.validation.dump`, the carbon settings are keys of this section:
    ``country``, ``carbon_intensity_g_per_kwh`` and ``pue`` (see :data:`CARBON_KEYS`).

    Attributes:
        sample_hz: Background power sampling rate (0.1 to 1000 Hz).
        meters: Meter names that must work, or ``None``/``auto`` to auto-detect.
        cpu_tdp_w: TDP of one CPU package in W for the CPU estimate (``None``: detect).
        cpu_threads: Hardware threads that share that TDP (``None``: from the TDP table or this
            machine).
        powercap_root: RAPL sysfs root (``None``: ``$WATTWISE_POWERCAP_ROOT`` or
            ``/sys/class/powercap``); a location, not part of a trial's identity.
        carbon: Grid carbon intensity (by country, or given in g CO2e/kWh) and facility PUE.
        inference_s: Seconds of the inference measurement (0 skips it).
        inference_batch_size: Batch size of the inference measurement.
        profile: Profile operators with torch.profiler (a few training steps and each variant's
            inference; see docs/measuring.md, "Profiling operators"). Part of a trial's
            identity when on: the profiled steps run slower and cost more.
        read_timeout_s: The longest one meter read may take (a sensor that hangs is
            unavailable for the windows open then: docs/measuring.md, "Timeouts"); how, not
            what, is measured: not part of a trial's identity.
    """

    sample_hz: SampleRate = MonitorConfig.sample_hz
    meters: MeterNames = None
    cpu_tdp_w: PositiveNumber | None = None
    cpu_threads: PositiveInt | None = None
    powercap_root: Text | None = None
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    inference_s: NonNegativeNumber = 3.0
    inference_batch_size: PositiveInt = 64
    profile: Bool = False
    read_timeout_s: PositiveNumber = MonitorConfig.read_timeout_s

    @model_validator(mode="before")
    @classmethod
    def _nest_carbon_keys(cls, data: Any) -> Any:
        if isinstance(data, ArgsKwargs):
            return ArgsKwargs(data.args, _nest_carbon(cls, dict(data.kwargs or {})))
        if isinstance(data, Mapping):
            return _nest_carbon(cls, dict(data))
        return data

    @model_serializer(mode="wrap")
    def _flat_carbon_keys(self, handler: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in handler(self).items():
            if key == "carbon":
                out |= {flat_key: value[name] for flat_key, name in CARBON_KEYS.items()}
            else:
                out[key] = value
        return out

    def monitor_config(self) -> MonitorConfig:
        """The :class:`~wattwise.energy.monitor.MonitorConfig` these settings describe."""
        return MonitorConfig(
            meters=self.meters,
            sample_hz=self.sample_hz,
            read_timeout_s=self.read_timeout_s,
            carbon=self.carbon,
            meter_settings=MeterSettings(
                powercap_root=self.powercap_root,
                cpu_tdp_w=self.cpu_tdp_w,
                cpu_threads=self.cpu_threads,
            ),
        )


def _nest_carbon(cls: type[MeasurementSettings], data: dict[str, Any]) -> dict[str, Any]:
    """``{country: DEU, pue: 1.2, ...}`` -> ``{carbon: CarbonConfig(...), ...}``."""
    keys = [k for name in fields_of(cls) for k in (CARBON_KEYS if name == "carbon" else (name,))]
    for key in data:
        if key not in keys and key != "carbon":
            raise KeyedError((key,), f"unknown key; allowed keys: {', '.join(keys)}")
    given = {key: data.pop(key) for key in CARBON_KEYS if key in data}
    if given and "carbon" in data:
        raise KeyedError(("carbon",), f"give either carbon or {', '.join(given)}, not both")
    if given:
        names = {name: key for key, name in CARBON_KEYS.items()}
        carbon = {CARBON_KEYS[key]: value for key, value in given.items()}
        data["carbon"] = validate_nested(CarbonConfig, carbon, keys=names)
    return data


#: Seconds between two saves of a trial's running training, at most, by default
#: (:mod:`wattwise.train.resume`; the study's ``checkpoint_every_s``).
CHECKPOINT_EVERY_S = 60.0

#: The sweep axes of a study, outermost first.
_AXES = (
    "datasets",
    "models",
    "techniques",
    "batch_sizes",
    "learning_rates",
    "epochs",
    "seeds",
    "gpu_memory_gib",
    "gpu_power_limits_w",
)

#: Study keys of the previous version -> why they are refused now (stored data with these keys is
#: still read: ``wattwise.train.config.RENAMED_KEYS``).
RENAMED_STUDY_KEYS = {
    "gpu_memory_gb": "renamed to gpu_memory_gib (the cap is in GiB, 2**30 bytes); "
    "write gpu_memory_gib: [...]",
}

#: TrainConfig fields that a study sets at its top level (swept, or study-wide) -> study key.
TOP_LEVEL_TRAIN = {
    "batch_size": "batch_sizes",
    "lr": "learning_rates",
    "epochs": "epochs",
    "seed": "seeds",
    "gpu_memory_gib": "gpu_memory_gib",
    "gpu_power_limit_w": "gpu_power_limits_w",
    "optimizer": "optimizer",
    "precision": "precision",
}


@config_dataclass
class StudyConfig:
    """One study: what to sweep, how to train, measure and run. See docs/experiments.md.

    The sweep axes (``datasets`` ... ``gpu_memory_gib``, ``gpu_power_limits_w``) take a list, or
    one value. Their defaults reproduce the seed study's grid: batch sizes 32/64/128, learning
    rates 0.001/0.01/0.1 and 10/20/30 epochs; ``gpu_power_limits_w`` (watts, ``null``: the
    GPU's limit unchanged) is ``[null]``. ``train`` holds the other
    :class:`~wattwise.train.TrainConfig` settings (momentum, weight_decay, schedule, ...),
    validated by TrainConfig and resolved with all its defaults.
    """

    name: StudyName
    output_dir: Text = "results"
    store: StoreURL | None = None  # a shared PostgreSQL store; default: results.sqlite
    datasets: tuple[DatasetName, ...] = ("digits",)
    data_root: Text | None = None
    image_size: PositiveInt | None = None
    val_fraction: Fraction = 0.1
    download: Bool = False
    models: tuple[ModelName, ...] = ("small_cnn",)
    width: PositiveNumber = 1.0
    weights: Text | None = None
    techniques: tuple[Technique, ...] = ("baseline",)
    batch_sizes: tuple[PositiveInt, ...] = (32, 64, 128)
    learning_rates: tuple[PositiveNumber, ...] = (0.001, 0.01, 0.1)
    epochs: tuple[PositiveInt, ...] = (10, 20, 30)
    seeds: tuple[NonNegativeInt, ...] = (0,)
    gpu_memory_gib: tuple[PositiveNumber | None, ...] = (None,)
    gpu_power_limits_w: tuple[PositiveNumber | None, ...] = (None,)
    optimizer: Optimizer = "sgd"
    precision: Precision = "fp32"
    train: dict[str, Any] = field(default_factory=dict)
    measurement: MeasurementSettings = field(default_factory=MeasurementSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    recipe_search: RecipeSearchStudy | None = None
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    keep_models: Bool = True  # each ok trial's final model in <study>/models/<trial_id>/
    # a running training's state, saved at most this often, in <study>/checkpoints/; null: never
    checkpoint_every_s: NonNegativeNumber | None = CHECKPOINT_EVERY_S

    @model_validator(mode="before")
    @classmethod
    def _refuse_renamed_keys(cls, data: Any) -> Any:
        keys = (data.kwargs or {}) if isinstance(data, ArgsKwargs) else data
        if isinstance(keys, Mapping):
            for key in keys:
                if key in RENAMED_STUDY_KEYS:
                    raise KeyedError((key,), RENAMED_STUDY_KEYS[key])
        return data

    @field_validator(*_AXES, mode="before")
    @classmethod
    def _axis(cls, value: Any) -> Any:
        return _as_tuple(value)

    @field_validator(*_AXES)
    @classmethod
    def _axis_values(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if not value:
            raise ValueError("must not be empty")
        for i, item in enumerate(value):
            if item in value[:i]:
                raise KeyedError((i,), f"duplicate value {item!r} (also at [{value.index(item)}])")
        return value

    @field_validator("train")
    @classmethod
    def _train(cls, section: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _resolve_train(section, info.data)


def _resolve_train(section: dict[str, Any], study: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train`` section validated once, by TrainConfig, with every default filled in."""
    from wattwise.train.config import TrainConfig

    allowed = [name for name in fields_of(TrainConfig) if name not in TOP_LEVEL_TRAIN]
    for key in section:
        if key in RENAMED_STUDY_KEYS:
            raise KeyedError((key,), f"{RENAMED_STUDY_KEYS[key]} at the top level of the study")
        if key in TOP_LEVEL_TRAIN:
            raise KeyedError(
                (key,), f"set {TOP_LEVEL_TRAIN[key]!r} at the top level of the study instead"
            )
        if key not in allowed:
            raise KeyedError(
                (key,), f"unknown training setting; allowed keys: {', '.join(allowed)}"
            )
    # The first grid point stands in for the swept values (each was checked on its own axis);
    # a top-level value that failed its own check is absent here and TrainConfig's default used.
    point = {name: study.get(key) for name, key in TOP_LEVEL_TRAIN.items()}
    point = {name: v[0] if isinstance(v, tuple) else v for name, v in point.items()}
    settings = {name: v for name, v in point.items() if v is not None} | section
    resolved = validate_nested(TrainConfig, settings).to_dict()
    return {key: resolved[key] for key in allowed}


# --- loading, resolving ----------------------------------------------------------------------


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also refuses a key given twice in one mapping."""


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: list[Any] = []
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.append(key)
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=True)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 (PyYAML) reads ``1e-4`` (no dot) as text; YAML 1.2 and every user read it as a number.
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_study_config(path: str | Path) -> StudyConfig:
    """Reads and validates a study file.

    A relative ``output_dir`` (also the default, ``results``) is taken relative to the folder of
    the study file, not the current directory, so that a study resumes the same results from
    wherever it is run; the returned config holds it as an absolute path (``~`` expanded).

    Args:
        path: A YAML file whose top level is a mapping (see docs/experiments.md).

    Raises:
        ConfigError: Unreadable file, or not a regular file (a folder, a FIFO, a device: refused
            before it is opened), invalid YAML (or a tag that builds Python objects), a top
            level that is not a mapping, or any invalid value; one line naming the key.
    """
    source = str(path)
    try:
        text = read_regular_text(Path(path))
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"{source}: cannot read the study config: {why}") from None
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: {_yaml_problem(err)}") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"{source}: the study config must be a YAML mapping (key: value), got {got}"
        )
    config = validate(StudyConfig, data, source)
    return dataclasses.replace(config, output_dir=_beside(Path(path), config.output_dir))


def _beside(study_file: Path, output_dir: str) -> str:
    """``output_dir`` relative to the study file's folder, absolute (``~`` expanded)."""
    expanded = os.path.expanduser(output_dir)
    return os.path.normpath(os.path.join(os.path.abspath(study_file.parent), expanded))


def _yaml_problem(err: yaml.YAMLError) -> str:
    if not isinstance(err, yaml.MarkedYAMLError):
        return f"not valid YAML: {flat(str(err))}"
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = flat(err.problem or err.context or "invalid YAML")
    if "constructor for the tag" in problem:
        return f"{where}{problem}; only plain YAML is accepted (no tags that build Python objects)"
    return f"{where}not valid YAML: {problem}"


def resolved_yaml(config: StudyConfig) -> str:
    """The fully resolved study (every default filled) as YAML, to write next to the results.

    ``load_study_config`` of this text gives back a config equal to ``config``.
    """
    from wattwise import __version__

    body = yaml.safe_dump(dump(config), sort_keys=False, allow_unicode=True, width=100)
    return f"# wattwise {__version__}: resolved study config (all defaults filled)\n{body}"
