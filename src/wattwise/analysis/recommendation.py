"""The recommendation: the cheapest variant that is significantly cheaper than the baseline at an
accuracy not significantly below the floor.

    from wattwise.analysis.recommendation import recommend

    for rec in recommend(analysis.variants, floor_points=1.0, by="inference"):
        print(rec.message)       # "... use X — 2.31x less J/image (2.10 to 2.54) ..." or
                                 # "no variant is significantly cheaper than the baseline ..."

Decisions come from significant differences only. A variant qualifies when its accuracy is not
significantly below the floor (the upper end of its Wilson interval reaches it) and its saving
against the baseline is significant (its interval lies above 1): from the interleaved comparison
recorded with the trial (``VariantRecord.saving_*``), else — for records without one — Welch's
t over seeds on log energy, and the recommendation says which. "No variant is significantly
cheaper than the baseline" is a result. A ratio alone rewards useless tiny models
(:data:`RATIO_CAVEAT`): variants below the floor or near chance are flagged, with why.

Ranked by training energy (``by="train"``), only configurations whose training differs from the
baseline's are compared: those that share dataset, model, training settings and seeds ran the
identical training, so they are listed as not ranked, and configurations that share one training
are ranked by that training's mean energy (ties go to the more accurate).

There is one recommendation per dataset × model and device: a variant is only compared with a
reference measured on its own device (``VariantSummary.device_id``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from wattwise.analysis.base import Result
from wattwise.analysis.intervals import Interval, difference, welch_ratio
from wattwise.analysis.metrics import (
    BASIS_METRICS,
    EnergyBasis,
    VariantSummary,
    config_label,
    device_label,
)
from wattwise.decide import choose_with_ties

if TYPE_CHECKING:
    from wattwise.experiment.record import TrialRecord

#: What the report says next to every efficiency ranking.
RATIO_CAVEAT = (
    "An accuracy/energy ratio alone rewards useless tiny models: a model at chance accuracy that "
    "spends almost no energy has an excellent ratio. wattwise therefore recommends the cheapest "
    "variant that is significantly cheaper than the baseline at an accuracy not significantly "
    "below the floor, and flags variants below the floor or near chance instead of ranking them "
    "by ratio."
)

#: How a saving from an interleaved comparison is described.
COMPARISON_METHOD = (
    "interleaved comparison with the trial's own eager baseline (paired rounds; seeds combined: "
    "geometric mean, interval spanning every seed's)"
)


@dataclass(frozen=True)
class FlaggedVariant(Result):
    """A variant excluded from the recommendation, with why (``below floor``, ``near chance``)."""

    label: str
    accuracy: float | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Candidate(Result):
    """A variant that passed the accuracy checks, with its saving against the baseline
    (``saving.estimate`` > 1: less energy) and whether that saving is significant."""

    label: str
    saving: Interval
    significant: bool
    energy: float | None


@dataclass(frozen=True)
class Recommendation(Result):
    """The cheapest significantly cheaper variant of one dataset × model (× device: variants
    are only compared with a reference measured on their own device).

    Attributes:
        by: ``inference`` (ranked by J/image) or ``train`` (by training J).
        reference_label: The variant the floor and savings are measured from: the most accurate
            baseline, or the most accurate variant when the study has no baseline for this
            dataset × model.
        floor_accuracy: ``reference accuracy - floor_points / 100``.
        chosen: The recommended variant, or ``None`` when none is significantly cheaper.
        saving: The chosen variant's saving (reference energy / its energy, with interval).
        accuracy_change: Its accuracy minus the reference's, with Newcombe's interval.
        payback: Inferences until its extra one-off energy (technique, and training where it
            differs) is repaid, from the saving's interval (``high`` ``None``: never).
        candidates: Every variant that passed the accuracy checks, with its saving.
        not_ranked: Variants with the reference's identical training (``by="train"`` only).
        tied: Eligible variants whose saving does not differ significantly from the chosen
            one's (their intervals overlap); the most accurate of them was chosen.
        flagged: Variants excluded because they are below the floor or near chance.
        noisy: A variant of this dataset × model was measured under noise (``noise``: why).
        message: One paragraph for the report.
        device: The device of this group (``unknown device`` where unrecorded) where the study's
            variants ran on several devices, one recommendation each; ``None`` where on one.
        saved_models: The chosen variant's model files the study kept, one per seed, relative to
            the study folder (:func:`with_saved_models`; :mod:`wattwise.experiment.kept_models`).
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
    saving: Interval | None
    accuracy_change: Interval | None
    payback: Interval | None
    candidates: tuple[Candidate, ...]
    not_ranked: tuple[str, ...]
    eligible: tuple[str, ...]
    tied: tuple[str, ...]
    flagged: tuple[FlaggedVariant, ...]
    best_ratio_label: str | None
    best_ratio_flagged: bool
    noisy: bool
    noise: tuple[str, ...]
    message: str
    caveat: str = RATIO_CAVEAT
    device: str | None = None
    saved_models: tuple[str, ...] = ()


