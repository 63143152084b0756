"""Operator profiles: any number of profiled windows in one process, and each operator's
estimated share of its window's energy."""

from __future__ import annotations

import json

import pytest

from wattwise.energy.base import ComponentEnergy, Measurement, PowerSample, Provenance
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.energy.profiler import (
    ESTIMATED,
    OperatorProfile,
    OpTotals,
    WindowProfiler,
    operator_profile,
    profile_batches,
    profile_training_steps,
)
from wattwise.errors import WattwiseError

torch = pytest.importorskip("torch")


@pytest.fixture
def monitor(meters):
    with EnergyMonitor(
        MonitorConfig(sample_hz=50), meters=[meters.Ramp(watts=20.0)], sync=None
    ) as m:
        yield m


def _mm(n: int) -> None:
    torch.mm(torch.ones(n, n), torch.ones(n, n))


def test_profiled_windows_one_after_another_each_see_their_own_work(monitor):
    flops = []
    for n in (4, 8, 16, 32):
        with monitor.window(f"mm{n}", profile=True) as w:
            _mm(n)
        flops.append(w.measurement.profile.flops)
    assert flops == [2 * n**3 for n in (4, 8, 16, 32)]


def test_nested_profiled_windows_share_the_one_kineto_session(monitor):
    with monitor.window("outer", profile=True) as outer:
        _mm(4)
        with monitor.window("inner", profile=True) as inner:
            _mm(8)
        _mm(16)
    assert inner.measurement.profile.flops == 2 * 8**3
    assert outer.measurement.profile.flops == 2 * (4**3 + 8**3 + 16**3)


def test_profiled_windows_of_two_monitors_overlap(meters):
    # torch.profiler is one session per process: a second session used to cancel the first,
    # which then reported no operators at all.
    config = MonitorConfig(sample_hz=50)
    with (
        EnergyMonitor(config, meters=[meters.Ramp()], sync=None) as a,
        EnergyMonitor(config, meters=[meters.Ramp()], sync=None) as b,
    ):
        a.begin_window("a", profile=True)
        _mm(4)
        b.begin_window("b", profile=True)
        _mm(8)
        first = a.end_window("a")
        _mm(16)
        second = b.end_window("b")
    assert first.profile.flops == 2 * (4**3 + 8**3)
    assert second.profile.flops == 2 * (8**3 + 16**3)


def test_a_torch_profiler_started_elsewhere_is_refused_not_cancelled(monitor):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as theirs:
        with pytest.raises(WattwiseError, match="already running"):
            monitor.begin_window("mine", profile=True)
        _mm(8)
    assert "mine" not in [m.name for m in monitor.history]
    assert sum(e.flops or 0 for e in theirs.key_averages()) == 2 * 8**3
    with monitor.window("after", profile=True) as w:  # nothing was left half-open
        _mm(4)
    assert w.measurement.profile.flops == 2 * 4**3


def _measurement(duration_s: float, energy_j: float, timeline=None) -> Measurement:
    comp = ComponentEnergy("cpu", energy_j, Provenance.measured("fake", "test"))
    return Measurement("w", 1000.0, duration_s, (comp,), timeline=timeline)


def test_shares_follow_the_power_timeline_and_are_labelled_estimated():
    # 1 s window: 10 W in the first half, 30 W in the second (20 J). "a" runs 0.2 s in the
    # first half (2 J), "b" 0.2 s in the second (6 J): 10 % and 30 % of the window's energy.
    timeline = (PowerSample(0.5, {"cpu": 10.0}), PowerSample(1.0, {"cpu": 30.0}))
    ops = {
        "a": OpTotals(calls=1, self_cpu_s=0.2, cpu_total_s=0.2, spans=[(0.25, 0.2)]),
        "b": OpTotals(calls=2, self_cpu_s=0.2, cpu_total_s=0.3, spans=[(0.7, 0.1), (0.8, 0.1)]),
    }
    profile = operator_profile(ops, _measurement(1.0, 20.0, timeline), phase="train", steps=3)
    assert [op.name for op in profile.operators] == ["b", "a"]
    b, a = profile.operators
    assert b.energy_share == pytest.approx(0.3)
    assert a.energy_share == pytest.approx(0.1)
    assert b.energy_j == pytest.approx(6.0)
    assert profile.energy_label == ESTIMATED == "estimated"
    assert "timeline" in profile.method
    assert profile.unattributed_share == pytest.approx(0.6)
    assert json.loads(json.dumps(profile.to_dict()))["operators"][0]["energy_share"] == 0.3
    assert OperatorProfile.from_dict(profile.to_dict()) == profile


