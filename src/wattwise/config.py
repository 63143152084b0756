"""A study as one YAML file: validated, resolved, expanded into trials.

    from wattwise.config import expand_grid, load_study_config, resolved_yaml

    config = load_study_config("study.yaml")      # ConfigError: one line naming the key
    trials = expand_grid(config)                  # datasets x models x techniques x hyperparameters
    (out / "study.resolved.yaml").write_text(resolved_yaml(config))

YAML is loaded safely: nothing in a study file can build Python objects or run code. Every
validation failure is a :class:`~wattwise.errors.ConfigError` whose message is one line, e.g.
``study.yaml: models[1]: unknown model 'resnet19'; choose from: ...``. See docs/experiments.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wattwise.errors import ConfigError

# --- recipes ---------------------------------------------------------------------------------

#: Step kinds a technique may chain, with the shape of their arguments.
RECIPE_USAGE: dict[str, str] = {
    "baseline": "baseline",
    "prune": "prune:<structured|unstructured>:<amount in (0, 1)>",
    "quantize": "quantize:<int8>",
    "distill": "distill:<teacher model or checkpoint path>[:<temperature > 0>[:<alpha in [0, 1]>]]",
    "channels_last": "channels_last",
    "bf16": "bf16",
    "fp16": "fp16",
}
PRUNE_METHODS = ("structured", "unstructured")
QUANTIZE_SCHEMES = ("int8",)


@dataclass(frozen=True)
class RecipeStep:
    """One step of a technique: ``prune:structured:0.5`` is ``RecipeStep("prune", ("structured",
    "0.5"))``. Arguments are canonical text (numbers normalized: ``0.50`` -> ``0.5``)."""

    kind: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ":".join((self.kind, *self.args))


def parse_recipe(text: str) -> tuple[RecipeStep, ...]:
    """Parses a technique such as ``"distill:resnet18,prune:structured:0.5,quantize:int8"``.

    Steps are separated by commas and applied in order; a step is ``kind[:arg...]`` with
    ``kind`` in :data:`RECIPE_USAGE`. ``baseline`` stands alone; a kind appears at most once.

    Raises:
        ConfigError: Unknown step kind or malformed arguments (one line, with the usage).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"a technique must be a non-empty string, got {text!r}")
    steps = tuple(_parse_step(part.strip(), text) for part in text.split(","))
    kinds = [s.kind for s in steps]
    if "baseline" in kinds and len(steps) > 1:
        raise ConfigError(f"'baseline' cannot be chained with other steps in {text!r}")
    for kind in kinds:
        if kinds.count(kind) > 1:
            raise ConfigError(f"step {kind!r} appears twice in {text!r}")
    if "bf16" in kinds and "fp16" in kinds:
        raise ConfigError(f"choose one of bf16 and fp16 in {text!r}")
    return steps


def format_recipe(steps: Sequence[RecipeStep]) -> str:
    """The canonical text of ``steps`` (what :func:`parse_recipe` reads back)."""
    return ",".join(str(step) for step in steps)


def _parse_step(part: str, text: str) -> RecipeStep:
    if not part:
        raise ConfigError(f"empty step in technique {text!r}")
    kind, *raw = (p.strip() for p in part.split(":"))
    kind = kind.lower()
    if kind not in RECIPE_USAGE:
        raise ConfigError(
            f"unknown technique step {kind!r} in {text!r}; choose from: {', '.join(RECIPE_USAGE)}"
        )
    usage = f"{kind} takes {RECIPE_USAGE[kind]}, got {part!r}"
    if kind == "prune":
        if len(raw) != 2 or raw[0].lower() not in PRUNE_METHODS:
            raise ConfigError(usage)
        return RecipeStep(kind, (raw[0].lower(), _number(raw[1], usage, low=0, high=1)))
    if kind == "quantize":
        if len(raw) != 1 or raw[0].lower() not in QUANTIZE_SCHEMES:
            raise ConfigError(usage)
        return RecipeStep(kind, (raw[0].lower(),))
    if kind == "distill":
        if not 1 <= len(raw) <= 3 or not raw[0]:
            raise ConfigError(usage)
        args = [_teacher(raw[0], usage)]
        if len(raw) > 1:
            args.append(_number(raw[1], usage, low=0))
        if len(raw) > 2:
            args.append(_number(raw[2], usage, low=0, high=1, closed=True))
        return RecipeStep(kind, tuple(args))
    if raw:
        raise ConfigError(f"{kind} takes no arguments, got {part!r}")
    return RecipeStep(kind)


