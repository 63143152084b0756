"""The run folder of ``wattwise train`` (train_and_save) and checkpoints: written, rebuilt
exactly, loaded safely."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import wattwise.experiment.runner as runner_module
from wattwise.config import MeasurementSettings
from wattwise.data import DatasetSplits, TensorLoader
from wattwise.errors import WattwiseError
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.runner import run_trial, train_and_save
from wattwise.experiment.spec import TrialSpec
from wattwise.train import TrainConfig, load_checkpoint, save_checkpoint
from wattwise.train.checkpoint import FORMAT

FastConfig = Callable[..., TrainConfig]


def _spec(train: TrainConfig, inference_s: float = 0.2) -> TrialSpec:
    return TrialSpec(
        study="train",
        dataset="digits",
        model="small_cnn",
        technique="baseline",
        train=train,
        measurement=MeasurementSettings(inference_s=inference_s),
        image_size=None,
        width=1.0,
        weights=None,
        val_fraction=0.1,
    )


def _strict_json(path: Path) -> Any:
    """Parse a file as standard JSON (NaN / Infinity are not JSON)."""

    def reject(token: str) -> None:
        raise AssertionError(f"{path.name} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture
def capture_model(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """The models that the pipeline builds (it does not return its model)."""
    built: list[nn.Module] = []
    original = runner_module.create_model

    def create(*args: Any, **kwargs: Any) -> nn.Module:
        model = original(*args, **kwargs)
        built.append(model)
        return model

    monkeypatch.setattr(runner_module, "create_model", create)
    return built


def test_train_writes_a_run_folder_that_rebuilds_the_model(
    tmp_path: Path,
    digits: DatasetSplits,
    fast_config: FastConfig,
    capture_model: list[nn.Module],
) -> None:
    spec = _spec(fast_config())
    out = tmp_path / "run"
    record = train_and_save(spec, out)

    assert {p.name for p in out.iterdir()} == {"run.json", "config.json", "checkpoint.pt"}
    assert record.status == "ok"
    assert record.accuracy is not None and record.accuracy > 0.5
    assert "inference" in record.phases and record.images_per_s > 0

    # run.json: the trial record (everything measured, with provenance); config.json: the spec.
    run = _strict_json(out / "run.json")
    assert TrialRecord.from_dict(run) == record
    assert run["status"] == "ok"
    assert run["train_energy_j"] > 0
    assert run["train_energy_provenance"] in ("measured", "estimated", "mixed")
    assert run["inference_energy_per_image_j"] > 0
    assert len(run["history"]) == spec.epochs
    assert run["memory_cap"] == {"gpu_memory_gib": None, "enforced": False, "note": "no cap"}
    assert run["params"] > 0 and run["macs"] > 0
    assert run["environment"]["torch"] == torch.__version__
    config = _strict_json(out / "config.json")
    assert config["dataset"] == "digits" and config["model"] == "small_cnn"
    assert TrialSpec.from_dict(config) == spec

    # The checkpoint rebuilds a model with exactly the trained model's outputs.
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint.model_spec["name"] == "small_cnn"
    assert checkpoint.model_spec["in_channels"] == 1 and checkpoint.model_spec["input_size"] == 8
    assert TrainConfig.from_dict(checkpoint.train_config) == spec.train
    assert checkpoint.dataset["name"] == "digits"
    assert checkpoint.result["test_accuracy"] == pytest.approx(record.accuracy)
    rebuilt = checkpoint.build_model().eval()
    (trained,) = capture_model
    trained.eval()
    x = next(iter(TensorLoader.from_splits(digits, "test", 64)))[0]
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained(x))
    assert load_checkpoint(out).path == out / "checkpoint.pt"  # a run folder works too


def test_diverged_run_is_saved_with_its_status(tmp_path: Path, fast_config: FastConfig) -> None:
    record = train_and_save(_spec(fast_config(lr=1e6, schedule="none")), tmp_path)
    assert record.status == "failed" and record.reason.startswith("diverged")
    assert "inference" not in record.phases  # a diverged model is not worth measuring
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "failed" and "epoch 1" in run["reason"]
    assert load_checkpoint(tmp_path).result["status"] == "diverged"


def test_a_trial_without_a_checkpoint_writes_nothing(
    tmp_path: Path, fast_config: FastConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    record = run_trial(_spec(fast_config(epochs=1), inference_s=0))
    assert record.status == "ok" and "inference" not in record.phases
    assert list(tmp_path.iterdir()) == []


def _save_small(path: Path, **extra: Any) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    save_checkpoint(
        path,
        model,
        model_spec={"name": "small_cnn", "num_classes": 3, "in_channels": 1, "input_size": 8},
        train_config=TrainConfig().to_dict(),
        dataset={"name": "digits"},
        result={"status": "ok", **extra},
    )
    return model


def test_save_checkpoint_is_atomic_and_loads_with_weights_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sub" / "model.pt"
    model = _save_small(path)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left

    calls: list[dict[str, Any]] = []
    original = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    checkpoint = load_checkpoint(path)
    assert calls and calls[0]["weights_only"] is True
    assert torch.equal(checkpoint.state_dict["weight"], model.weight.detach())
    assert checkpoint.result == {"status": "ok"}


def test_a_checkpoint_of_the_previous_version_loads_with_gpu_memory_gib(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    old_config = {**TrainConfig().to_dict(), "gpu_memory_gb": 8.0}
    del old_config["gpu_memory_gib"]
    old_cap = {"gpu_memory_gb": 8.0, "enforced": False, "note": "not enforceable on CPU"}
    save_checkpoint(
        path,
        nn.Linear(4, 3),
        model_spec={"name": "small_cnn"},
        train_config=old_config,
        dataset={"name": "digits"},
        result={"status": "ok", "memory_cap": old_cap},
    )
    checkpoint = load_checkpoint(path)
    assert "gpu_memory_gb" not in checkpoint.train_config
    assert TrainConfig.from_dict(checkpoint.train_config) == TrainConfig(gpu_memory_gib=8)
    assert checkpoint.result["memory_cap"]["gpu_memory_gib"] == 8.0


def test_only_a_trusted_load_unpickles_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    _save_small(path, finished=datetime.datetime(2024, 1, 1))
    with pytest.raises(WattwiseError, match="cannot read checkpoint"):
        load_checkpoint(path)
    assert load_checkpoint(path, trusted=True).result["finished"].year == 2024


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint at all\n", "cannot read checkpoint"),
        ({"weights": torch.zeros(2)}, "not a wattwise checkpoint"),
        ({"format": "other/1", "model": {}}, "not a wattwise checkpoint"),
        ({"format": FORMAT.replace("/1", "/0")}, "not a wattwise checkpoint"),
        ([1, 2, 3], "not a wattwise checkpoint"),
    ],
)
def test_a_non_checkpoint_file_is_a_wattwise_error(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = tmp_path / "file.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(WattwiseError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_missing_checkpoint_is_a_wattwise_error(tmp_path: Path) -> None:
    with pytest.raises(WattwiseError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(WattwiseError, match="no checkpoint"):
        load_checkpoint(tmp_path)  # a folder without checkpoint.pt


def test_a_trial_measures_inference_with_the_configured_threads(
    fast_config: FastConfig,
) -> None:
    torch.set_num_threads(2)  # PyTorch's default here; the autouse fixture restores it
    record = run_trial(_spec(fast_config(epochs=1, num_threads=1), inference_s=0.1))
    assert record.status == "ok"
    assert record.threads == 1 and record.comparison["threads"] == 1  # measured, and recorded
    assert record.environment["torch_threads"] == 1
    assert torch.get_num_threads() == 2  # restored afterwards
