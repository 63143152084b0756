"""The bundled demo study: what it contains, what it leaves behind, the report hook."""

from __future__ import annotations

import csv
import importlib.resources
import time
from dataclasses import replace
from typing import Any

import pytest

import wattwise.experiment.demo as demo_module
from wattwise.config import load_study_config
from wattwise.experiment import ResultsStore
from wattwise.experiment.demo import DEMO_STUDY, demo_config, run_demo
from wattwise.experiment.spec import expand_grid
from wattwise.optimize import parse_recipe


def test_bundled_study_is_packaged_and_covers_every_technique():
    resource = importlib.resources.files("wattwise.experiment").joinpath(DEMO_STUDY)
    assert resource.is_file()
    config = demo_config()
    assert config.name == "demo" and config.datasets == ("digits",)
    assert config.models == ("small_cnn",)
    kinds = [tuple(s.kind for s in parse_recipe(t)) for t in config.techniques]
    assert ("baseline",) in kinds and ("quantize",) in kinds and ("distill",) in kinds
    assert ("prune",) in kinds and any(len(k) > 1 for k in kinds)  # one combined recipe
    assert "prune:structured:0.5" in config.techniques
    assert len(config.seeds) == 2
    assert len(config.learning_rates) * len(config.batch_sizes) == 2  # a small grid
    assert config.train["num_threads"] == 1 and config.measurement.inference_s <= 1.0
    assert len(expand_grid(config)) == 20


def small_demo() -> Any:
    """The demo with two techniques, one seed and one epoch: the same machinery, seconds."""
    config = demo_config()
    return replace(
        config,
        techniques=("baseline", "distill:small_cnn"),
        learning_rates=(0.1,),
        seeds=(0,),
        epochs=(1,),
        measurement=replace(config.measurement, inference_s=0.05),
    )


def test_demo_leaves_store_config_csv_and_calls_the_report(tmp_path, monkeypatch):
    calls = []

    def build_report(store_path, out_dir):
        calls.append((store_path, out_dir))
        return out_dir / "report.html"

    monkeypatch.setattr(demo_module, "build_report", build_report)
    out = tmp_path / "demo"
    result = run_demo(out, config=small_demo())
    assert (result.summary.ok, result.summary.failed) == (2, 0)
    assert (out / "results.sqlite").is_file() and (out / "study.yaml").is_file()
    with open(result.csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["technique"] for r in rows] == ["baseline", "distill:small_cnn"]
    assert all(r["status"] == "ok" and float(r["train_energy_j"]) > 0 for r in rows)
    assert calls == [(result.summary.store_path, out / "report")]
    assert result.report == out / "report" / "report.html"
    assert any("wattwise results" in line for line in result.where())
    # a second run resumes: nothing is trained again
    assert run_demo(out, config=small_demo()).summary.ran == 0


@pytest.mark.slow
def test_the_whole_demo_runs_in_ten_minutes(tmp_path):
    started = time.perf_counter()
    result = run_demo(tmp_path / "demo")
    elapsed = time.perf_counter() - started
    with ResultsStore(result.summary.store_path) as store:
        failed = [(r.spec["technique"], r.reason) for r in store.records("failed")]
    assert result.summary.ok == 20, failed
    assert elapsed < 600, f"the demo took {elapsed:.0f} s"
    assert load_study_config(tmp_path / "demo" / "study.yaml") == demo_config()
