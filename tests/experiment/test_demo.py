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
from wattwise.experiment.plan import plan_study
from wattwise.experiment.spec import expand_grid
from wattwise.optimize import parse_recipe


def test_bundled_study_is_packaged_and_covers_every_technique():
    resource = importlib.resources.files("wattwise.experiment").joinpath(DEMO_STUDY)
    assert resource.is_file()
    config = demo_config()
    assert config.name == "demo" and config.datasets == ("digits",)
    assert config.models == ("resnet18",) and config.image_size == 32 and config.width < 1
    kinds = [tuple(s.kind for s in parse_recipe(t)) for t in config.techniques]
    assert ("baseline",) in kinds and ("quantize",) in kinds
    # distillation into a smaller student: the pruned network learns from the trained baseline
    assert any(getattr(s, "finetune_by", None) == "distill"
               for t in config.techniques for s in parse_recipe(t))  # fmt: skip
    assert ("prune",) in kinds and ("prune", "quantize") in kinds and ("compile",) in kinds
    assert len(config.seeds) == 2 and len(config.learning_rates) == 1
    assert len(expand_grid(config)) == 12
    plan = plan_study(config)  # each seed's baseline is trained once for its 6 techniques
    assert plan.trainings == 2 and len(plan.teachers) == 0 and plan.problems == ()


def small_demo() -> Any:
    """The demo with two techniques, one seed and one epoch at 16 px, and a recipe search
    without int8 (its compiles take a minute: the whole demo, a slow test, searches int8):
    the same machinery."""
    config = demo_config()
    search = config.recipe_search
    assert search is not None
    space = replace(search.space, int8=("none",), channels_last=False)
    return replace(
        config,
        techniques=("baseline", "prune:structured:0.5"),
        image_size=16,
        width=0.125,
        seeds=(0,),
        epochs=(1,),
        measurement=replace(config.measurement, inference_s=0.05),
        recipe_search=replace(search, space=space),
    )


def test_demo_leaves_store_config_csv_and_calls_the_report(tmp_path, monkeypatch):
    calls = []

    def build_report(store_path, out_dir):
        calls.append((store_path, out_dir))
        return out_dir / "report.html"

    monkeypatch.setattr(demo_module, "build_report", build_report)
    out = tmp_path / "demo"
    result = run_demo(out, config=small_demo(), search_budget=1)
    assert (result.summary.ok, result.summary.failed) == (2, 0)
    assert (out / "results.sqlite").is_file() and (out / "study.yaml").is_file()
    with open(result.csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["technique"] for r in rows] == ["baseline", "prune:structured:0.5"]
    assert all(r["status"] == "ok" and float(r["train_energy_j"]) > 0 for r in rows)
    assert result.summary.trainings == 1  # the pruning trial reused the baseline's training
    # the short search ran on the trained baseline: one candidate, pruning (0.6: the middle of
    # its range)
    (candidate,) = result.search.candidates
    assert candidate.recipe.startswith("prune:structured:0.6")
    [search] = result.summary.searches
    assert search.path.is_file() and search.path.parent == out / "search"
    assert any("recipe search" in x for x in result.where())
    assert calls == [(result.summary.store_path, out / "report")]
    assert result.report == out / "report" / "report.html"
    assert any("wattwise results" in line for line in result.where())
    # a second run resumes: nothing is trained again
    again = run_demo(out, config=small_demo(), search_budget=1)
    assert again.summary.ran == 0 and again.search.candidates == result.search.candidates


@pytest.mark.slow
def test_the_whole_demo_runs_in_ten_minutes(tmp_path):
    started = time.perf_counter()
    result = run_demo(tmp_path / "demo")
    elapsed = time.perf_counter() - started
    with ResultsStore(result.summary.store_path) as store:
        failed = [(r.spec["technique"], r.reason) for r in store.records("failed")]
    assert result.summary.ok == 12, failed
    assert elapsed < 600, f"the demo took {elapsed:.0f} s"
    assert result.summary.trainings == 2 and len(result.search.candidates) == 2
    assert any("quantize:int8" in c.recipe for c in result.search.candidates)  # its int8 space
    assert load_study_config(tmp_path / "demo" / "study.yaml") == demo_config()
