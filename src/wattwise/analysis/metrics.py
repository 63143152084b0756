"""Efficiency metrics, the accuracy–energy Pareto front and the recommendation.

    from wattwise.analysis.metrics import trial_metrics, summarize, pareto_front, recommend

    rows = [trial_metrics(r) for r in store.records("ok")]  # one TrialMetrics per trial
    variants = summarize(store.records("ok"))  # one per configuration, seeds averaged
    front = pareto_front([(v.accuracy, v.train_energy_j) for v in variants])
    for rec in recommend(variants, floor_points=1.0, by="inference"):
        print(rec.message)

Efficiency is accuracy / energy, with the units in the name (docs/analysis.md lists each formula):
``accuracy_per_kj_train`` (accuracy per kJ of training energy), ``accuracy_per_j_per_image``
(accuracy per J of inference energy per image) and ``accuracy_per_kj_per_1000_images`` (the same
quantity in kJ per 1,000 images). Accuracy is a fraction in [0, 1]; an accuracy *point* is 0.01.

A ratio alone rewards useless tiny models (see :data:`RATIO_CAVEAT`), so the recommendation is
the cheapest variant whose accuracy stays within a floor below the baseline, never the best ratio.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wattwise.analysis.stats import Result, mean_ci
from wattwise.experiment.record import TrialRecord

#: What the report says next to every efficiency ranking.
RATIO_CAVEAT = (
    "An accuracy/energy ratio alone rewards useless tiny models: a model at chance accuracy that "
    "spends almost no energy has an excellent ratio. wattwise therefore recommends the cheapest "
    "variant whose accuracy stays within the floor below the baseline, and flags variants below "
    "the floor or near chance instead of ranking them by ratio."
)

#: Metric name -> (label, unit), for tables and axes.
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "fraction"),
    "train_energy_j": ("training energy", "J"),
    "inference_energy_per_image_j": ("inference energy per image", "J/image"),
    "accuracy_per_kj_train": ("accuracy per kJ of training", "1/kJ"),
    "accuracy_per_j_per_image": ("accuracy per J/image", "image/J"),
    "accuracy_per_kj_per_1000_images": ("accuracy per kJ per 1,000 images", "1/(kJ/1000 images)"),
    "energy_per_correct_j": ("inference energy per correct prediction", "J"),
    "co2e_g": ("CO2e of the whole trial", "g"),
}

#: Spec fields that identify a configuration (a variant); seeds are its repetitions.
CONFIG_KEYS = ("dataset", "model", "technique", "batch_size", "lr", "epochs", "gpu_memory_gb")

EnergyBasis = Literal["inference", "train"]
_BASIS_METRIC = {"inference": "inference_energy_per_image_j", "train": "train_energy_j"}


# --- single formulas ---------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def accuracy_per_kj_train(accuracy: float | None, train_energy_j: float | None) -> float | None:
    """Training efficiency: ``accuracy / (train_energy_j / 1000)`` (per kJ); ``None`` if unknown
    or the energy is not positive."""
    acc, energy = _finite(accuracy), _finite(train_energy_j)
    if acc is None or energy is None or energy <= 0:
        return None
    return acc / (energy / 1e3)


def accuracy_per_j_per_image(accuracy: float | None, j_per_image: float | None) -> float | None:
    """Inference efficiency: ``accuracy / inference_energy_per_image_j`` (images per J)."""
    acc, energy = _finite(accuracy), _finite(j_per_image)
    if acc is None or energy is None or energy <= 0:
        return None
    return acc / energy


def accuracy_per_kj_per_1000_images(
    accuracy: float | None, j_per_image: float | None
) -> float | None:
    """Inference efficiency per kJ spent on 1,000 images: ``accuracy / (j_per_image * 1000 /
    1000)``. Numerically equal to :func:`accuracy_per_j_per_image`; the unit reads better for
    large studies."""
    acc, energy = _finite(accuracy), _finite(j_per_image)
    if acc is None or energy is None or energy <= 0:
        return None
    return acc / (energy * 1000 / 1e3)


def energy_per_correct_j(energy_j: float | None, accuracy: float | None) -> float | None:
    """Energy per correct prediction: ``energy_j / accuracy`` (J). With the inference energy per
    image it is the inference cost of one correct answer; ``None`` at zero accuracy."""
    acc, energy = _finite(accuracy), _finite(energy_j)
    if acc is None or energy is None or acc <= 0:
        return None
    return energy / acc


def co2e_g(record: TrialRecord | Mapping[str, Any]) -> float | None:
    """CO2-equivalent of the whole trial (g): the sum of every phase's ``carbon.co2e_g``.

    Phases never overlap (the runner counts nothing twice), so their sum is the trial's total.
    ``None`` when no phase has a carbon estimate.
    """
    values = [
        _finite((phase.get("carbon") or {}).get("co2e_g"))
        for phase in as_record(record).phases.values()
        if isinstance(phase, Mapping)
    ]
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


# --- per trial ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialMetrics(Result):
    """The headline numbers of one finished trial, with units in the names."""

    trial_id: str
    status: str
    dataset: str | None
    model: str | None
    technique: str | None
    batch_size: int | None
    lr: float | None
    epochs: int | None
    seed: int | None
    gpu_memory_gb: float | None
    accuracy: float | None
    train_energy_j: float | None
    inference_energy_per_image_j: float | None
    accuracy_per_kj_train: float | None
    accuracy_per_j_per_image: float | None
    accuracy_per_kj_per_1000_images: float | None
    energy_per_correct_j: float | None
    co2e_g: float | None
    num_classes: int | None
    chance_accuracy: float | None
    train_energy_provenance: str | None
    inference_energy_provenance: str | None
    params: int | None = None
    model_bytes: int | None = None


def as_record(record: TrialRecord | Mapping[str, Any]) -> TrialRecord:
    """``record`` as a :class:`TrialRecord` (a dict from ``to_dict()`` or a store export)."""
    return record if isinstance(record, TrialRecord) else TrialRecord.from_dict(record)


def num_classes(record: TrialRecord | Mapping[str, Any]) -> int | None:
    """Number of classes from ``details["dataset"]["num_classes"]`` (``None`` if unrecorded)."""
    value = (as_record(record).details.get("dataset") or {}).get("num_classes")
    return int(value) if isinstance(value, int | float) and value >= 2 else None


def trial_metrics(record: TrialRecord | Mapping[str, Any]) -> TrialMetrics:
    """The metrics of one trial, recomputed from its accuracy and energies (not trusted from
    the stored ratios, which older records may lack)."""
    rec = as_record(record)
    spec = rec.spec
    acc = _finite(rec.accuracy)
    train_j = _finite(rec.train_energy_j)
    per_image = _finite(rec.inference_energy_per_image_j)
    classes = num_classes(rec)
    return TrialMetrics(
        trial_id=rec.trial_id,
        status=rec.status,
        dataset=spec.get("dataset"),
        model=spec.get("model"),
        technique=spec.get("technique"),
        batch_size=spec.get("batch_size"),
        lr=spec.get("lr"),
        epochs=spec.get("epochs"),
        seed=spec.get("seed"),
        gpu_memory_gb=spec.get("gpu_memory_gb"),
        accuracy=acc,
        train_energy_j=train_j,
        inference_energy_per_image_j=per_image,
        accuracy_per_kj_train=accuracy_per_kj_train(acc, train_j),
        accuracy_per_j_per_image=accuracy_per_j_per_image(acc, per_image),
        accuracy_per_kj_per_1000_images=accuracy_per_kj_per_1000_images(acc, per_image),
        energy_per_correct_j=energy_per_correct_j(per_image, acc),
        co2e_g=co2e_g(rec),
        num_classes=classes,
        chance_accuracy=1.0 / classes if classes else None,
        train_energy_provenance=rec.train_energy_provenance,
        inference_energy_provenance=rec.inference_energy_provenance,
        params=rec.params,
        model_bytes=rec.model_bytes,
    )


@dataclass(frozen=True)
class Payback(Result):
    """One recipe step of a trial: what optimizing cost and after how many inferences the saving
    per image repays it (``None``: it saves nothing per image and never pays back)."""

    trial_id: str
    step: str
    technique: str
    accuracy: float | None
    energy_per_image_j: float | None
    optimization_energy_j: float | None
    payback_inferences: float | None
    energy_provenance: str | None


def paybacks(record: TrialRecord | Mapping[str, Any]) -> list[Payback]:
    """The payback of each optimization step, from ``details["variants"]`` (empty when the
    record has none, e.g. a baseline-only trial from an older wattwise)."""
    rec = as_record(record)
    out = []
    for v in rec.details.get("variants") or []:
        if not isinstance(v, Mapping):
            continue
        out.append(
            Payback(
                trial_id=rec.trial_id,
                step=str(v.get("step", "")),
                technique=str(v.get("technique", "")),
                accuracy=_finite(v.get("accuracy")),
                energy_per_image_j=_finite(v.get("energy_per_image_j")),
                optimization_energy_j=_finite(v.get("optimization_energy_j")),
                payback_inferences=_finite(v.get("payback_inferences")),
                energy_provenance=v.get("energy_provenance"),
            )
        )
    return out


# --- Pareto front -------------------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the accuracy–energy Pareto front (maximize accuracy, minimize energy).

    A point is on the front when no other point is at least as accurate *and* at most as costly
    while being strictly better in one of the two. Ties: identical points are all kept (neither
    dominates the other); of two points with the same energy only the more accurate one stays, of
    two with the same accuracy only the cheaper one. Points with a missing or non-finite value are
    never on the front.

    Args:
        points: ``(accuracy, energy)`` pairs, any energy unit.

    Returns:
        Indices into ``points``, by increasing energy (then by index).
    """
    valid = [
        (e, -a, i)
        for i, (a, e) in enumerate(points)
        if _finite(a) is not None and _finite(e) is not None
    ]
    valid.sort()
    front: list[int] = []
    best: tuple[float, float] | None = None  # (energy, accuracy) of the last point kept
    for energy, neg_acc, index in valid:
        acc = -neg_acc
        if best is None or acc > best[1] or (acc == best[1] and energy == best[0]):
            front.append(index)
            best = (energy, acc)
    return front


