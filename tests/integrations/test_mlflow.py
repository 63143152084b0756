"""MLflow tracking of studies, against the real mlflow package and a local store in tmp_path:
one study run with a nested run per finished trial (parameters, metrics, provenance and device
tags, the record as an artifact), failed trials FAILED with their reason, nothing logged twice
when a sweep resumes, and MLflow errors that never fail a trial.

Most tests use MLflow's file store (``file:`` URIs, opted in with ``MLFLOW_ALLOW_FILE_STORE``):
it opens at once, where the default SQLite store spends seconds creating its tables (the one
test of that default is ``slow``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.analysis_fixtures import make_record, variant, write_store
from wattwise.cli import main
from wattwise.config import MlflowSettings, StudyConfig, TrackingSettings, load_study_config
from wattwise.errors import ConfigError
from wattwise.experiment import ResultsStore, TrialRecord
from wattwise.experiment.sweep import run_study
from wattwise.integrations.mlflow import (
    RECORD_ARTIFACT,
    MlflowTracker,
    run_contents,
    study_tracker,
    tracking_uri,
)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

STUDY = """\
name: tracked
output_dir: {out}
width: 0.25
batch_sizes: [64]
learning_rates: [0.05, 0.1]
epochs: [1]
train: {{hflip: false, augment: false, num_threads: 1}}
measurement: {{inference_s: 0}}
"""


def store_uri(folder: Path) -> str:
    return (folder / "mlruns").as_uri()


@pytest.fixture(autouse=True)
def _file_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("COLUMNS", "200")


def runs_of(uri: str, experiment: str) -> tuple[Any, list[Any]]:
    """The study run and the trial runs (active ones) of ``experiment``."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    studies = [r for r in runs if r.data.tags.get("wattwise.kind") == "study"]
    assert len(studies) == 1, [r.data.tags for r in studies]
    trials = [r for r in runs if "wattwise.trial_id" in r.data.tags]
    return studies[0], trials