def flag_reasons(
    variant: VariantSummary, floor_accuracy: float | None, *, chance_margin: float = 0.1
) -> tuple[str, ...]:
    """Why a variant must not be recommended: ``below floor`` (significantly: the upper end of
    its accuracy interval is below the floor; without an interval, its accuracy is) and ``near
    chance`` (accuracy < chance + ``chance_margin`` x (1 - chance), chance = 1 / classes)."""
    reasons = []
    acc = variant.accuracy
    if acc is None:
        return ("no accuracy",)
    high = variant.accuracy_high
    if floor_accuracy is not None and (acc if high is None else high) < floor_accuracy - 1e-12:
        upper = f", interval up to {high:.2%}" if high is not None else ""
        reasons.append(f"below floor ({acc:.2%}{upper} < {floor_accuracy:.2%})")
    chance = variant.chance_accuracy
    if chance is not None and acc < chance + chance_margin * (1 - chance):
        reasons.append(f"near chance ({acc:.2%}, chance {chance:.2%})")
    return tuple(reasons)


def describe(saving: Interval, unit: str) -> str:
    """``2.31x less J/image (2.10 to 2.54, 95 %)``, or ``no significant difference (...)``."""
    if saving.estimate is None:
        return f"{unit} unknown ({saving.reason})"
    if saving.low is None or saving.high is None:
        return f"{saving.estimate:.3g}x, not testable ({saving.reason})"
    ci = f"{saving.low:.3g} to {saving.high:.3g}, {saving.confidence * 100:.0f} %"
    if saving.low > 1:
        return f"{saving.estimate:.3g}x less {unit} ({ci})"
    if saving.high < 1:
        return f"{1 / saving.estimate:.3g}x more {unit} ({ci})"
    return f"no significant difference in {unit} ({saving.estimate:.3g}x, {ci})"


def recommend(
    variants: Sequence[VariantSummary],
    *,
    floor_points: float = 1.0,
    by: EnergyBasis = "inference",
    chance_margin: float = 0.1,
) -> list[Recommendation]:
    """The cheapest significantly cheaper variant within ``floor_points`` accuracy points of the
    baseline, per dataset × model and device (see the module docstring).

    Args:
        variants: From :func:`~wattwise.analysis.metrics.summarize`.
        floor_points: How many accuracy points (1 point = 0.01) below the reference a variant may
            lose; ``0`` demands the reference's accuracy (within the variant's interval).
        by: Rank by inference energy per image (``inference``) or training energy (``train``).
        chance_margin: A variant below ``chance + chance_margin x (1 - chance)`` is near chance.

    Raises:
        ValueError: ``by`` is not ``inference``/``train`` or ``floor_points`` is negative.
    """
    if by not in BASIS_METRICS:
        raise ValueError(f"by must be 'inference' or 'train', got {by!r}")
    if not (floor_points >= 0 and math.isfinite(floor_points)):
        raise ValueError(f"floor_points must be a number >= 0, got {floor_points!r}")
    groups: dict[tuple[Any, ...], list[VariantSummary]] = defaultdict(list)
    for v in variants:
        groups[(v.dataset, v.model, v.device_id)].append(v)
    several = len({device for _, _, device in groups}) > 1  # then one per device, named
    recommendations = []
    for (ds, model, device), group in groups.items():
        name = device_label(device) if several else None
        recommendations.append(
            _recommend_group(ds, model, group, floor_points, by, chance_margin, name)
        )
    return recommendations


def _saving(v: VariantSummary, reference: VariantSummary, by: EnergyBasis) -> Interval:
    if by == "inference" and v.saving is not None:
        return Interval(v.saving, v.saving_low, v.saving_high, COMPARISON_METHOD, v.n)
    if by == "inference":
        found = welch_ratio(reference.j_per_image_values, v.j_per_image_values)
        note = " (no interleaved comparison recorded)"
    else:
        found = welch_ratio(reference.training_energy_values, v.training_energy_values)
        note = " (training J)"
    return Interval(found.estimate, found.low, found.high, found.method + note, found.n,
                    found.confidence, found.reason)  # fmt: skip


