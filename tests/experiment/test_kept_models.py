"""A study keeps the chosen variant of each configuration: every ok trial saves its final model
in ``<study>/models/<trial_id>/`` as ``wattwise optimize`` saves its final one, records it, keeps
the file a run before wrote, and ``keep_models: false`` saves none."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import wattwise
from wattwise.config import StudyConfig
from wattwise.experiment import ResultsStore
from wattwise.experiment import runner as runner_module
from wattwise.experiment.runner import run_trial, train_and_save
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.experiment.sweep import run_study
from wattwise.optimize.pruned_files import PRUNED_FORMAT
from wattwise.optimize.saved_model import EXPORT_FORMAT

PRUNE, INT8 = "prune:structured:0.5", "quantize:int8:compile=false:calibration_batches=2"


def study(tmp_path: Path, **changes: Any) -> StudyConfig:
    """Tiny digits trials: 8 px, quarter-width small_cnn, 1 epoch, no timed inference."""
    values: dict[str, Any] = {
        "name": "kept",
        "output_dir": str(tmp_path),
        "width": 0.25,
        "techniques": [PRUNE, INT8],
        "batch_sizes": [64],
        "learning_rates": [0.05],
        "epochs": [1],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0, "inference_batch_size": 32},
    }
    return StudyConfig(**(values | changes))


def model_files(folder: Path) -> dict[str, int]:
    """Each kept model file (relative to the study folder) -> when it was written (ns)."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in sorted((folder / "models").glob("*/model.pt*"))
    }


def kept_records(summary: Any) -> dict[str, Any]:
    """The study's ok records by the first word of their technique."""
    with ResultsStore(summary.store_path) as store:
        return {r.spec["technique"].split(":")[0]: r for r in store.records("ok")}


def test_a_sweep_keeps_each_trials_final_model_and_records_it(tmp_path):
    summary = run_study(study(tmp_path, techniques=[PRUNE, "channels_last"]))
    assert (summary.ok, summary.failed) == (2, 0)
    folder, records = summary.study_dir, kept_records(summary)
    pruned, layout = records["prune"], records["channels_last"]
    for record, kept in ((pruned, pruned.details["model"]), (layout, layout.details["model"])):
        assert kept["saved"] and kept["path"] == f"models/{record.trial_id}/model.pt"
        assert kept["format"] == PRUNED_FORMAT and kept["precision"] == "fp32"
        assert "wattwise.load_model" in kept["contents"]
        loaded = wattwise.load_model(folder / kept["path"])
        assert sum(p.numel() for p in loaded.parameters()) == record.params  # the final variant
        assert loaded(torch.zeros(4, 1, 8, 8)).shape == (4, 10)
    assert pruned.details["model"]["channels_last"] is False
    assert layout.details["model"]["channels_last"] is True  # how to run it, recorded
    assert "channels_last" in layout.details["model"]["contents"]
    assert set(model_files(folder)) == {r.details["model"]["path"] for r in records.values()}
    assert pruned.params < layout.params  # two different models


@pytest.mark.slow  # 5-8 s (PT2E export twice); the int8 file itself: test_saved_model.py
def test_an_int8_trial_keeps_an_exported_program(tmp_path):
    import torchao  # noqa: F401  (registers the quantized_decomposed ops the int8 program uses)

    summary = run_study(study(tmp_path, techniques=[INT8]))
    record = kept_records(summary)["quantize"]
    kept = record.details["model"]
    assert kept["saved"] and kept["path"] == f"models/{record.trial_id}/model.pt2"
    assert kept["format"] == EXPORT_FORMAT and "torch.export" in kept["contents"]
    program = torch.export.load(summary.study_dir / kept["path"]).module()
    assert program(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_a_trial_that_runs_again_keeps_the_model_already_there(tmp_path):
    """Resume after a crash (or without resume): the file for that trial id is not rewritten."""
    config = study(tmp_path, techniques=[PRUNE])
    first = run_study(config)
    written = model_files(first.study_dir)
    assert len(written) == 1
    again = run_study(config, resume=False)  # every trial runs again
    assert again.ran == 1 and model_files(first.study_dir) == written
    with ResultsStore(again.store_path) as store:
        (record,) = store.records("ok")
    kept = record.details["model"]
    assert kept["saved"] and kept["path"] in written and kept["existing"] is True


def test_keep_models_false_keeps_none_and_leaves_the_trial_ids(tmp_path):
    kept, dropped = study(tmp_path), study(tmp_path, keep_models=False)
    assert [s.trial_id for s in expand_grid(kept)] == [s.trial_id for s in expand_grid(dropped)]
    spec = expand_grid(dropped)[0]
    assert spec.keep_models is False and TrialSpec.from_dict(spec.to_dict()) == spec
    assert "keep_models" not in expand_grid(kept)[0].to_dict()  # stored specs stay as they were
    summary = run_study(study(tmp_path, keep_models=False, techniques=[PRUNE]))
    assert summary.ok == 1 and not (summary.study_dir / "models").exists()
    with ResultsStore(summary.store_path) as store:
        assert "model" not in store.records("ok")[0].details


def test_a_model_that_cannot_be_saved_is_a_note_not_a_failure(tmp_path):
    (spec,) = expand_grid(study(tmp_path, techniques=["quantize:int8_dynamic"]))
    record = run_trial(spec, teacher_dir=tmp_path / "kept" / "teachers")
    assert record.status == "ok", record.reason
    kept = record.details["model"]
    assert kept["saved"] is False and "packed int8" in kept["reason"]
    assert "\n" not in kept["reason"] and not list(tmp_path.glob("kept/models/*/model.pt*"))


def test_a_failing_disk_does_not_fail_the_measured_trial(tmp_path, monkeypatch):
    import wattwise.experiment.kept_models as kept_module

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kept_module, "save_model", full_disk)
    (spec,) = expand_grid(study(tmp_path, techniques=[PRUNE]))
    record = run_trial(spec, teacher_dir=tmp_path / "kept" / "teachers")
    assert record.status == "ok" and record.accuracy is not None
    assert record.details["model"] == {
        "saved": False,
        "reason": "OSError: [Errno 28] No space left on device",
    }


