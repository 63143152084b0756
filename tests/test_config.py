"""Study configuration: validation errors (one line, naming the key), the seed's grid, resolved
YAML and safe loading. No model is built: only the registries' names are read. Trial specs and
their identity are tested in tests/experiment/test_spec.py."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from wattwise.config import MeasurementSettings, StudyConfig, load_study_config, resolved_yaml
from wattwise.energy.carbon import CarbonConfig
from wattwise.errors import ConfigError
from wattwise.experiment.spec import expand_grid
from wattwise.validation import MAX_INT, validate


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
        (
            "modles: [resnet18]",
            "modles: unknown key; allowed keys: name, output_dir, store, datasets",
        ),
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
            "choose from: ",
        ),
        ("techniques: ['prune:0.5']", "techniques[0]: prune takes prune:structured:<ratio>"),
        ("techniques: ['quantize:int4']", "techniques[0]: quantize takes quantize:int8"),
        ("optimizer: rmsprop", "optimizer: got 'rmsprop'; choose from: sgd, adam"),
        (
            "executor: {kind: pbs}",
            "executor.kind: got 'pbs'; choose from: local, local-gpus, ray, slurm",
        ),
        ("measurement: {meters: [rapl, foo]}", "measurement.meters: unknown meter 'foo'; choose"),
        ("measurement: {country: XX}", "measurement.country: no carbon intensity for 'XX'"),
        ("search: {objectives: [accuracy, speed]}", "search.objectives[1]: unknown metric 'speed'"),
        # wrong types
        ("batch_sizes: [32, big]", "batch_sizes[1]: expected an integer, got 'big'"),
        ("batch_sizes: [32.5]", "batch_sizes[0]: expected an integer, got 32.5"),
        ("learning_rates: [fast]", "learning_rates[0]: expected a number, got 'fast'"),
        ("gpu_memory_gib: [true]", "gpu_memory_gib[0]: expected a number, got True"),
        ("download: 'yes'", "download: expected true or false, got 'yes'"),
        ("models: {resnet18: 1}", "models[0]: expected a string, got {'resnet18': 1}"),
        ("measurement: fast", "measurement: expected a mapping (key: value), got 'fast'"),
        ("train: {device: 0}", "train.device: expected a string, got 0"),
        ("train: {augment: maybe}", "train.augment: expected true or false, got 'maybe'"),
        ("train: {momentum: 1.5}", "train.momentum: must be < 1.0, got 1.5"),
        ("train: {device: gpu}", "train.device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("train: {early_stopping_patience: 0}", "train.early_stopping_patience: must be > 0"),
        # empty lists
        ("models: []", "models: must not be empty"),
        ("epochs: []", "epochs: must not be empty"),
        ("output_dir: ''", "output_dir: must not be empty"),
        # non-positive numbers
        ("batch_sizes: [0]", "batch_sizes[0]: must be > 0, got 0"),
        ("learning_rates: [0.1, -0.01]", "learning_rates[1]: must be > 0, got -0.01"),
        ("epochs: [10, 0]", "epochs[1]: must be > 0, got 0"),
        ("gpu_memory_gib: [8, -4]", "gpu_memory_gib[1]: must be > 0, got -4"),
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


def test_the_previous_gpu_memory_gb_key_is_refused_with_its_new_name(tmp_path: Path) -> None:
    renamed = (
        "gpu_memory_gb: renamed to gpu_memory_gib (the cap is in GiB, 2**30 bytes); "
        "write gpu_memory_gib: [...]"
    )
    assert error_of(tmp_path, "name: s\ngpu_memory_gb: [4, 8]\n") == renamed
    in_train = error_of(tmp_path, "name: s\ntrain: {gpu_memory_gb: 8}\n")
    assert in_train == f"train.{renamed} at the top level of the study"


def test_an_unknown_teacher_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: s\ntechniques: ['distill:resnet19']\n")
    assert message.startswith("techniques[0]: ")
    assert "unknown teacher model 'resnet19'" in message


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("batch_sizes: [32, 100000000000000000000]", "batch_sizes[1]"),
        ("epochs: [100000000000000000000]", "epochs[0]"),
        ("seeds: [0, 4294967296]", "seeds[1]"),
        ("image_size: 100000000000000000000", "image_size"),
        ("train: {eval_batch_size: 100000000000000000000}", "train.eval_batch_size"),
        ("measurement: {inference_batch_size: 100000000000000000000}", "measurement.inference_"),
    ],
)
def test_integers_are_range_checked_at_validation(tmp_path: Path, body: str, key: str) -> None:
    # A batch size of 10**20 is a typo: one line naming the key, not an OverflowError later.
    message = error_of(tmp_path, f"name: s\n{body}\n")
    assert message.startswith(f"{key}")
    assert f": must be <= {MAX_INT}, got " in message
    assert MAX_INT == 2**31 - 1


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


def test_a_fifo_is_refused_at_once_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "study.yaml"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            load_study_config(fifo)
        except BaseException as err:  # handed to the test thread
            errors.append(err)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=2)
    if reader.is_alive():  # blocked opening the FIFO: release it, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        reader.join(timeout=5)
        pytest.fail("load_study_config blocked on a FIFO")
    (err,) = errors
    assert isinstance(err, ConfigError)
    assert str(err) == f"{fifo}: cannot read the study config: not a regular file (a FIFO)"


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_device_is_refused_without_being_read() -> None:
    # /dev/null, not /dev/zero: a regression must not read a device without end
    with pytest.raises(ConfigError, match="not a regular file \\(a character device\\)"):
        load_study_config("/dev/null")


def test_a_relative_output_dir_lies_next_to_the_study_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "studies").mkdir()
    path = write(tmp_path / "studies", "name: s\noutput_dir: ../results\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_study_config(path).output_dir == str(tmp_path / "results")
    relative = Path("..") / "studies" / "study.yaml"  # a relative study path, too
    assert load_study_config(relative).output_dir == str(tmp_path / "results")
    absolute = write(tmp_path, f"name: s\noutput_dir: {tmp_path / 'abs'}\n")
    assert load_study_config(absolute).output_dir == str(tmp_path / "abs")
    default = write(tmp_path / "studies", "name: s\n", "default.yaml")
    assert load_study_config(default).output_dir == str(tmp_path / "studies" / "results")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = write(tmp_path, "name: s\noutput_dir: ~/runs\n", "home.yaml")
    assert load_study_config(home).output_dir == str(tmp_path / "home" / "runs")


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    message = error_of(
        tmp_path, f'name: s\nmodels: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    assert message.startswith("line 2, column 9: could not determine a constructor for the tag")
    assert "only plain YAML is accepted" in message
    assert not marker.exists()
    assert "only plain YAML" in error_of(tmp_path, "name: !!python/name:os.system ''\n")


def test_validate_and_direct_construction_raise_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^study config: models\[0\]: unknown model 'x'"):
        validate(StudyConfig, {"name": "s", "models": ["x"]}, "study config")
    with pytest.raises(ConfigError, match=r"^study config: expected a mapping"):
        validate(StudyConfig, ["name", "s"], "study config")
    with pytest.raises(ConfigError, match=r"^StudyConfig: epochs\[0\]: must be > 0"):
        StudyConfig(name="s", epochs=[0])
    with pytest.raises(ConfigError, match=r"^MeasurementSettings: pue: must be >= 1.0, got 0.5"):
        MeasurementSettings(pue=0.5)
    with pytest.raises(ConfigError, match=r"^ExecutorSettings: gpus: only the 'local-gpus'"):
        dataclasses.replace(StudyConfig(name="s").executor, gpus=(0,))


@pytest.mark.parametrize(("key", "value"), [("inference_s", -1.0), ("inference_batch_size", 0)])
def test_inference_settings_bad_value_is_a_config_error(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        MeasurementSettings(**{key: value})


def test_nan_inference_seconds_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="inference_s"):
        MeasurementSettings(inference_s=math.nan)


# --- accepted forms, defaults -----------------------------------------------------------------


def test_defaults_reproduce_the_seed_grid() -> None:
    config = StudyConfig(
        **{
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
    assert config.gpu_memory_gib == (None,)
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
            "gpu_memory_gib: [4, 8, 16, 32, null]\n"
            "datasets: [MedMNIST:PathMNIST]\n"
            "executor: {kind: local-gpus, gpus: [0, 1]}\n"
            "search: {kind: optuna, n_trials: 20, objectives: [accuracy], directions: [maximize]}\n"
            "measurement: {meters: 'rapl,nvml', country: deu}\n",
        )
    )
    assert config.models == ("resnet18",)
    assert config.learning_rates == (0.001,)
    assert config.datasets == ("medmnist:pathmnist",)
    assert config.gpu_memory_gib == (4.0, 8.0, 16.0, 32.0, None)
    assert config.measurement.meters == ("rapl", "nvml")
    assert config.measurement.carbon.country == "DEU"
    assert config.search.n_trials == 20
    assert config.executor.gpus == (0, 1)
    assert len(expand_grid(config)) == 27 // 3 * 5
    monitor = config.measurement.monitor_config()
    assert monitor.meters == ("rapl", "nvml")
    assert monitor.carbon.country == "DEU"
    assert monitor.carbon == config.measurement.carbon == CarbonConfig(country="DEU")


def test_measurement_holds_the_energy_settings_and_keeps_the_flat_study_keys() -> None:
    # Each setting and default is the energy config's; a study writes the carbon keys flat.
    default = MeasurementSettings()
    monitor = default.monitor_config()
    assert (default.sample_hz, default.meters, default.carbon) == (
        monitor.sample_hz,
        monitor.meters,
        monitor.carbon,
    )
    assert default.carbon == CarbonConfig()
    given = {"country": "fra", "carbon_intensity_g_per_kwh": 250, "pue": 1.3}
    settings = validate(MeasurementSettings, {"sample_hz": 5, **given})
    assert settings.carbon == CarbonConfig(intensity_g_per_kwh=250, country="FRA", pue=1.3)
    assert (
        MeasurementSettings(sample_hz=5, **given)
        == MeasurementSettings(carbon=settings.carbon, sample_hz=5)
        == settings
    )
    data = validate(StudyConfig, {"name": "m", "measurement": settings}).measurement
    assert data == settings
    flat = resolved_yaml(StudyConfig(name="m", measurement=settings))
    assert "  country: FRA\n  carbon_intensity_g_per_kwh: 250.0\n  pue: 1.3\n" in flat
    assert "carbon:" not in flat
    assert dataclasses.replace(settings, inference_s=0).carbon == settings.carbon
    with pytest.raises(ConfigError, match=r"^MeasurementSettings: carbon: give either carbon"):
        MeasurementSettings(carbon=CarbonConfig(), pue=1.2)
    with pytest.raises(ConfigError, match=r"carbon_intensity_g_per_kwh: must be >= 0"):
        MeasurementSettings(carbon_intensity_g_per_kwh=-1)


def test_train_section_is_resolved_with_every_default() -> None:
    config = StudyConfig(name="t", train={"momentum": 0.8, "device": "cpu"}, optimizer="adam")
    assert config.train["momentum"] == 0.8
    assert config.train["weight_decay"] == 5e-4  # a TrainConfig default, filled in
    assert "epochs" not in config.train and "optimizer" not in config.train
    spec = expand_grid(config)[-1]
    train = spec.train
    assert (train.epochs, train.batch_size, train.lr, train.optimizer) == (30, 128, 0.1, "adam")
    assert (train.momentum, train.device, train.seed) == (0.8, "cpu", 0)


def test_config_is_frozen_and_replace_validates() -> None:
    config = StudyConfig(name="f")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "g"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.measurement.sample_hz = 1.0  # type: ignore[misc]
    assert dataclasses.replace(config, models=["resnet18"]).models == ("resnet18",)
    with pytest.raises(ConfigError, match=r"^StudyConfig: models: must not be empty"):
        dataclasses.replace(config, models=())


def test_techniques_are_kept_as_canonical_recipes() -> None:
    config = StudyConfig(name="r", techniques=["prune:structured:.50"])
    assert config.techniques == ("prune:structured:0.5",)


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
            "gpu_memory_gib: [4, null]\n"
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


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) would read 1e-4 as text; a study file means the number.
    config = load_study_config(
        write(tmp_path, "name: e\nlearning_rates: [1e-3]\ntrain: {weight_decay: 1e-4}\n")
    )
    assert config.learning_rates == (0.001,)
    assert config.train["weight_decay"] == pytest.approx(1e-4)


def test_read_timeout_reaches_the_monitor_but_not_the_trial_identity() -> None:
    import argparse

    from wattwise.cli._base import add_meter_options, measurement_from_args
    from wattwise.experiment.spec import TrialSpec

    patient = validate(MeasurementSettings, {"read_timeout_s": 0.5}, "measurement")
    assert patient.monitor_config().read_timeout_s == 0.5
    assert MeasurementSettings().monitor_config().read_timeout_s == 5.0
    grid = {"name": "s", "batch_sizes": [32], "learning_rates": [0.1], "epochs": [1]}
    base = StudyConfig(**grid)  # type: ignore[arg-type]
    (plain,) = expand_grid(base)
    (slow,) = expand_grid(dataclasses.replace(base, measurement=patient))
    assert plain.trial_id == slow.trial_id  # how long a read may take, not what is measured
    assert TrialSpec.from_dict(slow.to_dict()).measurement.read_timeout_s == 0.5
    parser = argparse.ArgumentParser()
    add_meter_options(parser)
    args = parser.parse_args(["--read-timeout-s", "2"])
    assert measurement_from_args(args).monitor_config().read_timeout_s == 2.0
