"""The bundled demo study: what it contains, what it leaves behind, the report hook."""

from __future__ import annotations

import csv
import importlib.resources
import time
from typing import Any

import pytest
import torch

from wattwise.config import expand_grid, load_study_config, parse_recipe
from wattwise.experiment import ResultsStore
from wattwise.experiment.demo import DEMO_STUDY, demo_config, find_report, run_demo


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
    return demo_config().model_copy(
        update={
            "techniques": ("baseline", "distill:small_cnn"),
            "learning_rates": (0.1,),
            "seeds": (0,),
            "epochs": (1,),
            "measurement": demo_config().measurement.model_copy(update={"inference_s": 0.05}),
        }
    )


def test_demo_leaves_store_config_csv_and_calls_the_report(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "fake_report_pkg").mkdir(parents=True)
    (package / "fake_report_pkg" / "__init__.py").write_text("")
    (package / "fake_report_pkg" / "report.py").write_text(
        "calls = []\n"
        "def build_report(store_path, out_dir):\n"
        "    calls.append((store_path, out_dir))\n"
        "    return out_dir / 'report.html'\n"
    )
    monkeypatch.syspath_prepend(str(package))
    out = tmp_path / "demo"
    result = run_demo(
        out, progress=False, config=small_demo(), report_module="fake_report_pkg.report"
    )
    assert (result.summary.ok, result.summary.failed) == (2, 0)
    assert (out / "results.sqlite").is_file() and (out / "study.yaml").is_file()
    with open(result.csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["technique"] for r in rows] == ["baseline", "distill:small_cnn"]
    assert all(r["status"] == "ok" and float(r["train_energy_j"]) > 0 for r in rows)
    import fake_report_pkg.report as report

    assert report.calls == [(result.summary.store_path, out / "report")]
    assert result.report == out / "report" / "report.html"
    assert any("wattwise results" in line for line in result.where())
    # a second run resumes: nothing is trained again
    assert run_demo(out, progress=False, config=small_demo(), report_module="x.y").summary.ran == 0


def test_a_missing_report_module_is_skipped_silently():
    assert find_report("no_such_package_for_wattwise.report") is None
    assert find_report("wattwise.no_such_module") is None


@pytest.mark.slow
def test_the_whole_demo_runs_in_ten_minutes(tmp_path):
    started = time.perf_counter()
    result = run_demo(tmp_path / "demo", progress=False)
    elapsed = time.perf_counter() - started
    with ResultsStore(result.summary.store_path) as store:
        failed = [(r.spec["technique"], r.reason) for r in store.records("failed")]
    assert result.summary.ok == 20, failed
    assert elapsed < 600, f"the demo took {elapsed:.0f} s"
    assert load_study_config(tmp_path / "demo" / "study.yaml") == demo_config()