# --- variants (configurations, seeds averaged) ---------------------------------------------------


@dataclass(frozen=True)
class VariantSummary(Result):
    """One configuration (everything but the seed), averaged over its seeds.

    Means are over the ``n`` trials; ``accuracy_low``/``accuracy_high`` are the 95 % t-interval
    (``None`` with a single seed). Efficiencies are means of the per-trial ratios.
    """

    label: str
    dataset: str | None
    model: str | None
    technique: str | None
    batch_size: int | None
    lr: float | None
    epochs: int | None
    gpu_memory_gb: float | None
    n: int
    seeds: tuple[Any, ...]
    trial_ids: tuple[str, ...]
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    train_energy_j: float | None
    inference_energy_per_image_j: float | None
    accuracy_per_kj_train: float | None
    accuracy_per_j_per_image: float | None
    accuracy_per_kj_per_1000_images: float | None
    energy_per_correct_j: float | None
    co2e_g: float | None
    chance_accuracy: float | None
    provenance: tuple[str, ...] = field(default=())

    def energy(self, by: EnergyBasis) -> float | None:
        """The energy the recommendation ranks by: J/image (``inference``) or J (``train``)."""
        return getattr(self, _BASIS_METRIC[by])


def config_label(values: Mapping[str, Any], *, short: bool = False) -> str:
    """``digits · small_cnn · baseline · bs 64 · lr 0.01 · 10 ep`` (``short``: the first three)."""
    parts = [str(values.get(k)) for k in ("dataset", "model", "technique") if values.get(k)]
    if not short:
        if values.get("batch_size") is not None:
            parts.append(f"bs {values['batch_size']}")
        if values.get("lr") is not None:
            parts.append(f"lr {values['lr']:g}")
        if values.get("epochs") is not None:
            parts.append(f"{values['epochs']} ep")
        if values.get("gpu_memory_gb") is not None:
            parts.append(f"{values['gpu_memory_gb']:g} GB cap")
    return " · ".join(parts) or "(unnamed)"


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(sum(known) / len(known)) if known else None