def test_without_a_timeline_shares_are_time_shares_of_the_average_power():
    ops = {"a": OpTotals(calls=1, self_cpu_s=0.5, cpu_total_s=0.5, spans=[(0.3, 0.5)])}
    profile = operator_profile(ops, _measurement(2.0, 8.0), phase="inference", variant="baseline")
    assert profile.operators[0].energy_share == pytest.approx(0.25)
    assert "average host power" in profile.method


def test_overlapping_threads_never_claim_more_than_the_window():
    ops = {
        name: OpTotals(calls=1, self_cpu_s=0.8, cpu_total_s=0.8, spans=[(0.5, 0.8)])
        for name in ("x", "y")
    }
    profile = operator_profile(ops, _measurement(1.0, 10.0), phase="train")
    shares = [op.energy_share for op in profile.operators]
    assert sum(shares) == pytest.approx(1.0)
    assert profile.unattributed_share == pytest.approx(0.0)
    assert "scaled" in profile.method


def test_no_energy_means_no_shares():
    ops = {"a": OpTotals(calls=1, self_cpu_s=0.1, cpu_total_s=0.1, spans=[(0.1, 0.1)])}
    profile = operator_profile(ops, _measurement(1.0, 0.0), phase="train")
    assert profile.operators[0].energy_share is None
    assert profile.operators[0].self_cpu_time_s == pytest.approx(0.1)


def test_a_real_window_keeps_the_top_operators_with_shares_at_most_one(monitor):
    profiler = WindowProfiler(top_k=3)
    with monitor.window("conv", profile=profiler) as w:
        for _ in range(20):
            torch.nn.functional.conv2d(torch.ones(8, 3, 32, 32), torch.ones(8, 3, 3, 3))
    profile = profiler.operators(w.measurement, phase="inference", steps=20)
    assert len(profile.operators) == 3
    assert profile.flops == w.measurement.profile.flops > 0
    shares = [op.energy_share for op in profile.operators]
    assert all(s is not None and 0 <= s <= 1 for s in shares)
    assert sum(shares) + profile.other_share + profile.unattributed_share == pytest.approx(1.0)
    assert "conv" in profile.operators[0].name  # the convolution took the time
    assert profile.operators[0].calls == 20


def _tiny_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))


def test_training_steps_profile_a_bounded_number_of_steps(monitor):
    model = _tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.ones(8, 1, 4, 4), torch.zeros(8, dtype=torch.long)
    with profile_training_steps(model, monitor, steps=3, warmup=1) as handle:
        for _ in range(10):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    profile = handle.profile
    assert profile is not None and profile.steps == 3 and profile.phase == "train"
    addmm = next(op for op in profile.operators if op.name == "aten::addmm")
    assert addmm.calls == 3  # forward of steps 2-4 only (the backward uses aten::mm)
    assert not model._forward_pre_hooks  # the hook is gone once the steps are profiled


def test_training_profile_ends_at_the_first_evaluation(monitor):
    model = _tiny_model()
    x = torch.ones(8, 1, 4, 4)
    with profile_training_steps(model, monitor, steps=50, warmup=0) as handle:
        model(x).sum().backward()
        model(x).sum().backward()
        model.eval()
        with torch.no_grad():
            model(x)
            model(x)
    assert handle.profile is not None and handle.profile.steps == 2
    addmm = next(op for op in handle.profile.operators if op.name == "aten::addmm")
    assert addmm.calls == 2


def test_inference_batches_profile_in_their_own_window(monitor):
    model = _tiny_model().eval()
    profile = profile_batches(
        model, torch.ones(4, 1, 4, 4), monitor, variant="baseline", min_batches=4, min_s=0.0
    )
    assert profile.window == "profile/baseline"
    assert profile.variant == "baseline" and profile.phase == "inference"
    assert profile.steps >= 4
    assert profile.measurement is not None and profile.measurement.name == "profile/baseline"
    assert "measurement" not in profile.to_dict()
