"""The comparison's values and its interval maths: settings, per-round and per-variant
statistics, paired ratios with t intervals on their logarithms, ranks.

:func:`wattwise.optimize.compare.compare_variants` measures; this module holds what it returns
(:class:`Comparison`) and how a ratio and its interval are computed from paired rounds, so that
a stored comparison can be re-read and any pair re-compared (:meth:`Comparison.pairwise`)
without running anything.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wattwise.energy.base import Measurement
from wattwise.validation import (
    NonNegativeNumber,
    OpenFraction,
    PositiveInt,
    PositiveNumber,
    config_dataclass,
    dump,
)

__all__ = ["CompareSettings", "Comparison", "Ratio", "RoundStat", "VariantStats"]
__all__ += ["half_width", "interval_method", "log_ratio_interval", "paired_ratio"]


@config_dataclass
class CompareSettings:
    """How variants are compared.

    Attributes:
        rounds: Rounds R (>= 1; with one round there is no interval). At the same total time
            per variant, 10 short rounds gave intervals half as wide as 5 long ones on this
            2-core VM (docs/benchmarks.md, "Verdict stability").
        round_s: Each variant runs at least this many seconds per round (whole batches).
        min_batches: ... and at least this many batches (also the warm-up's minimum).
        warmup_s: Un-measured warm-up per variant, once, before the rounds (seconds).
        threads: torch intra-op threads during the comparison (``None``: keep the current
            count); the count used is always recorded.
        confidence: Confidence level of the ratio intervals, in (0, 1).
        noisy_cv: A variant whose per-round J/image has a coefficient of variation above this
            is ``noisy``.
        noisy_external_cpu: A variant during one of whose rounds processes outside the measured
            tree used more than this many cores (averaged over the window) is ``noisy``.
        target_half_width: Add rounds, one at a time after the first ``rounds``, until every
            ratio's interval has at most this half-width (``sqrt(high / low) - 1``; 0.10: the
            ratio is known to within x/÷ 1.10); ``None``: exactly ``rounds`` rounds.
        max_rounds: ... but never more rounds than this (nor fewer than ``rounds``).
    """

    rounds: PositiveInt = 10
    round_s: PositiveNumber = 1.0
    min_batches: PositiveInt = 3
    warmup_s: NonNegativeNumber = 1.0
    threads: PositiveInt | None = None
    confidence: OpenFraction = 0.95
    noisy_cv: OpenFraction = 0.10
    noisy_external_cpu: NonNegativeNumber = 0.25
    target_half_width: OpenFraction | None = 0.10
    max_rounds: PositiveInt = 30


@dataclass(frozen=True)
class RoundStat:
    """One variant in one round (one EnergyMonitor window).

    Attributes:
        round: Round index, from 0.
        order: Position of the variant in this round's rotation, from 0.
        batches, images: Work done in the window.
        duration_s: Window length.
        energy_j: Window energy (all top-level components).
        j_per_image: ``energy_j / images``.
        images_per_s: ``images / duration_s``.
        latency_p50_ms, latency_p95_ms: Per-batch latency percentiles.
        external_cpu_cores: CPU used by processes outside the measured tree, in cores.
        measurement: The window's Measurement (not serialized by ``to_dict``).
    """

    round: int
    order: int
    batches: int
    images: int
    duration_s: float
    energy_j: float
    j_per_image: float
    images_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    external_cpu_cores: float
    measurement: Measurement | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "measurement"}


@dataclass(frozen=True)
class VariantStats:
    """A variant over all rounds: medians, spread, provenance and noise flags.

    ``cv_*`` are coefficients of variation across rounds (sample standard deviation / mean;
    ``None`` with one round). ``external_cpu_cores`` is the largest of its rounds.
    """

    name: str
    rounds: tuple[RoundStat, ...]
    j_per_image: float
    images_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    cv_j_per_image: float | None
    cv_images_per_s: float | None
    energy_provenance: str
    external_cpu_cores: float
    noisy: bool
    noise: tuple[str, ...]

    @property
    def energy_j(self) -> float:
        """Energy of all its measured rounds (measurement energy; warm-up not included)."""
        return float(sum(r.energy_j for r in self.rounds))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("rounds", "noise")}
        out["rounds"] = [r.to_dict() for r in self.rounds]
        out["noise"] = list(self.noise)
        out["energy_j"] = self.energy_j
        return out


@dataclass(frozen=True)
class Ratio:
    """A variant against a reference, from the paired per-round ratios.

    Attributes:
        saving: Geometric mean over rounds of reference J/image / variant J/image (> 1: the
            variant uses less energy per image); ``None`` without energy readings.
        low, high: Its confidence interval (``None`` with one round or no energy).
        speedup, speedup_low, speedup_high: The same for images/s, variant / reference.
        method: How the interval was computed.
        significant: The saving's interval excludes 1.
        verdict: The saving in words, with its interval.
    """

    variant: str
    reference: str
    saving: float | None
    low: float | None
    high: float | None
    speedup: float
    speedup_low: float | None
    speedup_high: float | None
    rounds: int
    confidence: float
    method: str
    significant: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare_variants`.

    ``rounds`` is how many rounds ran (the stop rule may add rounds to ``settings.rounds``) and
    ``stop`` says why it stopped, e.g. ``every interval within 10 % after 12 rounds``.
    """

    settings: CompareSettings
    threads: int
    batch_size: int
    device: str
    variants: dict[str, VariantStats]
    ratios: tuple[Ratio, ...]
    noisy: bool
    noise: tuple[str, ...]
    method: str
    rounds: int = 0
    stop: str = ""

    def ratio(self, variant: str, reference: str) -> Ratio:
        """The ratio of ``variant`` against ``reference``; ``KeyError`` if not computed."""
        for r in self.ratios:
            if r.variant == variant and r.reference == reference:
                return r
        raise KeyError(f"no ratio of {variant!r} against {reference!r}")

    def pairwise(self, variant: str, reference: str) -> Ratio:
        """``variant`` against any other compared variant (paired rounds, same interval), also
        a pair that is not in ``ratios``; ``KeyError`` for an unknown name."""
        return paired_ratio(self.variants[variant], self.variants[reference], self.settings)

    def ranks(self) -> dict[str, int | None]:
        """Rank by J/image: 1 + the number of variants significantly cheaper per image than it.

        Variants that do not differ significantly share a rank (``1, 2, 2, 4``); a variant
        without an energy reading, and every variant of a one-round comparison, ranks ``None``.
        Computed once (every pair's interval) and shared by the record, the JSON and the CLI.
        """
        return dict(self._ranks)

    @functools.cached_property
    def _ranks(self) -> dict[str, int | None]:
        names = list(self.variants)
        ranks: dict[str, int | None] = {}
        for name in names:
            cheaper = 0
            for other in names:
                if other == name:
                    continue
                r = self.pairwise(name, other)
                if r.saving is None:
                    cheaper = -1
                    break
                if r.significant and r.high is not None and r.high < 1:  # ``other`` is cheaper
                    cheaper += 1
            testable = cheaper >= 0 and (len(names) == 1 or self.rounds > 1)
            ranks[name] = 1 + cheaper if testable else None
        return ranks

    @property
    def energy_j(self) -> float:
        """Energy of all measured windows (the comparison's measurement energy)."""
        return float(sum(v.energy_j for v in self.variants.values()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain data (no modules, no Measurements)."""
        return {
            "settings": dump(self.settings),
            "threads": self.threads,
            "batch_size": self.batch_size,
            "device": self.device,
            "variants": {k: v.to_dict() for k, v in self.variants.items()},
            "ratios": [r.to_dict() for r in self.ratios],
            "noisy": self.noisy,
            "noise": list(self.noise),
            "method": self.method,
            "rounds": self.rounds,
            "stop": self.stop,
            "ranks": self.ranks(),
            "energy_j": self.energy_j,
        }


def half_width(low: float | None, high: float | None) -> float | None:
    """Half-width of a ratio interval ``[low, high]`` as a fraction: ``sqrt(high / low) - 1``
    (the t interval on logs is symmetric: ``ratio x/÷ (1 + half-width)``); ``None`` if open."""
    if low is None or high is None or low <= 0:
        return None
    return math.sqrt(high / low) - 1


# --- intervals -----------------------------------------------------------------------------
def interval_method(rounds: int) -> str:
    return (
        f"t interval on the log of the {rounds} paired per-round ratios, "
        f"{rounds - 1} degrees of freedom"
    )


def log_ratio_interval(
    ratios: Sequence[float], confidence: float
) -> tuple[float, float | None, float | None]:
    """Geometric mean of positive paired ratios and its t interval.

    ``exp(mean(log r) -/+ t_{R-1} * sd(log r) / sqrt(R))``, with ``t_{R-1}`` the two-sided
    Student t quantile at ``confidence`` and ``sd`` the sample standard deviation. With one
    ratio the interval is undefined: ``(ratio, None, None)``.
    """
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), None, None
    from scipy import stats  # imported on use: importing wattwise.optimize stays fast

    t = float(stats.t.ppf((1 + confidence) / 2, len(logs) - 1))
    half = t * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def paired_ratio(variant: VariantStats, reference: VariantStats, s: CompareSettings) -> Ratio:
    """``variant`` against ``reference`` from their paired rounds (same round count): saving and
    speedup with t intervals on the logs of the per-round ratios, significance and verdict."""
    pairs = list(zip(reference.rounds, variant.rounds, strict=True))
    conf = f"{s.confidence * 100:g} %"
    speedup, sp_low, sp_high = log_ratio_interval(
        [v.images_per_s / ref.images_per_s for ref, v in pairs], s.confidence
    )
    saving: float | None = None
    low = high = None
    if any(ref.j_per_image <= 0 or v.j_per_image <= 0 for ref, v in pairs):
        verdict = "not tested: no energy reading in some rounds"
    else:
        saving, low, high = log_ratio_interval(
            [ref.j_per_image / v.j_per_image for ref, v in pairs], s.confidence
        )
        verdict = _verdict(saving, low, high, conf)
    significant = low is not None and high is not None and (low > 1 or high < 1)
    return Ratio(
        variant=variant.name,
        reference=reference.name,
        saving=saving,
        low=low,
        high=high,
        speedup=speedup,
        speedup_low=sp_low,
        speedup_high=sp_high,
        rounds=len(pairs),
        confidence=s.confidence,
        method=interval_method(len(pairs)),
        significant=significant,
        verdict=verdict,
    )


def _verdict(saving: float, low: float | None, high: float | None, conf: str) -> str:
    if low is None or high is None:
        return (
            f"{saving:.2f}x J/image saving from one round: no interval, not tested "
            "(use rounds >= 5)"
        )
    if low > 1:
        return f"{saving:.2f}x less J/image ({low:.2f} to {high:.2f}, {conf})"
    if high < 1:
        return f"{1 / saving:.2f}x more J/image ({1 / high:.2f} to {1 / low:.2f}, {conf})"
    return f"no significant difference ({low:.2f} to {high:.2f}, {conf})"