def _number(
    text: str, usage: str, *, low: float, high: float | None = None, closed: bool = False
) -> str:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(usage) from None
    above = value >= low if closed else value > low
    below = high is None or (value <= high if closed else value < high)
    if not (math.isfinite(value) and above and below):
        raise ConfigError(usage)
    return str(int(value)) if value.is_integer() else repr(value)


def _teacher(name: str, usage: str) -> str:
    from wattwise.models import list_models

    if name in list_models() or "/" in name or name.endswith((".pt", ".pth", ".ckpt")):
        return name
    raise ConfigError(
        f"unknown teacher model {name!r} ({usage}); choose from: {', '.join(list_models())}, "
        "or give a checkpoint path"
    )


# --- value types -----------------------------------------------------------------------------


class _PathError(ValueError):
    """A validation error that knows the sub-key it is about (``train.momentum``)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


def _number_from_text(value: Any) -> Any:
    # PyYAML reads ``1e-3`` (no dot) as a string; accept it as the number it obviously is.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


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
    return format_recipe(parse_recipe(text))


def _check_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise ValueError(f"use letters, digits, '.', '_' and '-' (no spaces), got {text!r}")
    return text


_Int = Annotated[int, Strict()]
PositiveInt = Annotated[_Int, Gt(0)]
NonNegativeInt = Annotated[_Int, Ge(0)]
Number = Annotated[float, BeforeValidator(_number_from_text), Strict(), AllowInfNan(False)]
PositiveNumber = Annotated[Number, Gt(0)]
NonNegativeNumber = Annotated[Number, Ge(0)]
Text = Annotated[str, Strict(), Field(min_length=1)]
DatasetName = Annotated[str, Strict(), AfterValidator(_check_dataset)]
ModelName = Annotated[str, Strict(), AfterValidator(_check_model)]
Technique = Annotated[str, Strict(), AfterValidator(_check_technique)]


class _SectionMeta(type(BaseModel)):  # type: ignore[misc]
    """Turns pydantic's ValidationError from ``Section(**values)`` into a one-line ConfigError.

    (Overriding ``__init__`` instead would make pydantic call it for nested sections too.)
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as err:
            raise ConfigError(_one_line(err, cls.__name__, cls)) from None


class _Section(BaseModel, metaclass=_SectionMeta):
    """Base of the config models: unknown keys refused, frozen, errors as ConfigError."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Validates ``obj`` (a mapping, e.g. parsed YAML); failures raise ConfigError."""
        return _validate(cls, obj, "study config" if cls is StudyConfig else cls.__name__, kwargs)


def _validate(cls: type[_Section], obj: Any, source: str, kwargs: Mapping[str, Any]) -> Any:
    try:
        return super(_Section, cls).model_validate(obj, **kwargs)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source, cls)) from None


# --- sections --------------------------------------------------------------------------------


class MeasurementSettings(_Section):
    """How every trial is measured (see docs/measuring.md).

    Attributes:
        sample_hz: Background power sampling rate (0.1 to 1000 Hz).
        meters: Meter names that must work, or ``None``/``auto`` to auto-detect.
        cpu_tdp_w: TDP of one CPU package for the CPU estimate (``None``: detect).
        country: ISO 3166-1 alpha-3 code for the grid's carbon intensity (``None``: world mean).
        carbon_intensity_g_per_kwh: The grid's intensity; overrides ``country``.
        pue: Power usage effectiveness of the facility (>= 1).
        inference_s: Seconds of the inference measurement (0 skips it).
        inference_batch_size: Batch size of the inference measurement.
    """

    sample_hz: Annotated[Number, Ge(0.1), Le(1000)] = 10.0
    meters: tuple[str, ...] | None = None
    cpu_tdp_w: PositiveNumber | None = None
    country: Text | None = None
    carbon_intensity_g_per_kwh: NonNegativeNumber | None = None
    pue: Annotated[Number, Ge(1.0)] = 1.0
    inference_s: NonNegativeNumber = 3.0
    inference_batch_size: PositiveInt = 64

    @field_validator("meters", mode="before")
    @classmethod
    def _meters(cls, value: Any) -> Any:
        from wattwise.energy.meters import parse_meter_names

        if value is None or isinstance(value, str):
            return parse_meter_names(value)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return parse_meter_names(value)
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        from wattwise.energy.carbon import CARBON_INTENSITY_G_PER_KWH

        if value is None:
            return None
        if value.upper() not in CARBON_INTENSITY_G_PER_KWH:
            known = ", ".join(sorted(CARBON_INTENSITY_G_PER_KWH))
            raise ValueError(f"no carbon intensity for {value!r}; choose from: {known}")
        return value.upper()

    def monitor_config(self) -> Any:
        """The :class:`~wattwise.energy.monitor.MonitorConfig` these settings describe."""
        from wattwise.energy.carbon import CarbonConfig
        from wattwise.energy.meters import MeterSettings
        from wattwise.energy.monitor import MonitorConfig

        return MonitorConfig(
            meters=self.meters,
            sample_hz=self.sample_hz,
            carbon=CarbonConfig(self.carbon_intensity_g_per_kwh, self.country, self.pue),
            meter_settings=MeterSettings(cpu_tdp_w=self.cpu_tdp_w),
        )


