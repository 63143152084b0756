"""Efficiency metrics, CO2e, the accuracy–energy Pareto front, and a study analysed once.

    from wattwise.analysis.metrics import analyze, trial_metrics, summarize, pareto_front

    analysis = analyze(store.records(), carbon)   # ok trials: metrics, variants and fronts, once
    analysis.variants                             # one VariantSummary per configuration
    analysis.front_labels("inference")            # on the accuracy–J/image front
    rows = [trial_metrics(r, carbon) for r in store.records("ok")]

Efficiency is accuracy / energy, with the units in the name (docs/analysis.md lists each formula):
``accuracy_per_kj_train`` (accuracy per kJ of training energy) and ``accuracy_per_j_per_image``
(accuracy per J of inference energy per image). Both are properties of
:class:`~wattwise.experiment.TrialRecord`, computed from its stored primitives; analysis reads
them there and never computes them a second way. Accuracy is a fraction in [0, 1]; an accuracy
*point* is 0.01.

CO2e is not stored with a trial: :func:`co2e_g` computes it from the stored joules and the
study's carbon settings (a :class:`~wattwise.energy.carbon.CarbonConfig`), so that the grid's
intensity and the PUE are not part of a trial's identity.

Every view of a study (tables, plots, recommendation, report) reads one :class:`Analysis`, so a
Pareto front or a mean is computed in one place and the views cannot drift apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wattwise.analysis.base import Result, finite
from wattwise.analysis.stats import mean_ci
from wattwise.energy.carbon import CarbonConfig
from wattwise.experiment.record import TrialRecord

#: Spec fields that identify a configuration (a variant); seeds are its repetitions.
CONFIG_KEYS = ("dataset", "model", "technique", "batch_size", "lr", "epochs", "gpu_memory_gib")

EnergyBasis = Literal["inference", "train"]
#: The energy each basis ranks by: J per image of inference, or J of training.
BASIS_METRICS: dict[str, str] = {
    "inference": "inference_energy_per_image_j",
    "train": "train_energy_j",
}

Records = Iterable[TrialRecord | Mapping[str, Any]]


# --- single formulas ---------------------------------------------------------------------------


def energy_per_correct_j(energy_j: float | None, accuracy: float | None) -> float | None:
    """Energy per correct prediction: ``energy_j / accuracy`` (J). With the inference energy per
    image it is the inference cost of one correct answer; ``None`` at zero accuracy."""
    acc, energy = finite(accuracy), finite(energy_j)
    if acc is None or energy is None or acc <= 0:
        return None
    return energy / acc


def counts_for_co2e(phase: str) -> bool:
    """Whether a phase's energy enters a trial's CO2e: training and technique phases do; the
    inference benchmark windows (``inference``, ``inference/<step>``) are measurement, not work."""
    return phase != "inference" and not phase.startswith("inference/")


def co2e_g(
    record: TrialRecord | Mapping[str, Any], carbon: CarbonConfig | None = None
) -> float | None:
    """CO2-equivalent of a trial (g): the stored energy of the phases that count
    (:func:`counts_for_co2e`) x the carbon intensity x PUE of ``carbon``
    (``CarbonConfig.estimate``).

    Args:
        record: The trial.
        carbon: The study's carbon settings; ``None``: ``CarbonConfig()`` (world average
            intensity, PUE 1).

    Returns:
        Grams of CO2e, or ``None`` when no counted phase has an energy.
    """
    energies = [
        finite(phase.get("total_energy_j"))
        for name, phase in as_record(record).phases.items()
        if counts_for_co2e(name) and isinstance(phase, Mapping)
    ]
    known = [e for e in energies if e is not None]
    if not known:
        return None
    return (carbon or CarbonConfig()).estimate(sum(known)).co2e_g


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
    gpu_memory_gib: float | None
    accuracy: float | None
    train_energy_j: float | None
    inference_energy_per_image_j: float | None
    accuracy_per_kj_train: float | None
    accuracy_per_j_per_image: float | None
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


def trial_metrics(
    record: TrialRecord | Mapping[str, Any], carbon: CarbonConfig | None = None
) -> TrialMetrics:
    """The metrics of one trial: its stored numbers, its ratio properties, and the energy per
    correct prediction and CO2e (with ``carbon``, see :func:`co2e_g`)."""
    rec = as_record(record)
    spec = rec.spec
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
        gpu_memory_gib=spec.get("gpu_memory_gib"),
        accuracy=rec.accuracy,
        train_energy_j=rec.train_energy_j,
        inference_energy_per_image_j=rec.inference_energy_per_image_j,
        accuracy_per_kj_train=rec.accuracy_per_kj_train,
        accuracy_per_j_per_image=rec.accuracy_per_j_per_image,
        energy_per_correct_j=energy_per_correct_j(rec.inference_energy_per_image_j, rec.accuracy),
        co2e_g=co2e_g(rec, carbon),
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
    applied: str
    accuracy: float | None
    inference_energy_per_image_j: float | None
    optimization_energy_j: float | None
    payback_inferences: float | None
    inference_energy_provenance: str | None


def paybacks(record: TrialRecord | Mapping[str, Any]) -> list[Payback]:
    """The payback of each measured variant of a trial, from ``record.variants`` (empty when
    the record has none)."""
    rec = as_record(record)
    return [
        Payback(
            trial_id=rec.trial_id,
            step=v.step,
            applied=v.applied,
            accuracy=v.accuracy,
            inference_energy_per_image_j=v.inference_energy_per_image_j,
            optimization_energy_j=v.optimization_energy_j,
            payback_inferences=v.payback_inferences,
            inference_energy_provenance=v.inference_energy_provenance,
        )
        for v in rec.variants
    ]


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
        if finite(a) is not None and finite(e) is not None
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
    gpu_memory_gib: float | None
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
    energy_per_correct_j: float | None
    co2e_g: float | None
    chance_accuracy: float | None
    provenance: tuple[str, ...] = field(default=())

    def energy(self, by: EnergyBasis) -> float | None:
        """The energy the recommendation ranks by: J/image (``inference``) or J (``train``)."""
        return getattr(self, BASIS_METRICS[by])


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
        if values.get("gpu_memory_gib") is not None:
            parts.append(f"{values['gpu_memory_gib']:g} GiB cap")
    return " · ".join(parts) or "(unnamed)"


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(sum(known) / len(known)) if known else None


def summarize(
    records: Iterable[TrialRecord | Mapping[str, Any] | TrialMetrics],
    carbon: CarbonConfig | None = None,
) -> list[VariantSummary]:
    """One :class:`VariantSummary` per configuration of the ``ok`` trials (others are ignored),
    in the order configurations first appear. ``carbon``: for the CO2e of records (see
    :func:`co2e_g`); a :class:`TrialMetrics` already holds its CO2e."""
    groups: dict[tuple[Any, ...], list[TrialMetrics]] = defaultdict(list)
    for item in records:
        m = item if isinstance(item, TrialMetrics) else trial_metrics(item, carbon)
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
                energy_per_correct_j=_mean(t.energy_per_correct_j for t in trials),
                co2e_g=_mean(t.co2e_g for t in trials),
                chance_accuracy=_mean(t.chance_accuracy for t in trials),
                provenance=tuple(sorted(provenance)),
            )
        )
    return out


def pareto_fronts(
    variants: Sequence[VariantSummary], by: EnergyBasis
) -> tuple[tuple[int, ...], ...]:
    """The Pareto front of each dataset × model (in order of first appearance), as indices into
    ``variants`` by increasing energy (:func:`pareto_front` of accuracy and ``energy(by)``)."""
    tasks: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    for i, v in enumerate(variants):
        tasks[(v.dataset, v.model)].append(i)
    fronts = []
    for members in tasks.values():
        points = [(variants[i].accuracy, variants[i].energy(by)) for i in members]
        fronts.append(tuple(members[j] for j in pareto_front(points)))
    return tuple(fronts)


# --- a study, analysed once ---------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """The ``ok`` trials of a study, analysed once: what every view (tables, plots,
    recommendation, report) reads.

    Attributes:
        records: The ``ok`` trials, in store order.
        trials: Their metrics, in the same order.
        variants: One summary per configuration (:func:`summarize`).
        fronts: ``train``/``inference`` -> the Pareto front of each dataset × model, indices into
            ``variants`` (:func:`pareto_fronts`).
        carbon: The carbon settings CO2e was computed with.
    """

    records: tuple[TrialRecord, ...]
    trials: tuple[TrialMetrics, ...]
    variants: tuple[VariantSummary, ...]
    fronts: Mapping[str, tuple[tuple[int, ...], ...]]
    carbon: CarbonConfig

    def front_labels(self, by: EnergyBasis) -> tuple[str, ...]:
        """Labels of the variants on the ``by`` fronts."""
        return tuple(self.variants[i].label for front in self.fronts[by] for i in front)


def analyze(records: Records, carbon: CarbonConfig | None = None) -> Analysis:
    """Metrics, variants and Pareto fronts of the ``ok`` trials of ``records`` (see
    :class:`Analysis`); ``carbon`` as in :func:`co2e_g`."""
    carbon = carbon or CarbonConfig()
    ok = tuple(r for r in map(as_record, records) if r.status == "ok")
    trials = tuple(trial_metrics(r, carbon) for r in ok)
    variants = tuple(summarize(trials))
    fronts = {by: pareto_fronts(variants, by) for by in ("train", "inference")}
    return Analysis(ok, trials, variants, fronts, carbon)


def as_analysis(study: Analysis | Records) -> Analysis:
    """``study`` itself when it is an :class:`Analysis`, else :func:`analyze` of its records."""
    return study if isinstance(study, Analysis) else analyze(study)
