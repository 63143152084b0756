"""The comparison protocol: interleaved rounds over variants, paired-ratio intervals, noise flags.

Every comparison in wattwise (a recipe's steps, a study's variants, the benchmarks) is made here:
at a fixed, recorded thread count, each variant warms up once; then in each of R rounds the
variants run in rotated order (``A B C``, ``B C A``, ``C A B``...), each for at least ``round_s``
seconds and ``min_batches`` whole batches in its own EnergyMonitor window
``compare/<variant>/round<r>``. Per variant: medians over rounds of J/image, images/s and latency
p50/p95, their coefficient of variation, and the CPU that *other* processes used meanwhile. Per
(variant, reference) pair: the saving (reference J/image / variant J/image, > 1 = the variant
uses less) and the speedup, each the geometric mean of the paired per-round ratios with a t
interval on their logarithms (R - 1 degrees of freedom); an interval that includes 1 is "no
significant difference". A variant is ``noisy`` when its J/image varied more than ``noisy_cv``
or other processes used more than ``noisy_external_cpu`` cores during one of its rounds; the
reason and its figure travel with the result.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.process import ExternalCpu
from wattwise.errors import ConfigError
from wattwise.optimize.base import PreparedModel
from wattwise.train.device import num_threads, resolve_device
from wattwise.validation import (
    NonNegativeNumber,
    OpenFraction,
    PositiveInt,
    PositiveNumber,
    config_dataclass,
    dump,
)

__all__ = ["CompareSettings", "Comparison", "Ratio", "RoundStat", "VariantStats"]
__all__ += ["compare_variants", "log_ratio_interval"]


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
    """

    rounds: PositiveInt = 10
    round_s: PositiveNumber = 1.0
    min_batches: PositiveInt = 3
    warmup_s: NonNegativeNumber = 1.0
    threads: PositiveInt | None = None
    confidence: OpenFraction = 0.95
    noisy_cv: OpenFraction = 0.10
    noisy_external_cpu: NonNegativeNumber = 0.25


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
    """The result of :func:`compare_variants`."""

    settings: CompareSettings
    threads: int
    batch_size: int
    device: str
    variants: dict[str, VariantStats]
    ratios: tuple[Ratio, ...]
    noisy: bool
    noise: tuple[str, ...]
    method: str

    def ratio(self, variant: str, reference: str) -> Ratio:
        """The ratio of ``variant`` against ``reference``; ``KeyError`` if not computed."""
        for r in self.ratios:
            if r.variant == variant and r.reference == reference:
                return r
        raise KeyError(f"no ratio of {variant!r} against {reference!r}")

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
            "energy_j": self.energy_j,
        }


# --- the protocol ------------------------------------------------------------------------------
def compare_variants(
    runners: Mapping[str, Any],
    inputs: torch.Tensor,
    *,
    references: Sequence[str] = ("baseline",),
    settings: CompareSettings | None = None,
    monitor: EnergyMonitor | None = None,
    device: torch.device | str | None = None,
    external: ExternalCpu | None = None,
) -> Comparison:
    """Measure every variant by the same interleaved protocol and compare them.

    Args:
        runners: Name -> a :class:`PreparedModel` (called: it applies its own autocast and
            channels-last), an ``nn.Module`` (put in eval mode) or any callable on the batch.
            All run under ``torch.inference_mode()``.
        inputs: One input batch (first dimension = batch size).
        references: Names to compare every other variant against; names that are not in
            ``runners`` are skipped (no ratio of a reference against itself).
        settings: Rounds, durations, threads, confidence, noise thresholds.
        monitor: The EnergyMonitor whose windows measure the rounds (default: a new one).
        device: Where the inputs go (default: where they are); modules are moved there
            (int8 graphs, which stay where they were compiled, excepted).
        external: Measures CPU used outside the measured tree (default: machine-wide psutil
            times minus ``monitor.tree``; tests pass a fake).

    Returns:
        The :class:`Comparison`: per-variant statistics, ratios with intervals, noise flags.

    Raises:
        ConfigError: No runners, or inputs that are not a batch.
    """
    settings = settings or CompareSettings()
    if not runners:
        raise ConfigError("compare_variants needs at least one variant")
    if inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ConfigError(f"inputs must be one batch, got shape {tuple(inputs.shape)}")
    dev = inputs.device if device is None else resolve_device(str(device))
    x = inputs.to(dev)
    calls = {name: _callable(runner, dev) for name, runner in runners.items()}
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    own = monitor is None
    monitor = monitor or EnergyMonitor()
    external = external or ExternalCpu(monitor.tree)
    names = list(calls)
    per_round: dict[str, list[RoundStat]] = {name: [] for name in names}
    try:
        with num_threads(settings.threads), torch.inference_mode():
            threads = torch.get_num_threads()
            for name in names:
                _run_batches(calls[name], x, settings.warmup_s, settings.min_batches, sync)
            for r in range(settings.rounds):
                shift = r % len(names)
                for order, name in enumerate(names[shift:] + names[:shift]):
                    per_round[name].append(
                        _measure_round(
                            calls[name], x, monitor, external, settings, sync, name, r, order
                        )
                    )
    finally:
        if own:
            monitor.close()
    variants = {name: _variant_stats(name, per_round[name], settings) for name in names}
    ratios = tuple(
        _ratio(variants[name], variants[ref], settings)
        for ref in references
        if ref in variants
        for name in names
        if name != ref
    )
    noise = tuple(f"{v.name}: {why}" for v in variants.values() for why in v.noise)
    method = (
        f"interleaved: warm-up {settings.warmup_s:.2g} s per variant, then {settings.rounds} "
        f"rounds in rotating order, each variant >= {settings.round_s:g} s and >= "
        f"{settings.min_batches} batches per round in its own window, {threads} threads; "
        f"medians over rounds; ratios: {_method(settings.rounds)}"
    )
    return Comparison(
        settings=settings,
        threads=threads,
        batch_size=int(x.shape[0]),
        device=str(dev),
        variants=variants,
        ratios=ratios,
        noisy=bool(noise),
        noise=noise,
        method=method,
    )


