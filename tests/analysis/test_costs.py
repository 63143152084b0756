"""Full costs: every joule in one category, a shared teacher charged 1/k to each of its k trials
and once to the study, CO2e per category with measurement never in it."""

from __future__ import annotations

import pytest

from tests.analysis.analysis_fixtures import make_record, measurement
from wattwise.analysis.costs import baseline_shares, study_costs, teacher_shares, trial_costs
from wattwise.analysis.metrics import analyze
from wattwise.energy.carbon import CarbonConfig

CARBON = CarbonConfig(intensity_g_per_kwh=360.0)  # 1 kJ -> 0.1 g


def distilled(trial_id: str, *, trains_teacher: bool, key: str = "t-key", seed: int = 0):
    """A distillation trial: 1000 J training, 50 J teacher logits, 40 J recipe, 10 J inference;
    the teacher (3000 J) was trained by the trial with ``trains_teacher``."""
    phases = {
        "train": measurement("train", 1000.0),
        "teacher_logits": measurement("teacher_logits", 50.0),
        "recipe/quantize:int8": measurement("recipe/quantize:int8", 40.0),
        "inference": measurement("inference", 10.0),
    }
    if trains_teacher:
        phases["teacher"] = measurement("teacher", 3000.0)
    teacher = {"key": key, "train_energy_j": 3000.0, "trained_here": trains_teacher}
    return make_record(trial_id, technique="distill:resnet18+quantize:int8", seed=seed,
                       phases=phases, details={"teacher": teacher})  # fmt: skip


def test_a_shared_teacher_is_charged_one_kth_to_each_trial() -> None:
    records = [distilled(f"d{i}", trains_teacher=i == 0, seed=i) for i in range(3)]
    shares = teacher_shares(records)
    assert [s.energy_j for s in shares.values()] == pytest.approx([1000.0] * 3)  # 3000 J / 3
    for rec in records:
        costs = trial_costs(rec, CARBON, shares[rec.trial_id])
        assert costs.teacher_share_j == pytest.approx(1000.0) and costs.teacher_trials == 3
        assert costs.training_energy_j == 1000.0
        assert costs.technique_energy_j == pytest.approx(50 + 40 + 1000)  # logits + recipe + 1/3
        assert costs.cost_energy_j == pytest.approx(2090.0)
        assert costs.measurement_energy_j == 10.0 and costs.total_energy_j == pytest.approx(2100)
        assert costs.co2e_g == pytest.approx(2090.0 / 3.6e6 * 360)  # measurement not counted
        assert costs.co2e_training_g + costs.co2e_technique_g == pytest.approx(costs.co2e_g)
    # alone (no study to share with), a trial carries its whole teacher
    assert trial_costs(records[1], CARBON).teacher_share_j == 3000.0


def test_the_study_counts_each_teacher_once() -> None:
    records = [distilled(f"d{i}", trains_teacher=i == 0, seed=i) for i in range(3)]
    records.append(distilled("other", trains_teacher=True, key="other-key"))
    records.append(make_record("failed", status="failed", reason="boom"))
    totals = study_costs(records, CARBON)
    assert totals.trials == 4 and totals.teachers == 2
    assert totals.teacher_energy_j == 6000.0  # two teachers, once each
    assert totals.teacher_training_avoided_j == 2 * 3000.0  # 3 trials shared one teacher
    assert totals.training_energy_j == 4000.0
    assert totals.technique_energy_j == pytest.approx(4 * 90 + 6000)
    assert totals.measurement_energy_j == 40.0
    assert totals.total_energy_j == pytest.approx(4000 + 4 * 90 + 6000 + 40)
    assert totals.co2e_g == pytest.approx((4000 + 4 * 90 + 6000) / 3.6e6 * 360)
    # the trials' charged costs add up to the study's cost
    analysis = analyze(records, CARBON)
    charged = sum(t.cost_energy_j for t in analysis.trials)  # type: ignore[misc]
    assert charged == pytest.approx(totals.cost_energy_j)
    assert analysis.costs == totals


def test_measurement_is_shown_apart_and_never_in_co2e() -> None:
    phases = {"train": measurement("train", 1000.0), "inference": measurement("inference", 500.0),
              "inference/baseline": measurement("inference/baseline", 300.0),
              "compare/baseline/round0": measurement("compare/baseline/round0", 200.0)}  # fmt: skip
    costs = trial_costs(make_record("m", phases=phases), CARBON)
    assert costs.measurement_energy_j == 1000.0 and costs.cost_energy_j == 1000.0
    assert costs.co2e_g == pytest.approx(0.1) and costs.co2e_technique_g is None


def compressed(trial_id: str, technique: str, *, trains: bool, key: str = "b-key"):
    """A trial of a shared training (train once, compress many): 1200 J of training + test in
    the trial that trained, none in the others; 30 J of technique and 10 J of inference each."""
    phases = {
        "recipe/x": measurement("recipe/x", 30.0),
        "inference": measurement("inference", 10.0),
    }
    if trains:
        phases["train"] = measurement("train", 1000.0)
        phases["test"] = measurement("test", 200.0)
    baseline = {"key": key, "trained_here": trains, "training_energy_j": 1200.0}
    return make_record(trial_id, technique=technique, phases=phases,
                       details={"baseline": baseline})  # fmt: skip


def test_a_shared_training_is_charged_one_kth_and_counted_once() -> None:
    records = [
        compressed("base", "baseline", trains=True),
        compressed("int8", "quantize:int8", trains=False),
        compressed("prune", "prune:structured:0.5", trains=False),
        compressed("alone", "baseline", trains=True, key="other"),
    ]
    shares = baseline_shares(records)
    assert shares["int8"].energy_j == pytest.approx(400.0) and shares["int8"].trials == 3
    for trial_id in ("base", "int8", "prune"):  # 1200 J / 3, whichever trial trained
        costs = trial_costs(next(r for r in records if r.trial_id == trial_id), CARBON,
                            baseline=shares[trial_id])  # fmt: skip
        assert costs.training_energy_j == pytest.approx(400.0)
        assert costs.cost_energy_j == pytest.approx(430.0)
        assert costs.co2e_training_g == pytest.approx(400.0 / 3.6e6 * 360)
    totals = study_costs(records, CARBON)
    assert totals.trainings == 2 and totals.training_avoided_j == pytest.approx(2 * 1200.0)
    assert totals.training_energy_j == pytest.approx(2400.0)  # each training once
    analysis = analyze(records, CARBON)
    charged = sum(t.cost_energy_j for t in analysis.trials)  # type: ignore[misc]
    assert charged == pytest.approx(totals.cost_energy_j) == pytest.approx(2400.0 + 4 * 30)
    # alone, a reusing trial is charged the whole training it compressed
    assert trial_costs(records[1], CARBON).training_energy_j == 1200.0