def _payback(v: VariantSummary, reference: VariantSummary, saving: Interval) -> Interval | None:
    """Inferences until ``v``'s extra one-off energy is repaid by its saving per image."""
    base = v.baseline_j_per_image if v.saving is not None else reference.energy("inference")
    if v.training_group == reference.training_group:
        extra = v.technique_energy_j
    elif v.cost_energy_j is not None and reference.cost_energy_j is not None:
        extra = v.cost_energy_j - reference.cost_energy_j
    else:
        extra = None
    if extra is None or base is None or saving.estimate is None:
        return None
    method = "extra training + technique energy / (baseline J/image x (1 - 1/saving))"

    def at(s: float | None) -> float | None:
        if s is None or s <= 1:
            return None  # saves nothing per image: never
        return max(extra, 0.0) / (base * (1 - 1 / s))  # type: ignore[operator]

    return Interval(at(saving.estimate), at(saving.high), at(saving.low), method, v.n)


def _recommend_group(
    dataset: Any,
    model: Any,
    group: list[VariantSummary],
    floor_points: float,
    by: EnergyBasis,
    chance_margin: float,
    device: str | None = None,
) -> Recommendation:
    unit = "J/image" if by == "inference" else "training J"
    scored = [v for v in group if v.accuracy is not None]
    baselines = [v for v in scored if v.technique == "baseline"]
    pool, kind = (baselines, "baseline") if baselines else (scored, "most accurate variant")
    reference = max(pool, key=lambda v: v.accuracy or 0.0) if pool else None
    ref_acc = reference.accuracy if reference else None
    floor = ref_acc - floor_points / 100 if ref_acc is not None else None
    training_j: dict[str, list[float]] = defaultdict(list)
    for v in group:
        training_j[v.training_group] += [e for e in v.training_energy_values if e is not None]
    flagged, candidates, not_ranked = [], [], []
    for v in group:
        reasons = flag_reasons(v, floor, chance_margin=chance_margin)
        if reasons:
            flagged.append(FlaggedVariant(v.label, v.accuracy, reasons))
        elif reference is None or v is reference:
            continue
        elif by == "train" and v.training_group == reference.training_group:
            not_ranked.append(v.label)
        else:
            saving = _saving(v, reference, by)
            energy = v.energy(by)
            if by == "train" and training_j[v.training_group]:
                energy = sum(training_j[v.training_group]) / len(training_j[v.training_group])
            significant = saving.low is not None and saving.low > 1
            candidates.append(Candidate(v.label, saving, significant, energy))
    eligible = [c for c in candidates if c.significant and c.energy is not None]
    by_label = {v.label: v for v in group}
    best, tied = _choose(eligible, by_label)
    chosen = by_label[best.label] if best is not None else None
    saving = best.saving if best is not None else None
    acc_change = payback = None
    if chosen is not None and reference is not None:
        acc_change = difference(_accuracy(chosen), _accuracy(reference))
        payback = _payback(chosen, reference, saving) if by == "inference" else None  # type: ignore[arg-type]
    ratio_metric = "accuracy_per_j_per_image" if by == "inference" else "accuracy_per_kj_cost"
    rated = [v for v in group if getattr(v, ratio_metric) is not None]
    best_ratio = max(rated, key=lambda v: getattr(v, ratio_metric)) if rated else None
    best_ratio_flagged = best_ratio is not None and any(
        f.label == best_ratio.label for f in flagged
    )
    noise = tuple(dict.fromkeys(n for v in group for n in v.noise))
    rec: dict[str, Any] = dict(
        dataset=dataset, model=model, by=by, energy_metric=BASIS_METRICS[by],
        floor_points=floor_points, reference_label=reference.label if reference else "",
        reference_kind=kind, reference_accuracy=ref_acc, floor_accuracy=floor, chosen=chosen,
        chosen_energy=best.energy if best is not None else None,
        reference_energy=reference.energy(by) if reference else None, saving=saving,
        accuracy_change=acc_change, payback=payback, candidates=tuple(candidates),
        not_ranked=tuple(not_ranked), eligible=tuple(c.label for c in eligible), tied=tied,
        flagged=tuple(flagged), best_ratio_label=best_ratio.label if best_ratio else None,
        best_ratio_flagged=best_ratio_flagged, noisy=any(v.noisy for v in group), noise=noise,
        device=device,
    )  # fmt: skip
    return Recommendation(**rec, message=_message(rec, unit, best_ratio))


def _choose(
    eligible: list[Candidate], by_label: dict[str, VariantSummary]
) -> tuple[Candidate | None, tuple[str, ...]]:
    """The chosen candidate and the labels of those it does not differ from significantly
    (:func:`wattwise.decide.choose_with_ties`); by energy where a saving has no interval."""
    if not eligible:
        return None, ()

    def accuracy(c: Candidate) -> float:
        return by_label[c.label].accuracy or 0.0

    if any(c.saving.low is None or c.saving.high is None for c in eligible):
        return min(eligible, key=lambda c: (c.energy, -accuracy(c))), ()
    best, tied = choose_with_ties(
        eligible,
        lambda c: (c.saving.estimate, c.saving.low, c.saving.high),  # type: ignore[return-value]
        accuracy,
    )
    return best, tuple(c.label for c in tied)


