"""Study configuration: validation errors (one line, naming the key), the seed's grid, trial ids,
resolved YAML and safe loading. No model is built: only the registries' names are read."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from wattwise.config import (
    MeasurementSettings,
    RecipeStep,
    StudyConfig,
    TrialSpec,
    expand_grid,
    format_recipe,
    load_study_config,
    parse_recipe,
    resolved_yaml,
    trial_hash,
)
from wattwise.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_study_config(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'study.yaml'}: ")
    return message.split(": ", 1)[1]


# --- errors: one line, naming the key and what is allowed --------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # unknown keys, at the top and in sections
        ("modles: [resnet18]", "modles: unknown key; allowed keys: name, output_dir, datasets"),
        ("measurement: {bogus: 1}", "measurement.bogus: unknown key; allowed keys: sample_hz"),
        (
            "train: {momentm: 0.9}",
            "train.momentm: unknown training setting; allowed keys: momentum",
        ),
        ("train: {epochs: 3}", "train.epochs: set 'epochs' at the top level"),
        # unknown names
        (
            "models: [resnet18, resnet19]",
            "models[1]: unknown model 'resnet19'; choose from: efficientnet_b0, mobilenet_v2",
        ),
        ("datasets: [cifar100]", "datasets[0]: unknown dataset 'cifar100'; choose from: "),
        ("datasets: [medmnist]", "datasets[0]: unknown dataset 'medmnist'; choose from: "),
        (
            "techniques: [baseline, 'prunes:structured:0.5']",
            "techniques[1]: unknown technique step 'prunes' in 'prunes:structured:0.5'; "
            "choose from: baseline, prune, quantize, distill, channels_last, bf16, fp16",
        ),
        (
            "techniques: ['prune:0.5']",
            "techniques[0]: prune takes prune:<structured|unstructured>:<amount in (0, 1)>",
        ),
        ("techniques: ['quantize:int4']", "techniques[0]: quantize takes quantize:<int8>"),
        ("techniques: ['distill:resnet19']", "techniques[0]: unknown teacher model 'resnet19'"),
        ("optimizer: rmsprop", "optimizer: got 'rmsprop'; choose from: sgd, adam"),
        (
            "executor: {kind: slurm}",
            "executor.kind: got 'slurm'; choose from: local, local-gpus, ray",
        ),
        ("measurement: {meters: [rapl, foo]}", "measurement.meters: unknown meter 'foo'; choose"),
        ("measurement: {country: XX}", "measurement.country: no carbon intensity for 'XX'"),
        ("search: {objectives: [accuracy, speed]}", "search.objectives[1]: unknown metric 'speed'"),
        # wrong types
        ("batch_sizes: [32, big]", "batch_sizes[1]: expected an integer, got 'big'"),
        ("batch_sizes: [32.5]", "batch_sizes[0]: expected an integer, got 32.5"),
        ("learning_rates: [fast]", "learning_rates[0]: expected a number, got 'fast'"),
        ("gpu_memory_gb: [true]", "gpu_memory_gb[0]: expected a number, got True"),
        ("download: 'yes'", "download: expected true or false, got 'yes'"),
        ("models: {resnet18: 1}", "models[0]: expected a string, got {'resnet18': 1}"),
        ("measurement: fast", "measurement: expected a mapping (key: value), got 'fast'"),
        ("train: {device: 0}", "train.device: expected a string, got 0"),
        ("train: {augment: maybe}", "train.augment: expected true or false, got 'maybe'"),
        ("train: {momentum: 1.5}", "train: momentum must be in [0, 1), got 1.5"),
        # empty lists
        ("models: []", "models: must not be empty"),
        ("epochs: []", "epochs: must not be empty"),
        ("output_dir: ''", "output_dir: must not be empty"),
        # non-positive numbers
        ("batch_sizes: [0]", "batch_sizes[0]: must be > 0, got 0"),
        ("learning_rates: [0.1, -0.01]", "learning_rates[1]: must be > 0, got -0.01"),
        ("epochs: [10, 0]", "epochs[1]: must be > 0, got 0"),
        ("gpu_memory_gb: [8, -4]", "gpu_memory_gb[1]: must be > 0, got -4"),
        ("seeds: [-1]", "seeds[0]: must be >= 0, got -1"),
        ("measurement: {sample_hz: 0}", "measurement.sample_hz: must be >= 0.1, got 0"),
        ("learning_rates: [.nan]", "learning_rates[0]: expected a finite number, got nan"),
        # values that repeat, or do not fit together
        ("models: [resnet18, resnet18]", "models[1]: duplicate value 'resnet18' (also at [0])"),
        ("executor: {address: 'ray://h:10001'}", "executor.address: only the 'ray' executor"),
        ("search: {kind: optuna}", "search.n_trials: required by the 'optuna' search"),
        (
            "search: {kind: optuna, n_trials: 8, directions: [maximize]}",
            "search.directions: give one direction per objective (2), got 1",
        ),
    ],
)
def test_error_names_the_key_and_the_allowed_values(
    tmp_path: Path, body: str, expected: str
) -> None:
    assert error_of(tmp_path, f"name: s\n{body}\n").startswith(expected)


def test_missing_name(tmp_path: Path) -> None:
    assert error_of(tmp_path, "models: [resnet18]\n") == "name: required key is missing"


def test_several_errors_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: s\nbatch_sizes: [0, x]\noptimizer: lion\n")
    assert message.startswith("batch_sizes[0]: must be > 0, got 0")
    assert message.endswith("(and 2 more)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: s\nmodels: [resnet18\n", "line 3, column 1: not valid YAML: expected ','"),
        ("- name\n- s\n", "the study config must be a YAML mapping (key: value), got a list"),
        ("just text\n", "the study config must be a YAML mapping (key: value), got a str"),
        ("", "the study config must be a YAML mapping (key: value), got an empty file"),
        ("name: s\nname: t\n", "line 2, column 1: not valid YAML: found duplicate key 'name'"),
    ],
)
def test_files_that_are_not_a_yaml_mapping(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text).startswith(expected)


def test_unreadable_file(tmp_path: Path) -> None:
    for path, why in ((tmp_path / "missing.yaml", "No such file"), (tmp_path, "Is a directory")):
        with pytest.raises(ConfigError, match=f"^{path}: cannot read the study config: {why}"):
            load_study_config(path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match="cannot read the study config"):
        load_study_config(binary)


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    message = error_of(
        tmp_path, f'name: s\nmodels: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    assert message.startswith("line 2, column 9: could not determine a constructor for the tag")
    assert "only plain YAML is accepted" in message
    assert not marker.exists()
    assert "only plain YAML" in error_of(tmp_path, "name: !!python/name:os.system ''\n")


def test_model_validate_and_direct_construction_raise_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^study config: models\[0\]: unknown model 'x'"):
        StudyConfig.model_validate({"name": "s", "models": ["x"]})
    with pytest.raises(ConfigError, match=r"^study config: expected a mapping"):
        StudyConfig.model_validate(["name", "s"])
    with pytest.raises(ConfigError, match=r"^StudyConfig: epochs\[0\]: must be > 0"):
        StudyConfig(name="s", epochs=[0])
    with pytest.raises(ConfigError, match=r"^MeasurementSettings: pue: must be >= 1.0, got 0.5"):
        MeasurementSettings(pue=0.5)


# --- accepted forms, defaults -----------------------------------------------------------------


def test_defaults_reproduce_the_seed_grid() -> None:
    config = StudyConfig.model_validate(
        {
            "name": "seed",
            "datasets": ["digits", "medmnist:pathmnist"],
            "models": ["small_cnn", "resnet18"],
            "techniques": ["baseline", "quantize:int8"],
            "seeds": [0, 1],
        }
    )
    assert config.batch_sizes == (32, 64, 128)
    assert config.learning_rates == (0.001, 0.01, 0.1)
    assert config.epochs == (10, 20, 30)
    assert config.gpu_memory_gb == (None,)
    trials = expand_grid(config)
    assert len(trials) == 2 * 2 * 2 * 2 * 27
    groups: dict[tuple[Any, ...], set[tuple[Any, ...]]] = {}
    for t in trials:
        key = (t.dataset, t.model, t.technique, t.seed)
        groups.setdefault(key, set()).add((t.batch_size, t.lr, t.epochs))
    seed_grid = set(itertools.product((32, 64, 128), (0.001, 0.01, 0.1), (10, 20, 30)))
    assert len(groups) == 16
    assert all(points == seed_grid for points in groups.values())
    assert len({t.trial_id for t in trials}) == len(trials)
    # nesting order: datasets outermost ... seeds, GPU caps innermost
    assert (trials[0].batch_size, trials[0].lr, trials[0].epochs) == (32, 0.001, 10)
    assert [t.seed for t in trials[:3]] == [0, 1, 0]
    assert (trials[2].epochs, trials[6].lr, trials[18].batch_size) == (20, 0.01, 64)
    assert trials[len(trials) // 2].dataset == "medmnist:pathmnist"


def test_gpu_memory_caps_and_optional_sections(tmp_path: Path) -> None:
    config = load_study_config(
        write(
            tmp_path,
            "name: caps\n"
            "models: resnet18          # one value needs no brackets\n"
            "learning_rates: [1e-3]    # YAML reads this as text; it is a number\n"
            "gpu_memory_gb: [4, 8, 16, 32, null]\n"
            "datasets: [MedMNIST:PathMNIST]\n"
            "executor: {kind: local-gpus, gpus: [0, 1]}\n"
            "search: {kind: optuna, n_trials: 20, objectives: [accuracy], directions: [maximize]}\n"
            "measurement: {meters: 'rapl,nvml', country: deu}\n",
        )
    )
    assert config.models == ("resnet18",)
    assert config.learning_rates == (0.001,)
    assert config.datasets == ("medmnist:pathmnist",)
    assert config.gpu_memory_gb == (4.0, 8.0, 16.0, 32.0, None)
    assert config.measurement.meters == ("rapl", "nvml")
    assert config.measurement.country == "DEU"
    assert config.search.n_trials == 20
    assert config.executor.gpus == (0, 1)
    assert len(expand_grid(config)) == 27 // 3 * 5
    monitor = config.measurement.monitor_config()
    assert monitor.meters == ("rapl", "nvml")
    assert monitor.carbon.country == "DEU"


def test_train_section_is_resolved_with_every_default() -> None:
    config = StudyConfig.model_validate(
        {"name": "t", "train": {"momentum": 0.8, "device": "cpu"}, "optimizer": "adam"}
    )
    assert config.train["momentum"] == 0.8
    assert config.train["weight_decay"] == 5e-4  # a TrainConfig default, filled in
    assert "epochs" not in config.train and "optimizer" not in config.train
    spec = expand_grid(config)[-1]
    train = spec.train_config()
    assert (train.epochs, train.batch_size, train.lr, train.optimizer) == (30, 128, 0.1, "adam")
    assert (train.momentum, train.device, train.seed) == (0.8, "cpu", 0)


def test_config_is_frozen() -> None:
    config = StudyConfig.model_validate({"name": "f"})
    with pytest.raises(Exception, match="frozen"):
        config.name = "g"  # type: ignore[misc]


# --- recipes ----------------------------------------------------------------------------------


def test_parse_recipe_chains_and_canonical_text() -> None:
    steps = parse_recipe(" Distill:resnet18:4:0.90 , prune:Structured:0.50,quantize:int8 ")
    assert steps == (
        RecipeStep("distill", ("resnet18", "4", "0.9")),
        RecipeStep("prune", ("structured", "0.5")),
        RecipeStep("quantize", ("int8",)),
    )
    assert format_recipe(steps) == "distill:resnet18:4:0.9,prune:structured:0.5,quantize:int8"
    assert parse_recipe("baseline") == (RecipeStep("baseline"),)
    assert parse_recipe("channels_last,bf16") == (RecipeStep("channels_last"), RecipeStep("bf16"))
    assert parse_recipe("distill:runs/teacher")[0].args == ("runs/teacher",)
    config = StudyConfig.model_validate({"name": "r", "techniques": ["prune:structured:.50"]})
    assert config.techniques == ("prune:structured:0.5",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a technique must be a non-empty string"),
        ("baseline,quantize:int8", "'baseline' cannot be chained"),
        ("prune:structured:0.5,prune:structured:0.2", "step 'prune' appears twice"),
        ("bf16,fp16", "choose one of bf16 and fp16"),
        ("quantize:int8,", "empty step"),
        ("prune:structured:1.5", "prune takes prune:<structured|unstructured>:<amount in (0, 1)>"),
        ("prune:structured:half", "prune takes"),
        ("distill:resnet18:0", "distill takes distill:<teacher model or checkpoint path>"),
        ("distill:resnet18:4:1.5", "distill takes"),
        ("distill:resnet18:4:0.5:x", "distill takes"),
        ("bf16:yes", "bf16 takes no arguments"),
    ],
)
def test_parse_recipe_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe(text)


# --- trial identity -----------------------------------------------------------------------------

FIXED_SPEC: dict[str, Any] = {
    "study": "golden",
    "dataset": "digits",
    "model": "small_cnn",
    "technique": "baseline",
    "batch_size": 32,
    "lr": 0.01,
    "epochs": 10,
    "seed": 0,
    "gpu_memory_gb": None,
    "optimizer": "sgd",
    "precision": "fp32",
    "image_size": None,
    "width": 1.0,
    "weights": None,
    "val_fraction": 0.1,
    "train": {"momentum": 0.9, "weight_decay": 0.0005},
    "measurement": {"sample_hz": 10.0, "meters": None},
}


def test_trial_id_is_a_stable_hash_of_the_content() -> None:
    # Golden values: a change here changes every stored trial's identity (resume would redo all).
    assert trial_hash({"a": 1, "b": [1.5, None]}) == trial_hash({"b": [1.5, None], "a": 1})
    assert (
        trial_hash({"a": 1, "b": [1.5, None]}) == "993a7a2ceb877d40"
    )  # sha256 of {"a":1,"b":[1.5,null]}
    spec = TrialSpec(**FIXED_SPEC)
    assert spec.trial_id == "737007262f69172d"
    reordered = dict(reversed(list(FIXED_SPEC.items())))
    reordered["train"] = dict(reversed(list(FIXED_SPEC["train"].items())))
    assert TrialSpec(**reordered).trial_id == spec.trial_id
    assert TrialSpec(**{**FIXED_SPEC, "lr": 1e-2, "width": 1}).trial_id == spec.trial_id
    # names and locations are not content
    for field, value in (("study", "other"), ("data_root", "/data"), ("download", True)):
        assert TrialSpec(**{**FIXED_SPEC, field: value}).trial_id == spec.trial_id


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
        ("gpu_memory_gb", 8),
        ("optimizer", "adam"),
        ("precision", "bf16"),
        ("image_size", 32),
        ("width", 0.5),
        ("weights", "DEFAULT"),
        ("val_fraction", 0.2),
        ("train", {"momentum": 0.8, "weight_decay": 0.0005}),
        ("measurement", {"sample_hz": 20.0, "meters": None}),
    ],
)
def test_trial_id_changes_with_any_field(field: str, value: Any) -> None:
    assert TrialSpec(**{**FIXED_SPEC, field: value}).trial_id != TrialSpec(**FIXED_SPEC).trial_id


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
    ids = [t.trial_id for t in expand_grid(StudyConfig.model_validate(data))]
    assert ids == [t.trial_id for t in expand_grid(StudyConfig.model_validate(backwards))]
    changed = StudyConfig.model_validate({**data, "measurement": {"sample_hz": 5, "pue": 1.3}})
    assert not set(ids) & {t.trial_id for t in expand_grid(changed)}


def test_trial_spec_is_frozen_json_and_round_trips() -> None:
    spec = expand_grid(StudyConfig.model_validate({"name": "j", "gpu_memory_gb": [8]}))[0]
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["trial_id"] == spec.trial_id and data["gpu_memory_gb"] == 8.0
    again = TrialSpec.from_dict(data)
    assert again == spec and hash(again) == hash(spec)
    assert spec.steps == (RecipeStep("baseline"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.lr = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.train["momentum"] = 0.5  # type: ignore[index]


# --- resolved YAML ------------------------------------------------------------------------------


def test_resolved_yaml_round_trips(tmp_path: Path) -> None:
    config = load_study_config(
        write(
            tmp_path,
            "name: full\n"
            "output_dir: out\n"
            "datasets: [digits, fashion_mnist]\n"
            "models: [small_cnn]\n"
            "techniques: ['distill:resnet18:4:0.9,prune:structured:0.5,quantize:int8', fp16]\n"
            "learning_rates: [1e-3, 0.05]\n"
            "gpu_memory_gb: [4, null]\n"
            "train: {label_smoothing: 0.1, early_stopping_patience: 3}\n"
            "measurement: {carbon_intensity_g_per_kwh: 250, inference_s: 0}\n"
            "executor: {kind: ray, address: auto}\n",
        )
    )
    text = resolved_yaml(config)
    assert text.startswith("# wattwise ")
    resolved = load_study_config(write(tmp_path, text, "resolved.yaml"))
    assert resolved == config
    assert resolved_yaml(resolved) == text
    assert [t.trial_id for t in expand_grid(resolved)] == [t.trial_id for t in expand_grid(config)]
    for key in ("batch_sizes:", "epochs:", "momentum: 0.9", "sample_hz: 10.0", "kind: grid"):
        assert key in text  # defaults are written out


def test_an_empty_grid_is_an_error() -> None:
    config = StudyConfig.model_validate({"name": "empty"}).model_copy(update={"models": ()})
    with pytest.raises(ConfigError, match=r"^study 'empty': the grid is empty"):
        expand_grid(config)
