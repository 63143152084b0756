"""The variants of a recipe, measured side by side: results with their intervals and verdicts.

A recipe produces the baseline and one variant per step. :func:`measure_variants` measures all
of them together by the comparison protocol (:func:`wattwise.optimize.compare.compare_variants`:
interleaved rounds at a fixed thread count, paired ratio intervals, noise flags), next to the
fair references that apply — fp32 compiled by int8's compiler path, and channels_last — so that
each saving is shown against fp32 eager *and* against the best fp32 reference.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.optimize.base import PreparedModel, TechniqueConfig, TechniqueContext, apply_technique
from wattwise.optimize.compare import (
    CompareSettings,
    Comparison,
    Ratio,
    VariantStats,
    compare_variants,
)

#: Names of the fair references (variants that are not recipe steps).
COMPILED = "fp32 compiled"
CHANNELS_LAST = "fp32 channels_last"


@dataclass(frozen=True)
class Candidate:
    """A variant before it is measured: its model and what is known without running it."""

    step: str
    prepared: PreparedModel
    accuracy: float
    params: int
    macs: int | None
    model_bytes: int
    model_bytes_note: str
    step_measurement: Measurement | None = None
    optimization_energy_j: float = 0.0
    reference: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantResult:
    """A model after a recipe step (or a fair reference), measured with the others.

    Attributes:
        step: ``baseline``, the canonical step text (``prune:structured:0.5``), or the name of a
            reference (``fp32 compiled``).
        applied: Every step applied so far, ``+``-joined.
        accuracy: Test accuracy in [0, 1].
        params: Parameters (for a compiled or int8 graph: those of the float model it came from).
        macs: Multiply-accumulates per image (not FLOPs).
        model_bytes: What the variant takes (see ``model_bytes_note``).
        stats: Its rounds in the comparison (medians, spread, noise), or ``None`` when inference
            was not measured.
        saving: Against the baseline (fp32 eager): ``baseline J/image / variant J/image`` with
            its interval and verdict; ``None`` for the baseline itself or when not measured.
        saving_vs_best_fp32: The same against the fp32 variant (baseline or reference) with the
            lowest J/image, named by ``best_fp32``.
        step_measurement: What the step itself cost (``None`` for the baseline and references).
        optimization_energy_j: Step energy spent so far, this step included (joules).
        payback_inferences: Inferences after which the saving per image repays
            ``optimization_energy_j`` (0 for the baseline; ``None``, "never", when the saving is
            not significant); ``payback_low``/``payback_high`` from the saving's interval.
        reference: True for a fair reference that is not a recipe step.
        rank: Its rank by J/image in the comparison (:meth:`Comparison.ranks`: ties share one).
        notes: Honest labels of what the techniques do not save.
        details: The step's report and training status.
    """

    step: str
    applied: str
    accuracy: float
    params: int
    macs: int | None
    model_bytes: int
    model_bytes_note: str
    stats: VariantStats | None = None
    saving: Ratio | None = None
    saving_vs_best_fp32: Ratio | None = None
    best_fp32: str | None = None
    step_measurement: Measurement | None = None
    optimization_energy_j: float = 0.0
    payback_inferences: float | None = None
    payback_low: float | None = None
    payback_high: float | None = None
    reference: bool = False
    rank: int | None = None
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def inference_energy_per_image_j(self) -> float | None:
        return self.stats.j_per_image if self.stats is not None else None

    @property
    def inference_energy_provenance(self) -> str | None:
        return self.stats.energy_provenance if self.stats is not None else None

    @property
    def images_per_s(self) -> float | None:
        return self.stats.images_per_s if self.stats is not None else None

    @property
    def latency_p50_ms(self) -> float | None:
        return self.stats.latency_p50_ms if self.stats is not None else None

    @property
    def latency_p95_ms(self) -> float | None:
        return self.stats.latency_p95_ms if self.stats is not None else None

    @property
    def peak_rss_bytes(self) -> int | None:
        """Peak resident memory of the process tree over this variant's rounds."""
        if self.stats is None:
            return None
        peaks = [r.measurement.peak_rss_bytes for r in self.stats.rounds if r.measurement]
        return max((p for p in peaks if p is not None), default=None)

    @property
    def step_energy_j(self) -> float:
        m = self.step_measurement
        return m.total_energy_j if m is not None else 0.0

    @property
    def step_duration_s(self) -> float:
        m = self.step_measurement
        return m.duration_s if m is not None else 0.0

    @property
    def noisy(self) -> bool:
        return self.stats is not None and self.stats.noisy

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the shape of the trial record's ``VariantRecord``."""
        saving, best = self.saving, self.saving_vs_best_fp32
        return {
            "step": self.step,
            "applied": self.applied,
            "accuracy": self.accuracy,
            "params": self.params,
            "macs": self.macs,
            "model_bytes": self.model_bytes,
            "model_bytes_note": self.model_bytes_note,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "images_per_s": self.images_per_s,
            "inference_energy_per_image_j": self.inference_energy_per_image_j,
            "inference_energy_provenance": self.inference_energy_provenance,
            "peak_rss_bytes": self.peak_rss_bytes,
            "step_energy_j": self.step_energy_j,
            "step_duration_s": self.step_duration_s,
            "optimization_energy_j": self.optimization_energy_j,
            "payback_inferences": self.payback_inferences,
            "payback_low": self.payback_low,
            "payback_high": self.payback_high,
            "reference": self.reference,
            "cv_j_per_image": self.stats.cv_j_per_image if self.stats is not None else None,
            "saving": saving.saving if saving is not None else None,
            "saving_low": saving.low if saving is not None else None,
            "saving_high": saving.high if saving is not None else None,
            "saving_significant": saving.significant if saving is not None else None,
            "saving_vs_best_fp32": best.saving if best is not None else None,
            "saving_vs_best_fp32_low": best.low if best is not None else None,
            "saving_vs_best_fp32_high": best.high if best is not None else None,
            "best_fp32": self.best_fp32,
            "verdict": saving.verdict if saving is not None else None,
            "rank": self.rank,
            "noisy": self.noisy,
            "noise": list(self.stats.noise) if self.stats is not None else [],
            "notes": list(self.notes),
            "details": self.details,
        }