@dataclass(frozen=True)
class Swept:
    """A tiny study swept once by ``wattwise sweep --mlflow``: one ok trial, one failed."""

    folder: Path
    uri: str
    code: int
    records: dict[str, TrialRecord]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swept]:
    from wattwise.experiment import runner

    tmp = tmp_path_factory.mktemp("swept")
    study = tmp / "tracked.yaml"
    study.write_text(STUDY.format(out=tmp / "results"), encoding="utf-8")
    uri = store_uri(tmp)
    real_fit = runner.fit

    def fit(model: Any, data: Any, config: Any, **kwargs: Any) -> Any:
        if config.lr == 0.1:
            raise RuntimeError("diverged on purpose")
        return real_fit(model, data, config, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mp.setenv("COLUMNS", "200")
        mp.setattr(runner, "fit", fit)
        code = main(["sweep", str(study), "--mlflow", uri])
    folder = tmp / "results" / "tracked"
    with ResultsStore(folder / "results.sqlite", read_only=True) as store:
        records = {r.trial_id: r for r in store.records()}
    yield Swept(folder, uri, code, records)


def test_a_sweep_is_one_study_run_with_a_nested_run_per_trial(swept, tmp_path):
    assert swept.code == 0
    study, trials = runs_of(swept.uri, "tracked")  # the experiment is named after the study
    assert study.info.status == "FINISHED" and study.info.run_name == "tracked"
    assert len(trials) == 2 == len(swept.records)
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {study.info.run_id}
    client = MlflowClient(tracking_uri=swept.uri)
    assert "study.yaml" in {a.path for a in client.list_artifacts(study.info.run_id)}
    assert study.data.metrics["trials_ok"] == 1 and study.data.metrics["trials_failed"] == 1
    # the resolved config records the tracking, so that resuming it tracks to the same place
    recorded = load_study_config(swept.folder / "study.yaml").tracking.mlflow
    assert recorded is not None and recorded.uri == swept.uri

    (ok,) = (r for r in trials if r.info.status == "FINISHED")
    record = swept.records[ok.data.tags["wattwise.trial_id"]]
    assert record.status == "ok" and ok.data.tags["wattwise.attempt"] == "1"
    params = ok.data.params
    assert (params["dataset"], params["model"], params["technique"]) == (
        "digits",
        "small_cnn",
        "baseline",
    )
    assert (params["batch_size"], params["lr"], params["epochs"], params["seed"]) == (
        "64",
        "0.05",
        "1",
        "0",
    )
    assert params["train.momentum"] == "0.9" and params["measurement.inference_s"] == "0.0"
    metrics = ok.data.metrics
    assert metrics["accuracy"] == pytest.approx(record.accuracy)
    assert metrics["train_energy_j"] == pytest.approx(record.train_energy_j)
    assert metrics["accuracy_per_kj_train"] == pytest.approx(record.accuracy_per_kj_train)
    assert metrics["training_energy_j"] == pytest.approx(record.training_energy_j)
    assert metrics["total_energy_j"] == pytest.approx(record.total_energy_j)
    assert metrics["phase/train/energy_j"] == pytest.approx(record.phase_energy_j()["train"])
    assert "inference_energy_per_image_j" not in metrics  # not measured: not logged as a number
    history = client.get_metric_history(ok.info.run_id, "epoch/val_accuracy")
    assert [(m.step, m.value) for m in history] == [
        (1, pytest.approx(record.history[0]["val_accuracy"]))
    ]
    tags = ok.data.tags
    assert tags["provenance.train_energy"] == record.train_energy_provenance
    components = record.phases["train"]["components"]
    cpu = next(c for c in components if c["component"] == "cpu")
    assert tags["provenance.cpu"] == cpu["provenance"]["label"]  # e.g. estimated:tdp
    assert tags["device.device_id"] == record.environment["device_id"]
    assert tags["device.hostname"] == record.environment["hostname"]
    assert ok.info.run_name == "digits small_cnn baseline bs64 lr0.05 ep1 seed0"
    saved = client.download_artifacts(ok.info.run_id, RECORD_ARTIFACT, str(tmp_path))
    assert json.loads(Path(saved).read_text(encoding="utf-8")) == record.to_dict()

    (failed,) = (r for r in trials if r.info.status != "FINISHED")
    assert failed.info.status == "FAILED"
    assert failed.data.tags["wattwise.reason"] == "RuntimeError: diverged on purpose"
    assert failed.data.params["lr"] == "0.1"


def test_a_resumed_sweep_logs_no_trial_twice_and_fills_in_what_is_missing(swept):
    config = load_study_config(swept.folder / "study.yaml")
    study, before = runs_of(swept.uri, "tracked")
    client = MlflowClient(tracking_uri=swept.uri)
    deleted = before[0]
    client.delete_run(deleted.info.run_id)  # as if its logging had never happened

    tracker = study_tracker(config, swept.folder)
    assert tracker is not None
    with tracker:
        summary = run_study(config, reporter=tracker)
    assert summary.ran == 0  # nothing trained again
    again, after = runs_of(swept.uri, "tracked")
    assert again.info.run_id == study.info.run_id and again.info.status == "FINISHED"
    keys = sorted(
        (r.data.tags["wattwise.trial_id"], r.data.tags["wattwise.attempt"]) for r in after
    )
    assert keys == sorted((r.data.tags["wattwise.trial_id"], "1") for r in before)
    assert (tracker.logged, tracker.found) == (1, 1)  # the deleted one logged again, once

    tracker = study_tracker(config, swept.folder)
    with tracker:
        run_study(config, reporter=tracker)
    assert len(runs_of(swept.uri, "tracked")[1]) == 2 and tracker.logged == 0


def test_trials_finished_before_tracking_began_are_logged_and_a_half_logged_run_replaced(
    tmp_path,
):
    records = [make_record("t-1", study="s"), make_record("t-2", study="s", lr=0.1)]
    write_store(tmp_path / "results.sqlite", records, study="s")
    uri = store_uri(tmp_path)
    settings = MlflowSettings(uri=uri, experiment="exp")
    with MlflowTracker(settings, tmp_path) as tracker:
        tracker.on_study_start("s", 2, 2, "local")
    study, trials = runs_of(uri, "exp")
    assert sorted(r.data.tags["wattwise.trial_id"] for r in trials) == ["t-1", "t-2"]
    assert study.info.status == "KILLED"  # the study never reported its end
    client = MlflowClient(tracking_uri=uri)
    half = client.create_run(  # a run whose logging stopped half-way (never terminated)
        study.info.experiment_id,
        tags={
            "mlflow.parentRunId": study.info.run_id,
            "wattwise.trial_id": "t-3",
            "wattwise.attempt": "1",
        },
    )
    with ResultsStore(tmp_path / "results.sqlite") as store:
        store.finish_trial(make_record("t-3", study="s", lr=0.5))
    with MlflowTracker(settings, tmp_path) as tracker:
        tracker.on_study_start("s", 3, 3, "local")
    _, trials = runs_of(uri, "exp")
    assert sorted(r.data.tags["wattwise.trial_id"] for r in trials) == ["t-1", "t-2", "t-3"]
    assert half.info.run_id not in {r.info.run_id for r in trials}
    assert all(r.info.status == "FINISHED" for r in trials)


def test_an_mlflow_error_never_fails_a_trial_and_the_next_sweep_logs_it(
    tmp_path, monkeypatch, caplog
):
    config = StudyConfig(
        name="flaky",
        output_dir=str(tmp_path),
        width=0.25,
        batch_sizes=[64],
        learning_rates=[0.05],
        epochs=[1],
        train={"hflip": False, "augment": False, "num_threads": 1},
        measurement={"inference_s": 0},
        tracking={"mlflow": {"uri": store_uri(tmp_path)}},
    )

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise mlflow.exceptions.MlflowException("the tracking server is gone")

    folder = tmp_path / "flaky"
    tracker = study_tracker(config, folder)
    assert tracker is not None
    with monkeypatch.context() as mp, caplog.at_level(logging.WARNING):
        mp.setattr(MlflowClient, "log_batch", refuse)
        with tracker:
            summary = run_study(config, reporter=tracker)
    assert (summary.ok, summary.failed) == (1, 0)  # the trial is measured and stored
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the tracking server is gone" in warnings[0], warnings
    assert "next sweep" in warnings[0]
    assert tracker.logged == 0 and any("not logged" in line for line in tracker.lines())

    tracker = study_tracker(config, folder)
    with tracker:
        assert run_study(config, reporter=tracker).ran == 0
    (trial,) = runs_of(store_uri(tmp_path), "flaky")[1]
    assert trial.info.status == "FINISHED" and tracker.logged == 1


def test_an_unreachable_store_is_one_warning_and_the_sweep_goes_on(tmp_path, caplog):
    write_store(tmp_path / "results.sqlite", [make_record("t-1", study="s")], study="s")
    (tmp_path / "file").write_text("x", encoding="utf-8")  # a store below a file: cannot open
    settings = MlflowSettings(uri=(tmp_path / "file" / "mlruns").as_uri())
    with caplog.at_level(logging.WARNING), MlflowTracker(settings, tmp_path) as tracker:
        tracker.on_study_start("s", 1, 1, "local")
        tracker.on_trial_end(make_record("t-2", study="s"), 2, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MLflow" in warnings[0], warnings
    assert tracker.logged == 0


def test_the_run_carries_the_savings_with_their_intervals_and_the_provenance():
    pruned = replace(
        variant("prune:structured:0.5", 0.94, 0.001, optimization_energy_j=40.0),
        saving=2.0,
        saving_low=1.8,
        saving_high=2.2,
        saving_significant=True,
        saving_vs_best_fp32=1.5,
        saving_vs_best_fp32_low=1.3,
        saving_vs_best_fp32_high=1.7,
        verdict="2.00x less J/image (1.80 to 2.20, 95 %)",
    )
    record = make_record(
        "t-1",
        technique="prune:structured:0.5",
        variants=(variant("baseline", 0.95, 0.002), pruned),
        environment={"device_id": "cpu:Test CPU@host", "gpus": [{"name": "H200", "uuid": "GPU-1"}]},
    )
    contents = run_contents(record)
    metrics = {key: value for key, value, _ in contents.metrics}
    assert (metrics["saving"], metrics["saving_low"], metrics["saving_high"]) == (2.0, 1.8, 2.2)
    assert metrics["saving_vs_best_fp32_low"] == 1.3 and metrics["saving_significant"] == 1.0
    assert metrics["accuracy_per_j_per_image"] == pytest.approx(record.accuracy_per_j_per_image)
    assert metrics["inference_energy_per_image_j"] == pytest.approx(0.002)
    assert metrics["variant/prune_structured_0.5/saving_high"] == 2.2
    assert metrics["variant/baseline/inference_energy_per_image_j"] == 0.002
    assert metrics["phase/recipe/prune_structured_0.5/energy_j"] == pytest.approx(40.0)
    assert metrics["technique_energy_j"] == pytest.approx(40.0)
    tags = contents.tags
    assert tags["wattwise.verdict"] == pruned.verdict
    assert tags["provenance.cpu"] == "estimated:tdp"
    assert tags["provenance.dram"] == "estimated:dram-rss"
    assert tags["device.gpu0.name"] == "H200" and tags["device.gpu0.uuid"] == "GPU-1"
    assert tags["device.device_id"] == "cpu:Test CPU@host"
    for key in (*contents.params, *contents.tags, *metrics):  # MLflow's key alphabet
        assert all(c.isalnum() or c in "_-./ " for c in key), key


def test_the_default_store_is_a_sqlite_file_in_the_study_folder(tmp_path):
    assert tracking_uri(MlflowSettings(), tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    given = "http://mlflow.example:5000"
    assert tracking_uri(MlflowSettings(uri=given), tmp_path) == given


@pytest.mark.slow
def test_the_default_sqlite_store_works_and_keeps_artifacts_in_the_study_folder(tmp_path):
    write_store(tmp_path / "results.sqlite", [make_record("t-1", study="s")], study="s")
    with MlflowTracker(MlflowSettings(), tmp_path) as tracker:
        tracker.on_study_start("s", 1, 1, "local")
    _, (trial,) = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}", "s")
    assert trial.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    assert list((tmp_path / "mlartifacts").rglob(RECORD_ARTIFACT))


# --- configuration and command line ------------------------------------------------------------


def test_the_tracking_section_is_validated_with_the_study(tmp_path):
    assert StudyConfig(name="s").tracking == TrackingSettings()  # off by default
    assert StudyConfig(name="s").tracking.mlflow is None
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ntracking: {mlflow: {uri: 'http://mlflow:5000', experiment: energy}}\n",
        encoding="utf-8",
    )
    assert load_study_config(path).tracking.mlflow == MlflowSettings(
        uri="http://mlflow:5000", experiment="energy"
    )
    for bad, message in [
        ({"mlflow": {"uri": "ftp://host/x"}}, "tracking.mlflow.uri: not an MLflow tracking URI"),
        ({"mlflow": {"uri": "mlruns"}}, "tracking.mlflow.uri: not an MLflow tracking URI"),
        ({"mlflow": {"uri": "http://"}}, "tracking.mlflow.uri: not an MLflow tracking URI"),
        ({"mlflow": {"experiment": ""}}, "tracking.mlflow.experiment: must not be empty"),
        ({"mlflow": {"url": "http://x"}}, "tracking.mlflow.url: unknown key"),
        ({"wandb": {}}, "tracking.wandb: unknown key; allowed keys: mlflow"),
    ]:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            StudyConfig(name="s", tracking=bad)


def bad_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """``wattwise sweep`` of a one-trial study with ``flags``, refused: exit 2, one line, no
    study folder; returns the line."""
    from wattwise.experiment import runner

    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(out=tmp_path / "results"), encoding="utf-8")

    def trip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the bad input was not refused: training started")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "fit", trip)
        try:
            code = main(["sweep", str(study), *flags])
        except SystemExit as exit_:  # argparse refuses a bad flag this way
            code = exit_.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("wattwise: error: "), err
    assert not (tmp_path / "results").exists()
    return lines[0]


@pytest.mark.parametrize("uri", ["ftp://host/x", "", "mlruns"])
def test_a_bad_mlflow_uri_is_one_line_and_exit_2(tmp_path, capsys, uri):
    line = bad_sweep(tmp_path, capsys, "--mlflow", uri)
    assert "--mlflow" in line and "not an MLflow tracking URI" in line


def test_tracking_without_mlflow_installed_is_one_line_naming_the_extra(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)  # import mlflow fails
    line = bad_sweep(tmp_path, capsys, "--mlflow")
    assert "pip install 'wattwise[mlflow]'" in line
