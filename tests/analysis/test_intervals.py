"""The intervals of the decisions against textbook values: Wilson (always within [0, 1]),
Newcombe's difference of two proportions, and Welch's ratio over seeds."""

from __future__ import annotations

import math

import pytest

from wattwise.analysis.intervals import accuracy_interval, difference, welch_ratio, wilson


def test_wilson_matches_the_textbook() -> None:
    # 8 of 10 at 95 %: 0.490 to 0.943 (Wilson 1927; Newcombe 1998, table I)
    ci = wilson(8, 10)
    assert ci.estimate == 0.8
    assert (round(ci.low, 3), round(ci.high, 3)) == (0.490, 0.943)  # type: ignore[arg-type]
    # 0 of 10: 0 to 0.278; 10 of 10: 0.722 to 1
    assert wilson(0, 10).low == 0.0 and wilson(0, 10).high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(10, 10).high == 1.0 and wilson(10, 10).low == pytest.approx(0.7225, abs=1e-4)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 37, 360, 10_000])
def test_wilson_never_leaves_zero_to_one(n: int) -> None:
    for k in range(0, n + 1, max(1, n // 50)):
        ci = wilson(k, n)
        assert 0.0 <= ci.low <= ci.estimate <= ci.high <= 1.0  # type: ignore[operator]


def test_wilson_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson(1, 2, confidence=1.0)
    assert wilson(0, 0).low is None and wilson(0, 0).reason


def test_seeds_are_pooled_into_one_wilson_interval() -> None:
    pooled = accuracy_interval([(0.99, 100), (1.0, 100)])  # two seeds near 100 %
    assert pooled.estimate == pytest.approx(0.995) and pooled.high <= 1.0  # type: ignore[operator]
    assert (pooled.low, pooled.high) == (wilson(199, 200).low, wilson(199, 200).high)
    assert "2 seeds' pooled predictions" in pooled.method and pooled.n == 200
    unknown = accuracy_interval([(0.9, None), (0.8, None)])
    assert unknown.estimate == pytest.approx(0.85) and unknown.low is None
    assert "test images is not recorded" in (unknown.reason or "")


def test_newcombe_difference_matches_the_textbook() -> None:
    # Newcombe 1998, example (a): 56/70 - 48/80 = 0.2000, method 10: 0.0524 to 0.3339
    d = difference(wilson(56, 70), wilson(48, 80))
    assert d.estimate == pytest.approx(0.2)
    assert (round(d.low, 4), round(d.high, 4)) == (0.0524, 0.3339)  # type: ignore[arg-type]
    extreme = difference(wilson(10, 10), wilson(0, 10))
    assert -1.0 <= extreme.low <= extreme.high <= 1.0  # type: ignore[operator]


def test_welch_ratio_over_seeds() -> None:
    ratio = welch_ratio([2.0, 2.1, 1.9], [1.0, 1.05, 0.95])
    assert ratio.estimate == pytest.approx(2.0)
    assert 1 < ratio.low < 2 < ratio.high  # type: ignore[operator]
    noise = welch_ratio([2.0, 2.1, 1.9], [1.95, 2.05, 2.0])
    assert noise.low < 1 < noise.high  # type: ignore[operator]
    assert not noise.excludes(1.0)
    one = welch_ratio([2.0, 2.1], [1.0])
    assert one.estimate == pytest.approx(math.sqrt(4.2) / 1.0) and one.low is None
    assert "fewer than 2 seeds" in (one.reason or "")