def fair_references(
    baseline: PreparedModel, configs: Sequence[TechniqueConfig], context: TechniqueContext
) -> dict[str, PreparedModel]:
    """The fp32 references a recipe's savings are also shown against: fp32 compiled (when a
    step runs compiled, as int8 does) and fp32 channels_last (when a step changes the layout)."""
    from wattwise.optimize.compiled import CompileConfig
    from wattwise.optimize.quantize import ChannelsLastConfig

    references: dict[str, PreparedModel] = {}
    if any(c.int8 or isinstance(c, CompileConfig) for c in configs):
        module = copy.deepcopy(baseline.module)
        references[COMPILED] = apply_technique(module, CompileConfig(), context)
    if any(isinstance(c, ChannelsLastConfig) for c in configs):
        module = copy.deepcopy(baseline.module)
        references[CHANNELS_LAST] = apply_technique(module, ChannelsLastConfig(), context)
    return references


def measure_variants(
    candidates: Sequence[Candidate],
    inputs: torch.Tensor,
    settings: CompareSettings,
    monitor: EnergyMonitor,
) -> tuple[list[VariantResult], Comparison]:
    """All candidates (the first is the fp32 eager baseline) measured together; returns their
    results in the same order and the comparison itself."""
    runners = {c.step: c.prepared for c in candidates}
    fp32 = [c.step for c in candidates if c.step == "baseline" or c.reference]
    comparison = compare_variants(
        runners, inputs, references=fp32, settings=settings, monitor=monitor
    )
    best = min(fp32, key=lambda name: _or_inf(comparison.variants[name].j_per_image))
    base_j = comparison.variants["baseline"].j_per_image or 0.0
    ranks = comparison.ranks()
    results = []
    for c in candidates:
        stats = comparison.variants[c.step]
        saving = comparison.ratio(c.step, "baseline") if c.step != "baseline" else None
        vs_best = comparison.ratio(c.step, best) if c.step != best else None
        payback: tuple[float | None, float | None, float | None] = (None, None, None)
        if c.step == "baseline":
            payback = (0.0, 0.0, 0.0)
        elif not c.reference and saving is not None and saving.significant:
            payback = _payback(c.optimization_energy_j, base_j, saving)
        result = _result(c, stats, saving, vs_best, best, payback)
        results.append(dataclasses.replace(result, rank=ranks[c.step]))
    return results, comparison


def _or_inf(value: float | None) -> float:
    return float("inf") if value is None else value


def unmeasured(candidates: Sequence[Candidate]) -> list[VariantResult]:
    """The candidates' results when inference is not measured (``inference_s`` 0)."""
    payback = (0.0, 0.0, 0.0)
    out = []
    for c in candidates:
        out.append(
            _result(c, None, None, None, None, payback if c.step == "baseline" else (None,) * 3)
        )
    return out


def _result(
    c: Candidate,
    stats: VariantStats | None,
    saving: Ratio | None,
    vs_best: Ratio | None,
    best: str | None,
    payback: tuple[float | None, float | None, float | None],
) -> VariantResult:
    return VariantResult(
        step=c.step,
        applied=c.prepared.applied,
        accuracy=c.accuracy,
        params=c.params,
        macs=c.macs,
        model_bytes=c.model_bytes,
        model_bytes_note=c.model_bytes_note,
        stats=stats,
        saving=saving,
        saving_vs_best_fp32=vs_best,
        best_fp32=best,
        step_measurement=c.step_measurement,
        optimization_energy_j=c.optimization_energy_j,
        payback_inferences=payback[0],
        payback_low=payback[1],
        payback_high=payback[2],
        reference=c.reference,
        notes=c.prepared.notes,
        details={
            **c.details,
            "description": c.prepared.description,
            "report": c.prepared.report.to_dict() if c.prepared.report is not None else {},
        },
    )


def _payback(
    spent_j: float, baseline_j: float, saving: Ratio
) -> tuple[float | None, float | None, float | None]:
    """Inferences to repay ``spent_j`` at a saving factor ``s`` (baseline J/image / variant
    J/image): ``spent / (baseline_j * (1 - 1/s))``; the interval from the saving's ends (the
    high end is ``None``, never, when the low saving end is at or below 1)."""

    def at(factor: float | None) -> float | None:
        if factor is None or factor <= 1 or baseline_j <= 0:
            return None
        return spent_j / (baseline_j * (1 - 1 / factor))

    return at(saving.saving), at(saving.high), at(saving.low)