def summarize(
    records: Iterable[TrialRecord | Mapping[str, Any] | TrialMetrics],
) -> list[VariantSummary]:
    """One :class:`VariantSummary` per configuration of the ``ok`` trials (others are ignored),
    in the order configurations first appear."""
    groups: dict[tuple[Any, ...], list[TrialMetrics]] = defaultdict(list)
    for item in records:
        m = item if isinstance(item, TrialMetrics) else trial_metrics(item)
        if m.status == "ok":
            groups[tuple(getattr(m, k) for k in CONFIG_KEYS)].append(m)
    out = []
    for key, trials in groups.items():
        values = dict(zip(CONFIG_KEYS, key, strict=True))
        ci = mean_ci([t.accuracy for t in trials if t.accuracy is not None])
        provenance = {
            p
            for t in trials
            for p in (t.train_energy_provenance, t.inference_energy_provenance)
            if p
        }
        out.append(
            VariantSummary(
                label=config_label(values),
                **values,
                n=len(trials),
                seeds=tuple(t.seed for t in trials),
                trial_ids=tuple(t.trial_id for t in trials),
                accuracy=ci.mean,
                accuracy_low=ci.low,
                accuracy_high=ci.high,
                train_energy_j=_mean(t.train_energy_j for t in trials),
                inference_energy_per_image_j=_mean(t.inference_energy_per_image_j for t in trials),
                accuracy_per_kj_train=_mean(t.accuracy_per_kj_train for t in trials),
                accuracy_per_j_per_image=_mean(t.accuracy_per_j_per_image for t in trials),
                accuracy_per_kj_per_1000_images=_mean(
                    t.accuracy_per_kj_per_1000_images for t in trials
                ),
                energy_per_correct_j=_mean(t.energy_per_correct_j for t in trials),
                co2e_g=_mean(t.co2e_g for t in trials),
                chance_accuracy=_mean(t.chance_accuracy for t in trials),
                provenance=tuple(sorted(provenance)),
            )
        )
    return out


# --- recommendation -----------------------------------------------------------------------------


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
    if by not in _BASIS_METRIC:
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
    metric = _BASIS_METRIC[by]
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
