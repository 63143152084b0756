"""The recommendation: the cheapest variant whose accuracy stays within a floor of the baseline.

    from wattwise.analysis.recommend import recommend

    for rec in recommend(analysis.variants, floor_points=1.0, by="inference"):
        print(rec.message)

A ratio alone rewards useless tiny models (see :data:`RATIO_CAVEAT`), so the recommendation is
the cheapest variant whose accuracy stays within a floor below the baseline, never the best ratio;
variants below the floor or near chance are flagged, with why.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wattwise.analysis.base import Result
from wattwise.analysis.metrics import BASIS_METRICS, EnergyBasis, VariantSummary, config_label

#: What the report says next to every efficiency ranking.
RATIO_CAVEAT = (
    "An accuracy/energy ratio alone rewards useless tiny models: a model at chance accuracy that "
    "spends almost no energy has an excellent ratio. wattwise therefore recommends the cheapest "
    "variant whose accuracy stays within the floor below the baseline, and flags variants below "
    "the floor or near chance instead of ranking them by ratio."
)


@dataclass(frozen=True)
class FlaggedVariant(Result):
    """A variant excluded from the recommendation, with why (``below floor``, ``near chance``)."""

    label: str
    accuracy: float | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Recommendation(Result):
    """The cheapest acceptable variant of one dataset × model.

    Attributes:
        by: ``inference`` (ranked by J/image) or ``train`` (by training J).
        reference_label: The variant the floor is measured from: the most accurate baseline,
            or the most accurate variant when the study has no baseline for this dataset × model.
        floor_accuracy: ``reference accuracy - floor_points / 100``.
        chosen: The recommended variant, or ``None`` when none qualifies.
        saving: Fraction of the reference's energy that ``chosen`` saves (``None`` if unknown).
        best_ratio_label: The variant a ratio alone would pick, and whether it is flagged.
        flagged: Variants excluded because they are below the floor or near chance.
        message: One sentence for the report.
    """

    dataset: str | None
    model: str | None
    by: EnergyBasis
    energy_metric: str
    floor_points: float
    reference_label: str
    reference_kind: str
    reference_accuracy: float | None
    floor_accuracy: float | None
    chosen: VariantSummary | None
    chosen_energy: float | None
    reference_energy: float | None
    saving: float | None
    eligible: tuple[str, ...]
    flagged: tuple[FlaggedVariant, ...]
    best_ratio_label: str | None
    best_ratio_flagged: bool
    message: str
    caveat: str = RATIO_CAVEAT


def flag_reasons(
    variant: VariantSummary, floor_accuracy: float | None, *, chance_margin: float = 0.1
) -> tuple[str, ...]:
    """Why a variant must not be recommended: ``below floor`` (accuracy < floor) and ``near
    chance`` (accuracy < chance + ``chance_margin`` x (1 - chance), chance = 1 / classes)."""
    reasons = []
    acc = variant.accuracy
    if acc is None:
        return ("no accuracy",)
    if floor_accuracy is not None and acc < floor_accuracy - 1e-12:
        reasons.append(f"below floor ({acc:.2%} < {floor_accuracy:.2%})")
    chance = variant.chance_accuracy
    if chance is not None and acc < chance + chance_margin * (1 - chance):
        reasons.append(f"near chance ({acc:.2%}, chance {chance:.2%})")
    return tuple(reasons)


def recommend(
    variants: Sequence[VariantSummary],
    *,
    floor_points: float = 1.0,
    by: EnergyBasis = "inference",
    chance_margin: float = 0.1,
) -> list[Recommendation]:
    """The cheapest variant within ``floor_points`` accuracy points of the baseline, per dataset
    × model.

    Args:
        variants: From :func:`summarize`.
        floor_points: How many accuracy points (1 point = 0.01) below the reference a variant may
            lose; ``0`` demands at least the reference's accuracy.
        by: Rank by inference energy per image (``inference``) or training energy (``train``).
        chance_margin: A variant below ``chance + chance_margin x (1 - chance)`` is near chance.

    Raises:
        ValueError: ``by`` is not ``inference``/``train`` or ``floor_points`` is negative.
    """
    if by not in BASIS_METRICS:
        raise ValueError(f"by must be 'inference' or 'train', got {by!r}")
    if not (floor_points >= 0 and math.isfinite(floor_points)):
        raise ValueError(f"floor_points must be a number >= 0, got {floor_points!r}")
    groups: dict[tuple[Any, Any], list[VariantSummary]] = defaultdict(list)
    for v in variants:
        groups[(v.dataset, v.model)].append(v)
    return [
        _recommend_group(ds, model, group, floor_points, by, chance_margin)
        for (ds, model), group in groups.items()
    ]


def _recommend_group(
    dataset: Any,
    model: Any,
    group: list[VariantSummary],
    floor_points: float,
    by: EnergyBasis,
    chance_margin: float,
) -> Recommendation:
    metric = BASIS_METRICS[by]
    unit = "J/image" if by == "inference" else "J of training"
    scored = [v for v in group if v.accuracy is not None]
    baselines = [v for v in scored if v.technique == "baseline"]
    pool, kind = (baselines, "baseline") if baselines else (scored, "most accurate variant")
    reference = max(pool, key=lambda v: v.accuracy or 0.0) if pool else None
    ref_acc = reference.accuracy if reference else None
    floor = ref_acc - floor_points / 100 if ref_acc is not None else None
    flagged, eligible = [], []
    for v in group:
        reasons = flag_reasons(v, floor, chance_margin=chance_margin)
        if reasons:
            flagged.append(FlaggedVariant(v.label, v.accuracy, reasons))
        elif v.energy(by) is not None:
            eligible.append(v)
    chosen = min(eligible, key=lambda v: (v.energy(by), -(v.accuracy or 0))) if eligible else None
    ratio_metric = "accuracy_per_j_per_image" if by == "inference" else "accuracy_per_kj_train"
    rated = [v for v in group if getattr(v, ratio_metric) is not None]
    best_ratio = max(rated, key=lambda v: getattr(v, ratio_metric)) if rated else None
    best_ratio_flagged = best_ratio is not None and any(
        f.label == best_ratio.label for f in flagged
    )
    ref_energy = reference.energy(by) if reference else None
    chosen_energy = chosen.energy(by) if chosen else None
    saving = None
    if chosen_energy is not None and ref_energy:
        saving = 1 - chosen_energy / ref_energy
    where = config_label({"dataset": dataset, "model": model}, short=True)
    if reference is None:
        message = f"{where}: no trial with an accuracy; nothing to recommend."
    elif chosen is None:
        message = (
            f"{where}: no variant within {floor_points:g} point(s) of the {kind} "
            f"({ref_acc:.2%}) has a measured {unit}; nothing to recommend."
        )
    else:
        message = (
            f"{where}: use {chosen.label} — {chosen_energy:.4g} {unit}, accuracy "
            f"{chosen.accuracy:.2%} (floor {floor:.2%} = {kind} {ref_acc:.2%} − "
            f"{floor_points:g} point(s))"
        )
        if saving is not None and chosen is not reference:
            more_or_less = "less" if saving >= 0 else "more"
            message += (
                f", {abs(saving):.1%} {more_or_less} energy than the {kind} {reference.label}"
            )
        message += "."
    if best_ratio_flagged and best_ratio is not None:
        message += (
            f" The best ratio alone would pick {best_ratio.label}, which is flagged "
            f"({'; '.join(next(f.reasons for f in flagged if f.label == best_ratio.label))})."
        )
    return Recommendation(
        dataset=dataset,
        model=model,
        by=by,
        energy_metric=metric,
        floor_points=floor_points,
        reference_label=reference.label if reference else "",
        reference_kind=kind,
        reference_accuracy=ref_acc,
        floor_accuracy=floor,
        chosen=chosen,
        chosen_energy=chosen_energy,
        reference_energy=ref_energy,
        saving=saving,
        eligible=tuple(v.label for v in eligible),
        flagged=tuple(flagged),
        best_ratio_label=best_ratio.label if best_ratio else None,
        best_ratio_flagged=best_ratio_flagged,
        message=message,
    )