def test_a_trial_outside_a_study_and_wattwise_train_keep_nothing_new(tmp_path):
    (spec,) = expand_grid(study(tmp_path, techniques=["baseline"]))
    assert "model" not in run_trial(spec).details  # no study folder: nowhere to keep it
    record = train_and_save(spec, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "run.json",
    ]
    assert "model" not in record.details
    assert "model" not in json.loads((tmp_path / "run" / "run.json").read_text())["details"]


def test_a_failed_trial_keeps_no_model(tmp_path, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner_module, "run_recipe", broken)
    (spec,) = expand_grid(study(tmp_path, techniques=[PRUNE]))
    record = run_trial(spec, teacher_dir=tmp_path / "kept" / "teachers")
    assert record.status == "failed" and "model" not in record.details
    assert not (tmp_path / "kept" / "models").exists()


@pytest.mark.parametrize("value", ["maybe", 2])
def test_keep_models_must_be_a_boolean(tmp_path, value):
    from wattwise.errors import ConfigError
    from wattwise.validation import validate

    with pytest.raises(ConfigError, match="keep_models"):
        validate(StudyConfig, {"name": "s", "keep_models": value}, "study config")


def test_the_spec_keeps_keep_models_out_of_the_training_key(tmp_path):
    from wattwise.experiment.spec import training_key

    kept, dropped = (expand_grid(study(tmp_path, keep_models=k))[0] for k in (True, False))
    assert training_key(kept.to_dict()) == training_key(dropped.to_dict())
    assert dataclasses.replace(kept, keep_models=False) == dropped


def test_the_report_names_the_recommended_variants_saved_model():
    """Where the report lists the recommendation: the kept file of the chosen configuration."""
    from tests.analysis.analysis_fixtures import make_record, variant
    from wattwise.analysis.report import StudyData, render_html, render_markdown, report_data

    def details(trial_id: str) -> dict[str, Any]:
        model = {"saved": True, "path": f"models/{trial_id}/model.pt2", "format": EXPORT_FORMAT}
        return {"dataset": {"num_classes": 10, "test_images": 10_000}, "model": model}

    int8 = dataclasses.replace(
        variant("quantize:int8", 0.948, 0.001, optimization_energy_j=40.0),
        saving=2.0,
        saving_low=1.9,
        saving_high=2.1,
        saving_significant=True,
    )
    records = (
        make_record("base", accuracy=0.95, details=details("base")),
        make_record(
            "q",
            technique="quantize:int8",
            accuracy=0.948,
            j_per_image=0.001,
            variants=(variant("baseline", 0.95, 0.002), int8),
            details=details("q"),
        ),
    )
    data = report_data(StudyData(Path("x.sqlite"), "kept", records))
    (chosen,) = data.recommendations["inference"]
    assert chosen.chosen is not None and chosen.chosen.technique == "quantize:int8"
    assert chosen.saved_models == ("models/q/model.pt2",)
    assert "Its saved model: models/q/model.pt2." in chosen.message
    assert "models/base/" not in chosen.message  # the baseline's file is not the recommendation
    assert "models/q/model.pt2" in render_html(data) and "models/q/model.pt2" in render_markdown(
        data
    )