class ExecutorSettings(_Section):
    """Where trials run: ``local`` (one at a time, this process), ``local-gpus`` (one worker per
    GPU; ``gpus`` picks them, default all visible) or ``ray`` (``address`` of a cluster, default:
    start a local one)."""

    kind: Literal["local", "local-gpus", "ray"] = "local"
    address: Text | None = None
    gpus: tuple[NonNegativeInt, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ExecutorSettings:
        if self.address is not None and self.kind != "ray":
            raise _PathError(
                ("address",), f"only the 'ray' executor takes an address, not {self.kind!r}"
            )
        if self.gpus is not None and self.kind != "local-gpus":
            raise _PathError(
                ("gpus",), f"only the 'local-gpus' executor takes gpus, not {self.kind!r}"
            )
        if self.gpus is not None and not self.gpus:
            raise _PathError(("gpus",), "must not be empty (leave it out to use all visible GPUs)")
        return self


class SearchSettings(_Section):
    """How the trials are chosen: the whole ``grid``, or ``n_trials`` picked by ``optuna`` over the
    same space, optimizing ``objectives`` (record metrics) in ``directions``."""

    kind: Literal["grid", "optuna"] = "grid"
    n_trials: PositiveInt | None = None
    objectives: tuple[str, ...] = ("accuracy", "train_energy_j")
    directions: tuple[Literal["maximize", "minimize"], ...] = ("maximize", "minimize")

    @model_validator(mode="after")
    def _consistent(self) -> SearchSettings:
        from wattwise.experiment.record import METRICS

        if self.kind == "optuna" and self.n_trials is None:
            raise _PathError(("n_trials",), "required by the 'optuna' search (a positive integer)")
        if self.kind == "grid" and self.n_trials is not None:
            raise _PathError(("n_trials",), "the 'grid' search runs every trial; remove n_trials")
        if not self.objectives:
            raise _PathError(("objectives",), "must not be empty")
        for i, metric in enumerate(self.objectives):
            if metric not in METRICS:
                raise _PathError(
                    ("objectives", i),
                    f"unknown metric {metric!r}; choose from: {', '.join(METRICS)}",
                )
        if len(self.directions) != len(self.objectives):
            raise _PathError(
                ("directions",),
                f"give one direction per objective ({len(self.objectives)}), "
                f"got {len(self.directions)}",
            )
        return self


#: The sweep axes of a study, outermost first.
_AXES = (
    "datasets",
    "models",
    "techniques",
    "batch_sizes",
    "learning_rates",
    "epochs",
    "seeds",
    "gpu_memory_gb",
)

#: TrainConfig fields that a study sets at its top level (swept, or study-wide).
_TOP_LEVEL_TRAIN = {
    "epochs": "epochs",
    "batch_size": "batch_sizes",
    "lr": "learning_rates",
    "seed": "seeds",
    "gpu_memory_gb": "gpu_memory_gb",
    "optimizer": "optimizer",
    "precision": "precision",
}


class StudyConfig(_Section):
    """One study: what to sweep, how to train, measure and run. See docs/experiments.md.

    The sweep axes (``datasets`` ... ``gpu_memory_gb``) take a list, or one value. Their defaults
    reproduce the seed study's grid: batch sizes 32/64/128, learning rates 0.001/0.01/0.1 and
    10/20/30 epochs. ``train`` holds the other :class:`~wattwise.train.TrainConfig` settings
    (momentum, weight_decay, schedule, ...); the resolved config lists all of them.
    """

    name: Annotated[str, Strict(), AfterValidator(_check_name)]
    output_dir: Text = "results"
    datasets: tuple[DatasetName, ...] = ("digits",)
    data_root: Text | None = None
    image_size: PositiveInt | None = None
    val_fraction: Annotated[Number, Ge(0), Lt(1)] = 0.1
    download: Annotated[bool, Strict()] = False
    models: tuple[ModelName, ...] = ("small_cnn",)
    width: PositiveNumber = 1.0
    weights: Text | None = None
    techniques: tuple[Technique, ...] = ("baseline",)
    batch_sizes: tuple[PositiveInt, ...] = (32, 64, 128)
    learning_rates: tuple[PositiveNumber, ...] = (0.001, 0.01, 0.1)
    epochs: tuple[PositiveInt, ...] = (10, 20, 30)
    seeds: tuple[NonNegativeInt, ...] = (0,)
    gpu_memory_gb: tuple[PositiveNumber | None, ...] = (None,)
    optimizer: Literal["sgd", "adam"] = "sgd"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    train: dict[str, Any] = Field(default_factory=dict)
    measurement: MeasurementSettings = Field(default_factory=MeasurementSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)

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
                raise _PathError((i,), f"duplicate value {item!r} (also at [{value.index(item)}])")
        return value

    @field_validator("train")
    @classmethod
    def _train(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _resolve_train(value, info.data)


def _resolve_train(section: dict[str, Any], study: Mapping[str, Any]) -> dict[str, Any]:
    """Checks the ``train`` section against TrainConfig; returns it with every default filled."""
    from typing import get_type_hints

    from pydantic import TypeAdapter

    from wattwise.train.config import TrainConfig

    hints = get_type_hints(TrainConfig)
    allowed = [f.name for f in fields(TrainConfig) if f.name not in _TOP_LEVEL_TRAIN]
    for key, item in section.items():
        if key in _TOP_LEVEL_TRAIN:
            raise _PathError(
                (key,), f"set {_TOP_LEVEL_TRAIN[key]!r} at the top level of the study instead"
            )
        if key not in allowed:
            raise _PathError(
                (key,), f"unknown training setting; allowed keys: {', '.join(allowed)}"
            )
        try:
            TypeAdapter(hints[key]).validate_python(item, strict=True)
        except ValidationError as err:
            raise _PathError((key,), _describe(err.errors()[0])) from None
    first = {
        "epochs": _first(study.get("epochs")),
        "batch_size": _first(study.get("batch_sizes")),
        "lr": _first(study.get("learning_rates")),
        "seed": _first(study.get("seeds")),
        "gpu_memory_gb": _first(study.get("gpu_memory_gb")),
        "optimizer": study.get("optimizer"),
        "precision": study.get("precision"),
    }
    # A top-level value that failed its own check is absent here; TrainConfig's default stands in.
    settings = {k: v for k, v in first.items() if v is not None} | dict(section)
    resolved = TrainConfig(**settings).to_dict()  # ConfigError (a ValueError) names the setting
    return {key: resolved[key] for key in allowed}


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, tuple) and values else None


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


def load_study_config(path: str | Path) -> StudyConfig:
    """Reads and validates a study file.

    Args:
        path: A YAML file whose top level is a mapping (see docs/experiments.md).

    Raises:
        ConfigError: Unreadable file, invalid YAML (or a tag that builds Python objects), a top
            level that is not a mapping, or any invalid value; one line naming the key.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
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
    return _validate(StudyConfig, data, source, {})


def _yaml_problem(err: yaml.YAMLError) -> str:
    if not isinstance(err, yaml.MarkedYAMLError):
        return f"not valid YAML: {_flat(str(err))}"
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = _flat(err.problem or err.context or "invalid YAML")
    if "constructor for the tag" in problem:
        return f"{where}{problem}; only plain YAML is accepted (no tags that build Python objects)"
    return f"{where}not valid YAML: {problem}"


def resolved_yaml(config: StudyConfig) -> str:
    """The fully resolved study (every default filled) as YAML, to write next to the results.

    ``load_study_config`` of this text gives back a config equal to ``config``.
    """
    from wattwise import __version__

    body = yaml.safe_dump(
        config.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100
    )
    return f"# wattwise {__version__}: resolved study config (all defaults filled)\n{body}"


# --- trials ----------------------------------------------------------------------------------

#: TrialSpec fields that say where things are, not what the trial is: outside its identity.
_NOT_IDENTITY = ("trial_id", "study", "data_root", "download")


@dataclass(frozen=True)
class TrialSpec:
    """One point of a study's grid: everything a trial's result depends on.

    ``trial_id`` is the first 16 hex digits of the SHA-256 of the canonical JSON of the fields,
    except ``study``, ``data_root`` and ``download`` (names and locations, not content): the same
    trial has the same id in every run, on every machine and under any key order.

    Attributes:
        train: The other TrainConfig settings (momentum, weight_decay, ...), all resolved
            (read-only).
        measurement: :class:`MeasurementSettings` as a read-only mapping.
    """

    study: str
    dataset: str
    model: str
    technique: str
    batch_size: int
    lr: float
    epochs: int
    seed: int
    gpu_memory_gb: float | None
    optimizer: str
    precision: str
    image_size: int | None
    width: float
    weights: str | None
    val_fraction: float
    train: Mapping[str, Any]
    measurement: Mapping[str, Any]
    data_root: str | None = None
    download: bool = False
    trial_id: str = field(init=False)

    def __post_init__(self) -> None:
        for name in ("lr", "width", "val_fraction"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.gpu_memory_gb is not None:
            object.__setattr__(self, "gpu_memory_gb", float(self.gpu_memory_gb))
        # read-only views: the id must keep describing the content
        object.__setattr__(self, "train", MappingProxyType(_plain(self.train)))
        object.__setattr__(self, "measurement", MappingProxyType(_plain(self.measurement)))
        object.__setattr__(self, "trial_id", trial_hash(self.identity()))

    def __hash__(self) -> int:
        return hash(self.trial_id)

    @property
    def steps(self) -> tuple[RecipeStep, ...]:
        """The technique as recipe steps."""
        return parse_recipe(self.technique)

    def identity(self) -> dict[str, Any]:
        """The content that ``trial_id`` hashes."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in fields(self)
            if f.name not in _NOT_IDENTITY
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, ``trial_id`` included."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        """Inverse of :meth:`to_dict`; ``trial_id`` is recomputed from the content."""
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in data.items() if k in names})

    def train_config(self) -> Any:
        """The complete :class:`~wattwise.train.TrainConfig` of this trial."""
        from wattwise.train.config import TrainConfig

        return TrainConfig(
            **self.train,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            gpu_memory_gb=self.gpu_memory_gb,
            optimizer=self.optimizer,  # type: ignore[arg-type]
            precision=self.precision,  # type: ignore[arg-type]
        )


def trial_hash(content: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``content`` as canonical JSON (sorted keys)."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def expand_grid(config: StudyConfig) -> list[TrialSpec]:
    """Every trial of the study: datasets x models x techniques x batch sizes x learning rates x
    epochs x seeds x GPU memory caps, in that nesting order (the last varies fastest).

    Raises:
        ConfigError: The grid is empty, or two points are the same trial.
    """
    trials: list[TrialSpec] = []
    axes = [getattr(config, axis) for axis in _AXES]
    measurement = config.measurement.model_dump(mode="json")
    for dataset, model, technique, batch, lr, epochs, seed, cap in itertools.product(*axes):
        trials.append(
            TrialSpec(
                study=config.name,
                dataset=dataset,
                model=model,
                technique=technique,
                batch_size=batch,
                lr=lr,
                epochs=epochs,
                seed=seed,
                gpu_memory_gb=cap,
                optimizer=config.optimizer,
                precision=config.precision,
                image_size=config.image_size,
                width=config.width,
                weights=config.weights,
                val_fraction=config.val_fraction,
                train=config.train,
                measurement=measurement,
                data_root=config.data_root,
                download=config.download,
            )
        )
    if not trials:
        raise ConfigError(f"study {config.name!r}: the grid is empty (every axis needs a value)")
    ids = [t.trial_id for t in trials]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"study {config.name!r}: the grid repeats a trial (duplicate values)")
    return trials


def _plain(value: Any) -> Any:
    """Tuples and mappings -> lists and dicts, recursively (canonical JSON shapes)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- error messages --------------------------------------------------------------------------

_TYPE_WORDS = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "none_required": "expected null",
}


def _one_line(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    errors = err.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, _PathError):
        loc += error.path
    if first["type"] == "extra_forbidden":
        section = _section_at(model, loc[:-1])
        allowed = ", ".join(section.model_fields) if section else "?"
        message = f"unknown key; allowed keys: {allowed}"
    else:
        message = _describe(first)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = _format_loc(loc)
    return _flat(f"{source}: {where + ': ' if where else ''}{message}{more}")


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = _short(error.get("input"))
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, got {got}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        choices = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"got {got}; choose from: {choices}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
        bound = next(iter(ctx.values()), "?")
        return f"must be {sign} {bound}, got {got}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']}, got {got}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _section_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return None
        annotation = info.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _flat(text: str) -> str:
    return " ".join(text.split())
