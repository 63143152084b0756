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

**Stop rule.** After the first ``rounds`` rounds, rounds are added one at a time until every
ratio's interval has a half-width (``sqrt(high / low) - 1``) of at most ``target_half_width``, or
``max_rounds`` is reached (the comparison says which). The rule looks at the intervals' *width*
only, never at whether a ratio is significant, so it does not bias the verdicts towards
significance the way stopping "when p < 0.05" would.

**Ranks.** :meth:`Comparison.ranks` ranks the variants by J/image: a variant's rank is 1 + the
number of variants that use significantly less energy per image than it (paired rounds, the same
t interval). Variants whose difference is not significant share a rank, so a ranking is only
as fine as the measurement allows and does not flip between reruns on noise.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.process import ExternalCpu
from wattwise.errors import ConfigError
from wattwise.optimize.base import PreparedModel
from wattwise.optimize.comparison import (
    CompareSettings,
    Comparison,
    Ratio,
    RoundStat,
    VariantStats,
    half_width,
    interval_method,
    log_ratio_interval,
    paired_ratio,
)
from wattwise.train.device import num_threads, resolve_device

__all__ = ["CompareSettings", "Comparison", "Ratio", "RoundStat", "VariantStats"]
__all__ += ["compare_variants", "half_width", "log_ratio_interval"]


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
            last = max(settings.rounds, settings.max_rounds)
            stop: str | None = None
            for r in range(last):
                shift = r % len(names)
                for order, name in enumerate(names[shift:] + names[:shift]):
                    per_round[name].append(
                        _measure_round(
                            calls[name], x, monitor, external, settings, sync, name, r, order
                        )
                    )
                if r + 1 >= settings.rounds:
                    stop = _stop(per_round, references, settings, r + 1, last)
                    if stop is not None:
                        break
    finally:
        if own:
            monitor.close()
    variants, ratios = _statistics(per_round, references, settings)
    rounds = len(per_round[names[0]])
    noise = tuple(f"{v.name}: {why}" for v in variants.values() for why in v.noise)
    method = (
        f"interleaved: warm-up {settings.warmup_s:.2g} s per variant, then {rounds} "
        f"rounds in rotating order ({stop}), each variant >= {settings.round_s:g} s and >= "
        f"{settings.min_batches} batches per round in its own window, {threads} threads; "
        f"medians over rounds; ratios: {interval_method(rounds)}"
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
        rounds=rounds,
        stop=stop or "",
    )


def _statistics(
    per_round: Mapping[str, list[RoundStat]], references: Sequence[str], s: CompareSettings
) -> tuple[dict[str, VariantStats], tuple[Ratio, ...]]:
    variants = {name: _variant_stats(name, rounds, s) for name, rounds in per_round.items()}
    ratios = tuple(
        paired_ratio(variants[name], variants[ref], s)
        for ref in references
        if ref in variants
        for name in variants
        if name != ref
    )
    return variants, ratios


def _stop(
    per_round: Mapping[str, list[RoundStat]],
    references: Sequence[str],
    s: CompareSettings,
    done: int,
    last: int,
) -> str | None:
    """Why the comparison stops after ``done`` rounds, or ``None`` to add a round."""
    if s.target_half_width is None:
        return f"fixed at {done} rounds"
    _, ratios = _statistics(per_round, references, s)
    if not ratios:
        return f"{done} rounds: no pair to compare"
    widths = [
        (w, f"{r.variant} vs {r.reference}")
        for r in ratios
        if (w := half_width(*((r.low, r.high) if r.saving is not None else
                              (r.speedup_low, r.speedup_high)))) is not None
    ]  # fmt: skip
    if len(widths) < len(ratios):
        return None if done < last else f"{done} rounds (the maximum)"
    widest, pair = max(widths)
    target = f"{s.target_half_width * 100:g} %"
    if widest <= s.target_half_width:
        return f"every interval within {target} after {done} rounds"
    if done >= last:
        return (
            f"stopped at the maximum of {done} rounds with intervals up to "
            f"{widest * 100:.0f} % wide ({pair}; target {target})"
        )
    return None


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
