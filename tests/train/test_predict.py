"""The prediction of a run's total energy and time from its first epochs (no training here)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from wattwise.train.predict import (
    PREDICT_EPOCHS,
    Prediction,
    RunPredictor,
    predict,
    predictions,
    project,
)

T_975_DOF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def epoch(duration_s: float, energy_j: float | None = None, provenance: str = "estimated"):
    """An epoch's record as the history holds it (a dict), energy 10 x its duration by default."""
    energy = 10 * duration_s if energy_j is None else energy_j
    return {"duration_s": duration_s, "energy_j": energy, "energy_provenance": provenance}


def test_after_epoch_1_the_rest_is_epoch_1_times_the_epochs_to_go_with_the_stated_band():
    p = predict([epoch(2.0, 100.0)], 5)
    assert p is not None and p.method == "first_epoch_band"
    assert (p.after_epoch, p.epochs) == (1, 5)
    # 2 s spent + 4 epochs x 2 s; the band: 40 % below, 30 % above on the 8 s to go
    assert p.predicted_duration_s == pytest.approx(10.0)
    assert (p.duration_low_s, p.duration_high_s) == (pytest.approx(6.8), pytest.approx(12.4))
    assert p.predicted_energy_j == pytest.approx(500.0)
    assert (p.energy_low_j, p.energy_high_j) == (pytest.approx(340.0), pytest.approx(620.0))


def test_after_epoch_2_the_warm_up_epoch_is_left_out_of_the_per_epoch_estimate():
    p = predict([epoch(2.0), epoch(1.0)], 5)
    assert p is not None and p.method == "steady_band"
    # 3 s spent + 3 epochs x epoch 2's 1 s (not the mean 1.5 s), ± 35 % of the 3 s to go
    assert p.predicted_duration_s == pytest.approx(6.0)
    assert (p.duration_low_s, p.duration_high_s) == (pytest.approx(4.95), pytest.approx(7.05))
    assert p.predicted_energy_j == pytest.approx(60.0)


def test_from_epoch_3_on_a_t_interval_from_the_steady_epochs_spread():
    history = [epoch(2.0), epoch(1.0), epoch(1.2), epoch(0.8)]  # steady: mean 1.0, sd 0.2
    p = predict(history, 8)
    assert p is not None and p.method == "steady_t"
    half = T_975_DOF2 * 0.2 * math.sqrt(4 + 4**2 / 3)  # 4 epochs to go, n = 3: 2.63 s > 35 %
    assert p.predicted_duration_s == pytest.approx(5.0 + 4.0)
    assert p.duration_low_s == pytest.approx(9.0 - half)
    assert p.duration_high_s == pytest.approx(9.0 + half)
    assert p.energy is not None and p.energy.value == pytest.approx(90.0)
    wide = predict([epoch(2.0), epoch(1.0), epoch(1.4), epoch(0.6)], 8)  # sd 0.4: 5.26 s > 4 s
    assert wide is not None and wide.duration_low_s == pytest.approx(5.0)  # what is spent


def test_a_t_interval_is_never_narrower_than_the_steady_band():
    interval, method = project([3.0, 1.0, 1.02, 0.98], 10)  # sd 0.02: t half-width 0.5 s
    assert method == "steady_t"
    assert interval.value == pytest.approx(12.0)  # 6 spent + 6 x 1
    assert interval.high - interval.value == pytest.approx(0.35 * 6)
    assert interval.value - interval.low == pytest.approx(0.35 * 6)


@pytest.mark.parametrize("epochs", [2, 3, 5, 10])
def test_the_interval_contains_the_truth_for_constant_epochs(epochs: int):
    truth = epochs * 1.5
    history = [epoch(1.5, 7.0) for _ in range(epochs)]
    for k in range(1, epochs):
        p = predict(history[:k], epochs)
        assert p is not None and p.energy is not None
        assert p.predicted_duration_s == pytest.approx(truth)
        assert truth in p.duration and epochs * 7.0 in p.energy
        assert p.duration_low_s <= p.predicted_duration_s <= p.duration_high_s


def test_nothing_is_predicted_before_the_first_or_after_the_last_epoch():
    assert predict([], 5) is None
    assert predict([epoch(1.0)] * 5, 5) is None
    assert predict([epoch(1.0)], 1) is None
    assert predict([{"duration_s": float("nan"), "energy_j": 1.0}], 3) is None
    with pytest.raises(ValueError, match="need 1 to 2 epochs of 3"):
        project([1.0, 1.0, 1.0], 3)


def test_energy_is_not_predicted_when_an_epoch_has_none():
    unavailable = predict([epoch(1.0, 0.0, "unavailable")], 4)
    assert unavailable is not None and unavailable.predicted_energy_j is None
    assert unavailable.energy is None and unavailable.predicted_duration_s == pytest.approx(4.0)
    nan = predict([epoch(1.0), epoch(1.0, float("nan"))], 4)
    assert nan is not None and nan.energy_low_j is None and nan.duration_high_s > 4.0


def test_records_with_attributes_are_read_like_dicts():
    record = SimpleNamespace(duration_s=2.0, energy_j=20.0, energy_provenance="measured")
    assert predict([record], 3) == predict([epoch(2.0)], 3)


def test_the_live_predictor_makes_the_same_predictions_as_the_history_afterwards():
    history = [epoch(d) for d in (1.3, 1.0, 1.1, 0.9, 1.0, 1.2)]
    live = RunPredictor(6)
    made = [live.add(r) for r in history]
    assert made[PREDICT_EPOCHS:] == [None] * (6 - PREDICT_EPOCHS)  # only the first epochs
    assert live.made == [p for p in made if p is not None] == predictions(history, 6)
    assert [p.after_epoch for p in live.made] == [1, 2, 3]
    assert predictions(history[:2], 2) == [predict(history[:1], 2)]  # none after the last


def test_a_prediction_is_json_safe_and_reads_back():
    p = predict([epoch(2.0), epoch(1.0)], 5)
    assert p is not None
    data = json.loads(json.dumps(p.to_dict()))
    assert set(data) == {
        "after_epoch", "epochs", "predicted_energy_j", "energy_low_j", "energy_high_j",
        "predicted_duration_s", "duration_low_s", "duration_high_s", "method",
    }  # fmt: skip
    assert Prediction.from_dict(data) == p
    with pytest.raises(ValueError, match="not a prediction"):
        Prediction.from_dict({"after_epoch": 1})
