"""Confidence intervals of the decisions: accuracy (Wilson), accuracy change (Newcombe) and an
energy ratio over seeds (Welch's t on logs).

    wilson(8, 10)                              # Interval(0.8, 0.490, 0.943): 8 of 10 correct
    accuracy_interval([(0.9, 360), (0.92, 360)])   # the seeds' correct counts pooled
    difference(wilson(90, 100), wilson(80, 100))   # accuracy change, Newcombe's hybrid score
    welch_ratio(baseline_j, variant_j)         # baseline / variant energy over seeds, with CI

Every interval of a proportion stays within [0, 1]. Too little data is a result: the interval
ends are ``None`` and ``reason`` says what was missing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from wattwise.analysis.base import Result, finite, finite_values

#: The confidence level of every interval unless told otherwise.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval(Result):
    """An estimate with its two-sided confidence interval (``low``/``high`` ``None``: unknown).

    Attributes:
        method: How the interval was computed, in words (the report prints it).
        n: The observations behind it (images for a proportion, seeds for a ratio).
        reason: Why there is no interval, when there is none.
    """

    estimate: float | None
    low: float | None
    high: float | None
    method: str
    n: int = 0
    confidence: float = CONFIDENCE
    reason: str | None = None

    def excludes(self, value: float) -> bool:
        """Whether the interval lies wholly above or wholly below ``value``."""
        if self.low is None or self.high is None:
            return False
        return self.low > value or self.high < value


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(sps.norm.ppf((1 + confidence) / 2))


def wilson(successes: float, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of a binomial proportion: ``successes`` of ``n``.

    ``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``, always within [0, 1]; 8 of 10 at
    95 % gives 0.490 to 0.943.

    Raises:
        ValueError: ``n`` negative, ``successes`` outside [0, n], or ``confidence`` not in (0, 1).
    """
    z = _z(confidence)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes!r} of {n!r}")
    method = f"Wilson score interval, {n} images"
    if n == 0:
        return Interval(None, None, None, method, 0, confidence, "no test images recorded")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = min(p, centre - half), max(p, centre + half)  # p = 0 or 1: an exact end
    return Interval(p, max(0.0, low), min(1.0, high), method, n, confidence)


def accuracy_interval(
    trials: Iterable[tuple[float | None, int | None]], confidence: float = CONFIDENCE
) -> Interval:
    """The accuracy of one trial or of several seeds: the correct predictions (``accuracy x
    test_images`` per trial) are pooled into one Wilson interval over all the test predictions;
    the estimate is the image-weighted mean accuracy (the mean, for equal test splits).

    Args:
        trials: ``(accuracy, test_images)`` per trial; pairs with a missing value are skipped.

    Returns:
        The pooled accuracy with its Wilson interval; without test-image counts the estimate is
        the mean accuracy and the interval is unknown (``reason`` says so).
    """
    pairs = [(finite(a), n) for a, n in trials]
    known = [(a, int(n)) for a, n in pairs if a is not None and isinstance(n, int) and n > 0]
    if not known:
        accuracies = [a for a, _ in pairs if a is not None]
        mean = sum(accuracies) / len(accuracies) if accuracies else None
        return Interval(mean, None, None, "Wilson score interval", 0, confidence,
                        "the number of test images is not recorded")  # fmt: skip
    correct = sum(min(max(a, 0.0), 1.0) * n for a, n in known)
    images = sum(n for _, n in known)
    result = wilson(correct, images, confidence)
    if len(known) > 1:
        method = f"Wilson score interval of the {len(known)} seeds' pooled predictions"
        result = Interval(result.estimate, result.low, result.high,
                          f"{method}, {images} images", images, confidence)  # fmt: skip
    return result


def difference(a: Interval, b: Interval) -> Interval:
    """``a - b`` of two independent proportions with Newcombe's hybrid score interval (method
    10 of Newcombe 1998), from their Wilson intervals; within [-1, 1]."""
    method = "Newcombe hybrid score interval of the difference"
    if None in (a.estimate, a.low, a.high, b.estimate, b.low, b.high):
        estimate = None if a.estimate is None or b.estimate is None else a.estimate - b.estimate
        return Interval(estimate, None, None, method, 0, a.confidence,
                        "an accuracy has no interval")  # fmt: skip
    p1, l1, u1 = a.estimate, a.low, a.high
    p2, l2, u2 = b.estimate, b.low, b.high
    d = p1 - p2  # type: ignore[operator]
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)  # type: ignore[operator]
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)  # type: ignore[operator]
    return Interval(d, max(-1.0, low), min(1.0, high), method, a.n + b.n, a.confidence)


def welch_ratio(
    baseline: Sequence[float | None],
    variant: Sequence[float | None],
    confidence: float = CONFIDENCE,
) -> Interval:
    """``baseline / variant`` of two positive energies over seeds: Welch's two-sample t-interval
    of the difference of the mean logs, exponentiated (> 1: the variant uses less energy). The
    fallback where no interleaved comparison was recorded.

    Args:
        baseline: One energy per seed of the reference (J or J/image).
        variant: One energy per seed of the variant, same unit.
    """
    method = "Welch t-interval over seeds on log energy"
    a = np.log([x for x in finite_values(baseline) if x > 0])
    b = np.log([x for x in finite_values(variant) if x > 0])
    n = int(a.size + b.size)
    if a.size == 0 or b.size == 0:
        return Interval(None, None, None, method, n, confidence, "an energy is missing")
    estimate = float(math.exp(a.mean() - b.mean()))
    if a.size < 2 or b.size < 2:
        return Interval(estimate, None, None, method, n, confidence,
                        "not testable: fewer than 2 seeds on a side")  # fmt: skip
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        if a[0] == b[0]:
            return Interval(1.0, 1.0, 1.0, method, n, confidence)
        return Interval(estimate, None, None, method, n, confidence,
                        "not testable: no spread over seeds")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = sps.ttest_ind(a, b, equal_var=False)
        ci = test.confidence_interval(confidence_level=confidence)
    low, high = finite(ci.low), finite(ci.high)
    if low is None or high is None:
        return Interval(estimate, None, None, method, n, confidence, "the t-test is undefined")
    return Interval(estimate, math.exp(low), math.exp(high), method, n, confidence)