def _callable(runner: Any, dev: torch.device) -> Callable[[torch.Tensor], Any]:
    module = runner.module if isinstance(runner, PreparedModel) else runner
    if isinstance(module, nn.Module):
        if not hasattr(module, "compiled"):  # an int8 graph stays where it was compiled
            module.to(dev)
        module.eval()
    if not callable(runner):
        raise ConfigError(f"a variant must be a model or a callable, got {type(runner).__name__}")
    return runner


def _run_batches(
    call: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    min_s: float,
    min_batches: int,
    sync: Callable[[], None] | None,
) -> list[float]:
    """Call ``call(x)`` until both minimums are met; per-batch latencies in seconds."""
    latencies: list[float] = []
    begin = time.perf_counter()
    while len(latencies) < min_batches or time.perf_counter() - begin < min_s:
        t0 = time.perf_counter()
        call(x)
        if sync is not None:
            sync()
        latencies.append(time.perf_counter() - t0)
    return latencies


def _measure_round(
    call: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    monitor: EnergyMonitor,
    external: ExternalCpu,
    settings: CompareSettings,
    sync: Callable[[], None] | None,
    name: str,
    r: int,
    order: int,
) -> RoundStat:
    start = external.snapshot()
    with monitor.window(f"compare/{name}/round{r}") as w:
        latencies = _run_batches(call, x, settings.round_s, settings.min_batches, sync)
    cores = external.cores_since(start)
    m: Measurement = w.measurement  # type: ignore[assignment]
    images = len(latencies) * int(x.shape[0])
    energy = m.total_energy_j
    return RoundStat(
        round=r,
        order=order,
        batches=len(latencies),
        images=images,
        duration_s=m.duration_s,
        energy_j=energy,
        j_per_image=energy / images,
        images_per_s=images / m.duration_s if m.duration_s > 0 else 0.0,
        latency_p50_ms=_percentile(latencies, 50) * 1e3,
        latency_p95_ms=_percentile(latencies, 95) * 1e3,
        external_cpu_cores=cores,
        measurement=m,
    )


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _cv(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean > 0 else 0.0


def _variant_stats(name: str, rounds: list[RoundStat], s: CompareSettings) -> VariantStats:
    cv_j = _cv([r.j_per_image for r in rounds])
    external = max(r.external_cpu_cores for r in rounds)
    noise = []
    if external > s.noisy_external_cpu:
        noise.append(
            f"other processes used up to {external:.2f} cores during its rounds "
            f"(threshold {s.noisy_external_cpu:g})"
        )
    if cv_j is not None and cv_j > s.noisy_cv:
        noise.append(
            f"J/image varied {cv_j * 100:.0f} % across rounds "
            f"(CV; threshold {s.noisy_cv * 100:g} %)"
        )
    kinds = {r.measurement.total_provenance for r in rounds if r.measurement is not None}
    known = kinds - {"unavailable"}
    if not known:
        provenance = "unavailable"
    elif len(kinds) == 1:
        provenance = kinds.pop()
    else:
        provenance = "mixed"
    return VariantStats(
        name=name,
        rounds=tuple(rounds),
        j_per_image=statistics.median(r.j_per_image for r in rounds),
        images_per_s=statistics.median(r.images_per_s for r in rounds),
        latency_p50_ms=statistics.median(r.latency_p50_ms for r in rounds),
        latency_p95_ms=statistics.median(r.latency_p95_ms for r in rounds),
        cv_j_per_image=cv_j,
        cv_images_per_s=_cv([r.images_per_s for r in rounds]),
        energy_provenance=provenance,
        external_cpu_cores=external,
        noisy=bool(noise),
        noise=tuple(noise),
    )


# --- intervals -----------------------------------------------------------------------------
def _method(rounds: int) -> str:
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


def _ratio(variant: VariantStats, reference: VariantStats, s: CompareSettings) -> Ratio:
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
        method=_method(len(pairs)),
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