def _accuracy(v: VariantSummary) -> Interval:
    return Interval(v.accuracy, v.accuracy_low, v.accuracy_high, v.accuracy_method,
                    v.accuracy_images)  # fmt: skip


def _message(rec: dict[str, Any], unit: str, best_ratio: VariantSummary | None) -> str:
    where = config_label(
        {"dataset": rec["dataset"], "model": rec["model"]}, short=True, device=rec["device"]
    )
    kind, ref_acc, floor = rec["reference_kind"], rec["reference_accuracy"], rec["floor_accuracy"]
    chosen, saving = rec["chosen"], rec["saving"]
    points = f"{rec['floor_points']:g} point(s)"
    if ref_acc is None:
        message = f"{where}: no trial with an accuracy; nothing to recommend."
    elif chosen is None:
        message = (
            f"{where}: no variant is significantly cheaper than the {kind} "
            f"{rec['reference_label']} in {unit} at an accuracy within {points} of it "
            f"({ref_acc:.2%}); keep the {kind}."
        )
        tested = [f"{c.label}: {describe(c.saving, unit)}" for c in rec["candidates"]]
        if tested:
            methods = dict.fromkeys(c.saving.method for c in rec["candidates"])
            message += f" Tested: {'; '.join(tested)}. Savings from: {'; '.join(methods)}."
    else:
        change = rec["accuracy_change"]
        message = (
            f"{where}: use {chosen.label} — {describe(saving, unit)} than the {kind} "
            f"{rec['reference_label']}; accuracy {chosen.accuracy:.2%} (floor {floor:.2%} = "
            f"{kind} {ref_acc:.2%} − {points}), change {_points(change)}."
        )
        if rec["payback"] is not None:
            message += f" {payback_sentence(rec['payback'])}"
        if rec["tied"]:
            message += (
                f" Not significantly different from it (overlapping intervals): "
                f"{', '.join(rec['tied'])}; {chosen.label} is the most accurate of them."
            )
        message += f" Saving from: {saving.method}."
    if rec["not_ranked"]:
        message += (
            f" Not ranked by training energy: {', '.join(rec['not_ranked'])} ran the identical "
            f"training as the {kind} (same dataset, model, training settings and seeds)."
        )
    if rec["best_ratio_flagged"] and best_ratio is not None:
        reasons = next(f.reasons for f in rec["flagged"] if f.label == best_ratio.label)
        message += (
            f" The best ratio alone would pick {best_ratio.label}, which is flagged "
            f"({'; '.join(reasons)})."
        )
    if rec["noisy"]:
        message += (
            f" NOISY measurements ({len(rec['noise'])} flag(s), listed under the headline's "
            "warning): the verdict may not hold; rerun on a quiet machine."
        )
    return message


def _points(change: Interval | None) -> str:
    """``-0.50 points (-2.10 to +1.10)``: an accuracy change in points with its interval."""
    if change is None or change.estimate is None:
        return "unknown"
    text = f"{change.estimate * 100:+.2f} points"
    if change.low is not None and change.high is not None:
        text += f" ({change.low * 100:+.2f} to {change.high * 100:+.2f}, Newcombe)"
    return text


def payback_sentence(payback: Interval) -> str:
    """``Pays back after 1.2e+05 inferences (1.0e+05 to 1.5e+05).``"""
    if payback.estimate is None:
        return "Never pays back (no saving per image)."
    high = f"{payback.high:.3g}" if payback.high is not None else "never"
    low = f"{payback.low:.3g}" if payback.low is not None else "never"
    return f"Pays back after {payback.estimate:.3g} inferences ({low} to {high})."


def with_saved_models(
    recommendations: Iterable[Recommendation], records: Iterable[TrialRecord]
) -> tuple[Recommendation, ...]:
    """Each recommendation with the model files its chosen variant's trials kept (``records``:
    the trial records, whose ``details["model"]`` says where), named at the end of its message:
    what to deploy of the recommendation, without training it again."""
    kept = {
        r.trial_id: r.details["model"]["path"]
        for r in records
        if isinstance(r.details.get("model"), dict) and r.details["model"].get("saved")
    }
    named = []
    for rec in recommendations:
        ids = rec.chosen.trial_ids if rec.chosen is not None else ()
        paths = tuple(kept[i] for i in ids if i in kept)
        if paths:
            what = "Its saved model" if len(paths) == 1 else "Its saved models (one per seed)"
            message = f"{rec.message} {what}: {', '.join(paths)}."
            rec = replace(rec, saved_models=paths, message=message)
        named.append(rec)
    return tuple(named)
