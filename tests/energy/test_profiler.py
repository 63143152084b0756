"""Profiled windows: FLOPs as torch.profiler counts them (2 per MAC) and the top operators."""

from __future__ import annotations

import json

import pytest

from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig

torch = pytest.importorskip("torch")


@pytest.fixture
def monitor(meters):
    with EnergyMonitor(MonitorConfig(sample_hz=0.1), meters=[meters.Counter()], sync=None) as mon:
        yield mon


def test_matmul_flops_are_2mnk(monitor):
    m, k, n = 64, 32, 16
    a, b = torch.randn(m, k), torch.randn(k, n)
    with monitor.window("mm", profile=True) as w:
        torch.mm(a, b)
    profile = w.measurement.profile
    assert profile is not None
    assert profile.flops == 2 * m * n * k
    assert profile.macs == m * n * k
    assert profile.top_ops
    assert "aten::mm" in [op.name for op in profile.top_ops]
    mm = next(op for op in profile.top_ops if op.name == "aten::mm")
    assert mm.calls == 1
    assert mm.flops == 2 * m * n * k
    assert mm.self_cpu_time_s >= 0


def test_conv_flops(monitor):
    x = torch.randn(2, 3, 8, 8)
    weight = torch.randn(4, 3, 3, 3)
    with monitor.window("conv", profile=True) as w:
        out = torch.nn.functional.conv2d(x, weight)
    batch, c_out, h, w_out = out.shape
    expected = 2 * batch * c_out * h * w_out * 3 * 3 * 3
    assert w.measurement.profile is not None
    assert w.measurement.profile.flops == expected


def test_unprofiled_window_has_no_profile(monitor):
    with monitor.window("plain") as w:
        torch.mm(torch.randn(4, 4), torch.randn(4, 4))
    assert w.measurement.profile is None


def test_profile_survives_serialization(monitor):
    with monitor.window("mm", profile=True) as w:
        torch.mm(torch.randn(8, 8), torch.randn(8, 8))
    data = json.loads(json.dumps(w.measurement.to_dict()))
    assert data["profile"]["flops"] == 2 * 8 * 8 * 8
    assert data["profile"]["macs_from_flops"] == 8 * 8 * 8
    assert Measurement.from_dict(data) == w.measurement


def test_a_profiled_window_may_hold_profiled_and_plain_windows(monitor):
    with monitor.window("outer", profile=True) as outer:
        with monitor.window("inner", profile=True) as inner:
            torch.mm(torch.randn(4, 4), torch.randn(4, 4))
        with monitor.window("plain-inner") as plain:  # an unprofiled nested window is fine
            torch.mm(torch.randn(4, 4), torch.randn(4, 4))
    assert outer.measurement.profile is not None
    assert outer.measurement.profile.flops == 2 * 2 * 4 * 4 * 4
    assert inner.measurement.profile.flops == 2 * 4 * 4 * 4
    assert plain.measurement.profile is None
    assert [m.name for m in monitor.history] == ["inner", "plain-inner", "outer"]
