"""Plan before spending: trial and training counts after reuse, teachers, estimates, and the
checks that refuse a study before any trial runs."""

from __future__ import annotations

import dataclasses

import pytest

from tests.analysis.analysis_fixtures import make_record, measurement
from wattwise.config import StudyConfig
from wattwise.errors import ConfigError
from wattwise.experiment.plan import plan_study
from wattwise.experiment.spec import expand_grid

PAPER = {
    "name": "paper",
    "datasets": ["cifar10", "fashion_mnist", "medmnist:pathmnist", "brain_tumor_mri"],
    "models": ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0"],
    "techniques": ["baseline", "prune:structured:0.5", "quantize:int8",
                   "prune:structured:0.5,quantize:int8", "autocast:bf16", "distill:resnet50"],
    "batch_sizes": [32, 64, 128], "learning_rates": [0.001, 0.01, 0.1], "epochs": [10, 20, 30],
    "seeds": [0, 1, 2], "gpu_memory_gib": [4, 8, 16, 32],
}  # fmt: skip


def test_the_papers_full_grid_counts_trials_trainings_and_teachers(tmp_path) -> None:
    plan = plan_study(StudyConfig(**PAPER, data_root=str(tmp_path)))
    assert plan.trials == 31_104 and plan.pending == 31_104
    # 5 techniques that train plainly share one training per (dataset, model, batch size, lr,
    # epochs, seed, cap): 4 x 4 x 27 x 3 x 4 = 5184; each of the 5184 distilled students trains
    assert plan.trainings == 5184 + 5184 == plan.pending_trainings
    assert len(plan.teachers) == 1296 and set(plan.teachers) == {"resnet50"}  # per point
    # no data here, and GPU caps on a CPU: refused before anything runs, one line
    assert sum("not found" in p or "expected" in p for p in plan.problems) == 4
    assert any(p.startswith("gpu_memory_gib [4, 8, 16, 32] caps GPU memory") for p in plan.problems)
    with pytest.raises(ConfigError) as refused:
        plan.check()
    assert "\n" not in str(refused.value) and "(and 4 more problem(s))" in str(refused.value)
    text = "\n".join(plan.lines())
    assert "trainings after reuse: 10368 for 31104 trial(s)" in text
    assert "distillation teachers to train: 1296 (resnet50)" in text


def tiny(**changes) -> StudyConfig:
    values = {"name": "tiny", "techniques": ["baseline", "quantize:int8"], "seeds": [0, 1],
              "epochs": [1], "batch_sizes": [64], "learning_rates": [0.05]}  # fmt: skip
    return StudyConfig(**{**values, **changes})


def test_the_embedded_study_is_ready_and_reuse_halves_its_trainings() -> None:
    plan = plan_study(tiny())
    assert (plan.trials, plan.trainings, plan.teachers, plan.problems) == (4, 2, (), ())
    plan.check()  # nothing to refuse
    assert plan.lines()[-1] == "ready to run"


def test_a_gpu_cap_on_a_cpu_is_refused_not_run_n_times(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plan = plan_study(tiny(gpu_memory_gib=[4, 8], train={"device": "cpu"}))
    (problem,) = plan.problems
    assert "the caps would run 2 identical trial(s) per point" in problem
    assert "remove gpu_memory_gib or run on a GPU" in problem


def test_missing_data_and_checkpoints_are_named(tmp_path) -> None:
    plan = plan_study(tiny(datasets=["fashion_mnist"], data_root=str(tmp_path),
                           techniques=[f"distill:{tmp_path / 'teacher.pt'}"]))  # fmt: skip
    assert any("Fashion-MNIST" in p and "not found" in p for p in plan.problems)
    assert f"checkpoint {tmp_path / 'teacher.pt'} does not exist" in plan.problems
    downloading = plan_study(tiny(datasets=["fashion_mnist"], data_root=str(tmp_path),
                                  download=True))  # fmt: skip
    assert downloading.problems == ()  # fetched by the trial itself


def test_the_estimate_comes_from_matching_finished_trials() -> None:
    config = tiny()
    specs = expand_grid(config)
    done = [
        dataclasses.replace(
            make_record(spec.trial_id, phases={"train": measurement("train", 100.0 * (i + 1))}),
            spec=spec.to_dict(), duration_s=60.0 * (i + 1),
        )
        for i, spec in enumerate(specs[:2])
    ]  # fmt: skip
    plan = plan_study(config, done)
    # the baselines of both seeds are done: the pending int8 trials reuse their trainings
    assert plan.pending == 2 and plan.pending_trainings == 0
    assert plan.estimate_duration_s == pytest.approx(2 * 90.0)  # the median of 60 s and 120 s
    assert plan.estimate_energy_j == pytest.approx(2 * 150.0)
    assert "median of matching finished trials" in plan.estimate_basis
    assert plan_study(config).estimate_duration_s is None
