"""The comparison protocol: interleaving, paired-ratio intervals, noise flags, threads, JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics
from collections.abc import Callable

import pytest
import torch
from torch import nn

from wattwise.energy.base import ComponentEnergy, Measurement, Provenance
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.process import CpuSnapshot, ExternalCpu, ProcessTree
from wattwise.errors import ConfigError
from wattwise.optimize.base import PreparedModel
from wattwise.optimize.compare import (
    CompareSettings,
    Comparison,
    compare_variants,
    half_width,
    log_ratio_interval,
)

BATCH = 4
#: Exactly ``min_batches`` batches per round (``round_s`` is always reached): images are fixed,
#: so a scripted window energy gives an exact J/image.
FIXED = CompareSettings(rounds=5, round_s=1e-9, min_batches=2, warmup_s=0.0, target_half_width=None)
IMAGES = FIXED.min_batches * BATCH

Script = Callable[[str, int], float]


class ScriptedMonitor(EnergyMonitor):
    """An EnergyMonitor whose windows report scripted energies: ``script(variant, round)``."""

    def __init__(self, script: Script):
        super().__init__(meters=[])
        self.script = script

    def end_window(self, name: str) -> Measurement:
        m = super().end_window(name)
        _, variant, round_name = name.split("/")
        energy = self.script(variant, int(round_name.removeprefix("round")))
        comp = ComponentEnergy("cpu", energy, Provenance.measured("fake"))
        return dataclasses.replace(m, components=(comp,))


class IdleTree(ProcessTree):
    """A measured tree that uses no CPU (the fake machine's counters are the only ones)."""

    def __init__(self) -> None:
        pass

    def cpu_seconds(self) -> float:
        return 0.0


def loaded(cores: float) -> ExternalCpu:
    """A fake machine on which other processes use ``cores`` cores all the time: each snapshot
    advances its clock by 1 s and its busy CPU time by ``cores`` s."""
    now = [0.0]

    def system_cpu_s() -> float:
        now[0] += 1.0
        return cores * now[0]

    return ExternalCpu(IdleTree(), system_cpu_s=system_cpu_s, clock=lambda: now[0])


def quiet() -> ExternalCpu:
    """No other process runs."""
    return loaded(0.0)


def noop(x: torch.Tensor) -> torch.Tensor:
    return x


def run(
    script: Script, names: tuple[str, ...] = ("baseline", "fast"), **kwargs
) -> tuple[Comparison, ScriptedMonitor]:
    monitor = ScriptedMonitor(script)
    kwargs.setdefault("settings", FIXED)
    kwargs.setdefault("external", quiet())
    try:
        result = compare_variants(
            dict.fromkeys(names, noop), torch.zeros(BATCH, 3), monitor=monitor, **kwargs
        )
    finally:
        monitor.close()
    return result, monitor


def per_round(values: dict[str, list[float]]) -> Script:
    """Window energy such that J/image of ``variant`` in round ``r`` is ``values[variant][r]``."""
    return lambda variant, r: values[variant][r] * IMAGES


def test_rounds_run_interleaved_in_rotating_order() -> None:
    result, monitor = run(lambda v, r: 1.0, names=("a", "b", "c"))
    expected = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"], ["b", "c", "a"]]
    windows = [m.name for m in monitor.history]
    assert windows == [f"compare/{n}/round{r}" for r, order in enumerate(expected) for n in order]
    for name, stats in result.variants.items():
        assert [s.order for s in stats.rounds] == [row.index(name) for row in expected]
        assert [s.round for s in stats.rounds] == list(range(5))
        assert all(s.batches == 2 and s.images == IMAGES for s in stats.rounds)


def test_saving_interval_matches_a_textbook_t_interval() -> None:
    ratios = [2.0, 2.2, 1.9, 2.1, 2.05]
    base = [0.010, 0.012, 0.011, 0.009, 0.010]
    fast = [b / q for b, q in zip(base, ratios, strict=True)]
    result, _ = run(per_round({"baseline": base, "fast": fast}))
    r = result.ratio("fast", "baseline")
    logs = [math.log(q) for q in ratios]
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = 2.776445105 * sd / math.sqrt(5)  # t_{0.975, 4} from the tables
    assert r.saving == pytest.approx(math.exp(mean), rel=1e-9)
    assert r.saving == pytest.approx(statistics.geometric_mean(ratios), rel=1e-9)
    assert r.low == pytest.approx(math.exp(mean - half), rel=1e-7)
    assert r.high == pytest.approx(math.exp(mean + half), rel=1e-7)
    assert r.significant
    assert r.verdict == f"{r.saving:.2f}x less J/image ({r.low:.2f} to {r.high:.2f}, 95 %)"
    assert (
        r.method == "t interval on the log of the 5 paired per-round ratios, 4 degrees of freedom"
    )
    stats = result.variants["fast"]
    assert stats.j_per_image == pytest.approx(
        statistics.median(b / q for b, q in zip(base, ratios, strict=True))
    )
    assert stats.energy_provenance == "measured"
    with pytest.raises(KeyError):
        result.ratio("baseline", "baseline")  # a reference is not compared with itself


def test_a_costlier_variant_is_said_to_use_more() -> None:
    result, _ = run(per_round({"baseline": [1.0, 1.1, 0.9, 1.0, 1.05], "fast": [3.0] * 5}))
    r = result.ratio("fast", "baseline")
    assert r.significant and r.saving < 1
    assert r.verdict.startswith(f"{1 / r.saving:.2f}x more J/image (")


def test_injected_noise_widens_the_interval_and_removes_significance() -> None:
    rng = random.Random(0)  # a fixed draw
    noise = [math.exp(rng.gauss(0, 0.3)) for _ in range(5)]
    steady = per_round(
        {"baseline": [1.0] * 5, "fast": [1 / 1.15 * (1 + 0.01 * i) for i in range(5)]}
    )
    noisy = per_round({"baseline": [1.0] * 5, "fast": [1 / 1.15 * n for n in noise]})
    quiet_ratio = run(steady)[0].ratio("fast", "baseline")
    noisy_result = run(noisy)[0]
    noisy_ratio = noisy_result.ratio("fast", "baseline")
    assert quiet_ratio.significant
    assert not noisy_ratio.significant
    assert noisy_ratio.verdict.startswith("no significant difference (")
    assert noisy_ratio.high - noisy_ratio.low > 5 * (quiet_ratio.high - quiet_ratio.low)
    fast = noisy_result.variants["fast"]
    assert fast.noisy and fast.cv_j_per_image > 0.10
    assert f"J/image varied {fast.cv_j_per_image * 100:.0f} % across rounds" in fast.noise[0]
    assert noisy_result.noisy and noisy_result.noise[0].startswith("fast: J/image varied")


def test_variants_that_differ_only_by_noise_show_no_significant_difference() -> None:
    rng = random.Random(3)
    draw = lambda: [1e-3 * math.exp(rng.gauss(0, 0.05)) for _ in range(5)]  # noqa: E731
    result, _ = run(per_round({"baseline": draw(), "same": draw()}), names=("baseline", "same"))
    r = result.ratio("same", "baseline")
    assert r.low < 1 < r.high and not r.significant
    assert r.verdict.startswith("no significant difference (")


def test_an_external_load_sets_noisy_with_its_figure() -> None:
    result, _ = run(lambda v, r: 1.0, external=loaded(0.8))
    for stats in result.variants.values():
        assert stats.external_cpu_cores == pytest.approx(0.8)
        assert all(s.external_cpu_cores == pytest.approx(0.8) for s in stats.rounds)
        assert stats.noisy
        assert stats.noise == (
            "other processes used up to 0.80 cores during its rounds (threshold 0.25)",
        )
    assert result.noisy and len(result.noise) == 2
    calm, _ = run(lambda v, r: 1.0)
    assert not calm.noisy and calm.noise == ()
    assert all(v.external_cpu_cores == 0.0 for v in calm.variants.values())


def test_external_cpu_is_machine_time_minus_the_tree() -> None:
    class Tree:
        cpu = 0.0

        def cpu_seconds(self) -> float:
            return self.cpu

    tree, clock, system = Tree(), [0.0], [0.0]
    ext = ExternalCpu(tree, system_cpu_s=lambda: system[0], clock=lambda: clock[0])  # type: ignore[arg-type]
    start = ext.snapshot()
    assert start == CpuSnapshot(0.0, 0.0, 0.0)
    clock[0], system[0], tree.cpu = 2.0, 3.0, 1.8  # 2 s: machine 3 CPU-s, ours 1.8
    assert ext.cores_since(start) == pytest.approx(0.6)
    tree.cpu = 3.5  # counters tick apart: never below 0
    assert ext.cores_since(start) == 0.0


def test_threads_are_set_for_the_comparison_and_restored() -> None:
    assert torch.get_num_threads() == 1
    seen: list[int] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return x

    monitor = ScriptedMonitor(lambda v, r: 1.0)
    settings = dataclasses.replace(FIXED, threads=2)
    result = compare_variants(
        {"baseline": record},
        torch.zeros(2, 3),
        settings=settings,
        monitor=monitor,
        external=quiet(),
    )
    monitor.close()
    assert set(seen) == {2} and result.threads == 2 and "2 threads" in result.method
    assert torch.get_num_threads() == 1
    assert result.ratios == ()  # nothing to compare the reference with


def test_one_round_has_no_interval_and_says_so() -> None:
    settings = dataclasses.replace(FIXED, rounds=1)
    result, _ = run(per_round({"baseline": [2.0], "fast": [1.0]}), settings=settings)
    r = result.ratio("fast", "baseline")
    assert r.saving == pytest.approx(2.0)
    assert (r.low, r.high, r.significant) == (None, None, False)
    assert "one round: no interval, not tested" in r.verdict
    assert result.variants["fast"].cv_j_per_image is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_log_ratio_interval_of_equal_ratios_is_a_point() -> None:
    assert log_ratio_interval([1.5, 1.5, 1.5], 0.95) == pytest.approx((1.5, 1.5, 1.5))


def test_real_models_measured_end_to_end_give_json_safe_results() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    model.train()
    modes: list[bool] = []
    model.register_forward_pre_hook(
        lambda m, a: modes.append(m.training or torch.is_grad_enabled())
    )
    settings = CompareSettings(
        rounds=5, round_s=0.05, min_batches=2, warmup_s=0.05, threads=1, target_half_width=None
    )
    result = compare_variants(
        {"baseline": model, "prepared": PreparedModel(model, channels_last=True)},
        torch.randn(BATCH, 3, 8, 8),
        references=("baseline", "not a variant"),
        settings=settings,
    )
    assert not any(modes)  # eval mode, under inference_mode
    assert [r.reference for r in result.ratios] == ["baseline"]
    r = result.ratio("prepared", "baseline")
    assert r.low is not None and r.low <= r.saving <= r.high
    assert r.speedup_low <= r.speedup <= r.speedup_high
    stats = result.variants["baseline"]
    assert stats.energy_provenance in ("measured", "estimated", "mixed")
    assert all(s.duration_s >= 0.05 and s.energy_j > 0 for s in stats.rounds)
    assert stats.latency_p50_ms <= stats.latency_p95_ms
    assert result.batch_size == BATCH and result.device == "cpu"
    assert result.energy_j == pytest.approx(
        sum(s.energy_j for v in result.variants.values() for s in v.rounds)
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["settings"]["rounds"] == 5
    assert len(data["variants"]["prepared"]["rounds"]) == 5
    assert "measurement" not in data["variants"]["prepared"]["rounds"][0]


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="rounds"):
        CompareSettings(rounds=0)
    with pytest.raises(ConfigError, match="confidence"):
        CompareSettings(confidence=1.0)
    with pytest.raises(ConfigError, match="at least one variant"):
        compare_variants({}, torch.zeros(2, 3))


def test_rounds_are_added_until_every_interval_is_within_the_target() -> None:
    noisy_start = [2.0, 3.0, 1.5, 2.6, 1.7]
    ratios = noisy_start + [2.0] * 40
    base = [0.01] * len(ratios)
    settings = dataclasses.replace(FIXED, target_half_width=0.10, max_rounds=40)
    fast = [b / q for b, q in zip(base, ratios, strict=True)]
    result, _ = run(per_round({"baseline": base, "fast": fast}), settings=settings)
    n = result.rounds
    assert 5 < n < 40 and len(result.variants["fast"].rounds) == n
    r = result.ratio("fast", "baseline")
    assert half_width(r.low, r.high) <= 0.10
    before = log_ratio_interval(ratios[: n - 1], 0.95)  # one round fewer was not enough
    assert half_width(before[1], before[2]) > 0.10
    assert result.stop == f"every interval within 10 % after {n} rounds"
    assert f"then {n} rounds in rotating order ({result.stop})" in result.method
    assert result.to_dict()["rounds"] == n


def test_a_comparison_that_stays_wide_stops_at_the_maximum_and_says_so() -> None:
    base = [0.01] * 8
    fast = [0.01 / (1.0 if r % 2 else 4.0) for r in range(8)]
    settings = dataclasses.replace(FIXED, target_half_width=0.10, max_rounds=8)
    result, _ = run(per_round({"baseline": base, "fast": fast}), settings=settings)
    assert result.rounds == 8
    assert result.stop.startswith("stopped at the maximum of 8 rounds with intervals up to")
    assert "fast vs baseline" in result.stop


def test_without_a_target_exactly_the_set_rounds_run() -> None:
    result, _ = run(lambda v, r: 1.0 if v == "baseline" else 0.5 + 0.1 * (r % 2))
    assert result.rounds == 5 and result.stop == "fixed at 5 rounds"


def test_variants_that_differ_only_by_noise_share_a_rank() -> None:
    rng = random.Random(3)
    rounds = 8

    def j(mean: float, spread: float) -> list[float]:
        return [mean * (1 + rng.uniform(-spread, spread)) for _ in range(rounds)]

    values = {"baseline": j(1.0, 0.02), "a": j(0.50, 0.2), "b": j(0.52, 0.2), "c": j(0.1, 0.02)}
    settings = dataclasses.replace(FIXED, rounds=rounds)
    result, _ = run(per_round(values), names=tuple(values), settings=settings)
    assert not result.pairwise("a", "b").significant
    assert result.pairwise("c", "a").significant
    assert result.ranks() == {"c": 1, "a": 2, "b": 2, "baseline": 4}
    assert result.to_dict()["ranks"] == result.ranks()


def test_one_round_ranks_nothing() -> None:
    result, _ = run(lambda v, r: 1.0, settings=dataclasses.replace(FIXED, rounds=1))
    assert result.ranks() == {"baseline": None, "fast": None}
