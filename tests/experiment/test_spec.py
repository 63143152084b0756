"""Trial specs: typed settings, the stable trial identity (carbon settings outside it), the flat
JSON that stores read, and grid expansion."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from wattwise.config import MeasurementSettings, StudyConfig
from wattwise.energy.carbon import CarbonConfig
from wattwise.errors import ConfigError
from wattwise.experiment.spec import TrialSpec, expand_grid, trial_hash
from wattwise.optimize import BaselineConfig, parse_recipe
from wattwise.train import TrainConfig

FIXED_SPEC: dict[str, Any] = {
    "study": "golden",
    "dataset": "digits",
    "model": "small_cnn",
    "technique": "baseline",
    "batch_size": 32,
    "lr": 0.01,
    "epochs": 10,
    "seed": 0,
    "gpu_memory_gib": None,
    "optimizer": "sgd",
    "precision": "fp32",
    "image_size": None,
    "width": 1.0,
    "weights": None,
    "val_fraction": 0.1,
    "train": {"momentum": 0.9, "weight_decay": 0.0005},
    "measurement": {"sample_hz": 10.0, "meters": None},
}

#: The JSON keys of ``TrialSpec.to_dict()`` that stores and analysis read, in order.
FLAT_KEYS = [
    "study",
    "dataset",
    "model",
    "technique",
    "batch_size",
    "lr",
    "epochs",
    "seed",
    "gpu_memory_gib",
    "gpu_power_limit_w",
    "optimizer",
    "precision",
    "image_size",
    "width",
    "weights",
    "val_fraction",
    "train",
    "measurement",
    "data_root",
    "download",
    "trial_id",
]


def spec_of(**changes: Any) -> TrialSpec:
    return TrialSpec.from_dict({**FIXED_SPEC, **changes})


def test_trial_id_is_a_stable_hash_of_the_content() -> None:
    # Golden values: a change here changes every stored trial's identity (resume would redo all).
    assert trial_hash({"a": 1, "b": [1.5, None]}) == trial_hash({"b": [1.5, None], "a": 1})
    assert (
        trial_hash({"a": 1, "b": [1.5, None]}) == "993a7a2ceb877d40"
    )  # sha256 of {"a":1,"b":[1.5,null]}
    spec = spec_of()
    assert spec.trial_id == "f8ae59817ac03d34"
    reordered = dict(reversed(list(FIXED_SPEC.items())))
    reordered["train"] = dict(reversed(list(FIXED_SPEC["train"].items())))
    assert TrialSpec.from_dict(reordered).trial_id == spec.trial_id
    assert spec_of(lr=1e-2, width=1).trial_id == spec.trial_id
    # names and locations are not content
    for field, value in (("study", "other"), ("data_root", "/data"), ("download", True)):
        assert spec_of(**{field: value}).trial_id == spec.trial_id


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dataset", "cifar10"),
        ("model", "resnet18"),
        ("technique", "quantize:int8"),
        ("batch_size", 64),
        ("lr", 0.1),
        ("epochs", 20),
        ("seed", 1),
        ("gpu_memory_gib", 8),
        ("optimizer", "adam"),
        ("precision", "bf16"),
        ("image_size", 32),
        ("width", 0.5),
        ("weights", "DEFAULT"),
        ("val_fraction", 0.2),
        ("train", {"momentum": 0.8, "weight_decay": 0.0005}),
        ("measurement", {"sample_hz": 20.0, "meters": None}),
        ("measurement", {"inference_s": 1.0}),
    ],
)
def test_trial_id_changes_with_any_field(field: str, value: Any) -> None:
    assert spec_of(**{field: value}).trial_id != spec_of().trial_id


@pytest.mark.parametrize(
    "carbon",
    [{"country": "DEU"}, {"carbon_intensity_g_per_kwh": 250.0}, {"pue": 1.5}],
)
def test_carbon_settings_are_not_part_of_the_identity(carbon: dict[str, Any]) -> None:
    # CO2e is computed from stored joules at analysis time: another grid must not re-run trials.
    changed = spec_of(measurement={**FIXED_SPEC["measurement"], **carbon})
    assert changed.measurement.carbon != CarbonConfig()
    assert changed.trial_id == spec_of().trial_id
    assert changed.to_dict()["measurement"] | carbon == changed.to_dict()["measurement"]


def test_changing_the_country_of_a_study_keeps_every_trial_id() -> None:
    data: dict[str, Any] = {"name": "c", "models": ["small_cnn", "resnet18"], "epochs": [1]}
    ids = [t.trial_id for t in expand_grid(StudyConfig(**data))]
    carbon = {"country": "FRA", "pue": 1.4, "carbon_intensity_g_per_kwh": 50}
    moved = StudyConfig(**data, measurement=carbon)
    assert [t.trial_id for t in expand_grid(moved)] == ids
    assert expand_grid(moved)[0].measurement.carbon.country == "FRA"


def test_trial_ids_do_not_depend_on_key_order_of_the_study() -> None:
    data = {
        "name": "order",
        "models": ["small_cnn", "resnet18"],
        "train": {"momentum": 0.8, "weight_decay": 0.001},
        "measurement": {"sample_hz": 5, "pue": 1.2},
    }
    backwards = {
        k: (dict(reversed(v.items())) if isinstance(v, dict) else v) for k, v in data.items()
    }
    backwards = dict(reversed(list(backwards.items())))
    ids = [t.trial_id for t in expand_grid(StudyConfig(**data))]
    assert ids == [t.trial_id for t in expand_grid(StudyConfig(**backwards))]
    changed = StudyConfig(**{**data, "measurement": {"sample_hz": 6, "pue": 1.2}})
    assert not set(ids) & {t.trial_id for t in expand_grid(changed)}


def test_trial_spec_is_typed_frozen_json_and_round_trips() -> None:
    spec = expand_grid(StudyConfig(name="j", gpu_memory_gib=[8]))[0]
    assert isinstance(spec.train, TrainConfig) and isinstance(spec.measurement, MeasurementSettings)
    data = json.loads(json.dumps(spec.to_dict()))
    assert list(data) == FLAT_KEYS
    assert data["trial_id"] == spec.trial_id and data["gpu_memory_gib"] == 8.0
    assert set(data["train"]) == set(TrainConfig.__dataclass_fields__) - set(FLAT_KEYS)
    assert data["measurement"]["pue"] == 1.0 and "carbon" not in data["measurement"]
    again = TrialSpec.from_dict(data)
    assert again == spec and hash(again) == hash(spec)
    assert spec.steps == (BaselineConfig(),) == parse_recipe("baseline")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.lr = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.train.momentum = 0.5  # type: ignore[misc]


def test_readers_of_the_swept_settings_read_the_train_config() -> None:
    spec = spec_of(gpu_memory_gib=8, optimizer="adam", precision="bf16")
    train = spec.train
    assert (spec.epochs, spec.batch_size, spec.lr, spec.seed) == (10, 32, 0.01, 0)
    assert (spec.gpu_memory_gib, spec.optimizer, spec.precision) == (8.0, "adam", "bf16")
    assert (train.epochs, train.gpu_memory_gib, train.optimizer) == (10, 8.0, "adam")
    assert train.eval_batch_size == TrainConfig().eval_batch_size  # every setting resolved
    assert spec.measurement.inference_s == MeasurementSettings().inference_s


def test_a_spec_of_the_previous_version_reads_gpu_memory_gb_as_gib() -> None:
    old = {k: v for k, v in FIXED_SPEC.items() if k != "gpu_memory_gib"} | {"gpu_memory_gb": 8}
    spec = TrialSpec.from_dict(old)
    assert spec.gpu_memory_gib == 8.0 and spec == spec_of(gpu_memory_gib=8)
    assert "gpu_memory_gb" not in spec.to_dict() and spec.to_dict()["gpu_memory_gib"] == 8.0


def test_replace_recomputes_the_id() -> None:
    spec = spec_of()
    other = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=3))
    assert other.epochs == 3 and other.trial_id == spec_of(epochs=3).trial_id


def test_from_dict_ignores_unknown_keys_and_validates_settings() -> None:
    extra = {**FIXED_SPEC, "bogus": 1, "trial_id": "stale"}
    extra["train"] = {**FIXED_SPEC["train"], "retired_setting": True}
    extra["measurement"] = {**FIXED_SPEC["measurement"], "retired": 1}
    assert TrialSpec.from_dict(extra) == spec_of()
    with pytest.raises(ConfigError, match=r"^trial spec: train: epochs: must be > 0"):
        spec_of(epochs=0)
    with pytest.raises(ConfigError, match=r"^trial spec: measurement: sample_hz: must be >= 0.1"):
        spec_of(measurement={"sample_hz": 0})


def test_the_grid_follows_the_study_axes() -> None:
    config = StudyConfig(
        name="g", batch_sizes=[16, 32], epochs=[1], learning_rates=[0.1], seeds=[0, 1]
    )
    trials = expand_grid(config)
    assert [(t.batch_size, t.seed) for t in trials] == [(16, 0), (16, 1), (32, 0), (32, 1)]
    assert all(t.study == "g" and t.measurement == config.measurement for t in trials)


def test_an_empty_grid_is_an_error() -> None:
    config = StudyConfig(name="empty")
    object.__setattr__(config, "models", ())  # validation refuses an empty axis: bypass it
    with pytest.raises(ConfigError, match=r"^study 'empty': the grid is empty"):
        expand_grid(config)


def test_importing_the_spec_module_is_torch_free() -> None:
    code = "import sys, wattwise.experiment.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_key_is_shared_by_techniques_that_train_the_same_way() -> None:
    from wattwise.experiment.spec import training_key

    config = StudyConfig(
        name="k",
        techniques=[
            "baseline",
            "prune:structured:0.5",
            "quantize:int8",
            "distill:small_cnn",
            "distill:small_cnn,prune:structured:0.5,quantize:int8",
        ],
        batch_sizes=[32],
        learning_rates=[0.05],
        epochs=[1],
        seeds=[0, 1],
    )
    keys = {}
    for spec in expand_grid(config):
        keys.setdefault(training_key(spec.to_dict()), []).append((spec.technique, spec.seed))
    # per seed: one training by fit (baseline, prune, int8) and one by distillation (two recipes)
    assert sorted(len(group) for group in keys.values()) == [2, 2, 3, 3]
    by_fit = [g for g in keys.values() if ("baseline", 0) in g]
    assert by_fit == [[("baseline", 0), ("prune:structured:0.5", 0), ("quantize:int8", 0)]]
    one = expand_grid(config)[0].to_dict()
    assert training_key(one, seed=False) == training_key({**one, "seed": 7}, seed=False)
