"""GPU power limits as a study axis: a training setting, part of the trial's identity, held
for the whole trial (set and restored around it, through a FAKE NVML), recorded, and a
configuration axis of the analysis."""

from __future__ import annotations

from typing import Any

import pytest

from tests.energy.conftest import FakeNvml
from wattwise.analysis.metrics import summarize
from wattwise.config import StudyConfig
from wattwise.energy import power_limit
from wattwise.errors import ConfigError
from wattwise.experiment import runner as runner_module
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.runner import run_trial
from wattwise.experiment.spec import TrialSpec, expand_grid, training_key
from wattwise.train import TrainConfig


def study(**changes: Any) -> StudyConfig:
    values: dict[str, Any] = {
        "name": "limits",
        "width": 0.5,
        "batch_sizes": [64],
        "learning_rates": [0.05],
        "epochs": [1],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0.1, "inference_batch_size": 32},
    }
    return StudyConfig(**(values | changes))


def test_each_limit_is_its_own_trial_and_its_own_training():
    unlimited, low, high = expand_grid(study(gpu_power_limits_w=[None, 150, 250.5]))
    assert (unlimited.gpu_power_limit_w, low.gpu_power_limit_w) == (None, 150.0)
    assert high.train.gpu_power_limit_w == 250.5 and high.to_dict()["gpu_power_limit_w"] == 250.5
    assert len({unlimited.trial_id, low.trial_id, high.trial_id}) == 3
    keys = {training_key(s.to_dict()) for s in (unlimited, low, high)}
    assert len(keys) == 3  # energy and time differ per limit: no training is reused across them
    assert TrialSpec.from_dict(low.to_dict()) == low


def test_without_a_limit_the_identity_is_what_it_was():
    # Trials stored before the axis existed keep their ids (and their trained baselines).
    (spec,) = expand_grid(study())
    assert spec.gpu_power_limit_w is None
    assert "gpu_power_limit_w" not in spec.identity()
    assert "gpu_power_limit_w" not in training_key(spec.to_dict())
    assert spec.to_dict()["gpu_power_limit_w"] is None  # the flat spec names it still
    (limited,) = expand_grid(study(gpu_power_limits_w=200))  # one value: an axis of one
    assert limited.identity()["gpu_power_limit_w"] == 200.0


@pytest.mark.parametrize("value", [0, -5, "high", True, [100, 100]])
def test_bad_limits_are_refused_naming_the_axis(value):
    with pytest.raises(ConfigError, match=r"gpu_power_limits_w\[\d\]: (must|expected|dup)"):
        study(gpu_power_limits_w=value)


def test_the_limit_is_set_at_the_top_of_the_study_not_under_train():
    with pytest.raises(ConfigError, match="set 'gpu_power_limits_w' at the top level"):
        study(train={"gpu_power_limit_w": 200})
    with pytest.raises(ConfigError, match="gpu_power_limit_w"):
        TrainConfig(gpu_power_limit_w=0)


def test_a_limit_on_a_cpu_trial_fails_it_in_one_line():
    (spec,) = expand_grid(study(gpu_power_limits_w=[200], train={"device": "cpu"}))
    record = run_trial(spec)
    assert record.status == "failed"
    assert "a GPU power limit needs a GPU: this trial runs on cpu" in record.reason
    assert "train" not in record.phases  # refused before anything was spent


@pytest.fixture
def fake_gpu(monkeypatch):
    """The runner's power limits go to a fake NVML GPU, as if the trial ran on ``cuda:0``
    (it trains on the CPU)."""
    nvml = FakeNvml()
    gpu = nvml.add_gpu(name="NVIDIA H200")
    real = power_limit.gpu_power_limit

    def on_fake_gpu(limit_w, device):
        return real(limit_w, "cuda:0", nvml=nvml)

    monkeypatch.setattr(runner_module, "gpu_power_limit", on_fake_gpu)
    return gpu


def test_the_limit_holds_for_the_trial_and_is_recorded(fake_gpu, monkeypatch):
    seen: list[int] = []
    fit = runner_module.fit

    def fit_and_look(*args: Any, **kwargs: Any) -> Any:
        seen.append(fake_gpu.power_limit_mw)
        return fit(*args, **kwargs)

    monkeypatch.setattr(runner_module, "fit", fit_and_look)
    no_inference = {"inference_s": 0.0}  # the training is enough to see the limit held
    (spec,) = expand_grid(study(gpu_power_limits_w=[175], measurement=no_inference))
    record = run_trial(spec)
    assert record.status == "ok", record.reason
    assert seen == [175_000]  # trained under the limit
    assert fake_gpu.power_limit_mw == 300_000  # restored after the trial
    assert record.spec["gpu_power_limit_w"] == 175.0
    limit = record.details["power_limit"]
    assert (limit["limit_w"], limit["original_w"], limit["gpu"]) == (175.0, 300.0, "NVIDIA H200")
    assert record.phases["train"]["duration_s"] > 0  # energy and time measured per limit


def test_the_limit_is_restored_when_the_trial_fails(fake_gpu, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner_module, "fit", broken)
    (spec,) = expand_grid(study(gpu_power_limits_w=[175]))
    record = run_trial(spec)
    assert record.status == "failed" and record.reason == "RuntimeError: boom"
    assert fake_gpu.set_limit_calls == [175_000, 300_000]


def _record(spec: TrialSpec, energy_j: float) -> TrialRecord:
    return TrialRecord(
        trial_id=spec.trial_id,
        study=spec.study,
        spec=spec.to_dict(),
        status="ok",
        accuracy=0.9,
        train_energy_j=energy_j,
        duration_s=10.0,
    )


def test_the_analysis_compares_limits_as_configurations():
    specs = expand_grid(study(gpu_power_limits_w=[None, 150], seeds=[0, 1]))
    records = [_record(s, 100.0 if s.gpu_power_limit_w else 150.0) for s in specs]
    variants = summarize(records)
    assert [(v.gpu_power_limit_w, v.n) for v in variants] == [(None, 2), (150.0, 2)]
    assert [v.train_energy_j for v in variants] == [150.0, 100.0]
    assert "150 W limit" in variants[1].label and "W limit" not in variants[0].label


def test_a_trial_line_names_its_limit():
    from wattwise.experiment.summary import describe_trial

    unlimited, limited = expand_grid(study(gpu_power_limits_w=[None, 200]))
    assert describe_trial(limited).endswith(" limit200W")
    assert "limit" not in describe_trial(unlimited)


def test_the_optuna_search_tells_limits_apart():
    from wattwise.experiment.search import _point

    specs = expand_grid(
        study(gpu_power_limits_w=[None, 200], search={"kind": "optuna", "n_trials": 2})
    )
    # Optuna's points index the grid: two limits are two points, not one point twice
    assert len({_point(spec) for spec in specs}) == len(specs) == 2
