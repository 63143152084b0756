"""A study analysed once: variants (configurations over seeds), the accuracy–energy Pareto front.

    from wattwise.analysis.metrics import analyze, summarize, pareto_front

    analysis = analyze(store.records(), carbon)   # ok trials: metrics, variants, fronts, costs
    analysis.variants                             # one VariantSummary per configuration
    analysis.front_labels("inference")            # on the accuracy–J/image front
    analysis.costs                                # the study's totals, each teacher once
    analysis.devices                              # (device_id, trials): energy is per device

Per-trial metrics are in :mod:`wattwise.analysis.trials` (re-exported here), costs in
:mod:`wattwise.analysis.costs`, intervals in :mod:`wattwise.analysis.intervals`. Efficiency is
accuracy / energy with the units in the name (docs/analysis.md lists each formula): the record's
``accuracy_per_kj_train`` and ``accuracy_per_j_per_image`` properties, and
``accuracy_per_kj_cost`` (per kJ of training + technique, the same formula); accuracy is a
fraction in [0, 1] and an accuracy *point* is 0.01.

CO2e is not stored with a trial: it is computed from the stored joules and the study's carbon
settings (a :class:`~wattwise.energy.carbon.CarbonConfig`), so that the grid's intensity and the
PUE are not part of a trial's identity.

Every view of a study (tables, plots, recommendation, report) reads one :class:`Analysis`, so a
Pareto front or a mean is computed in one place and the views cannot drift apart.

Energy is never pooled across devices: a configuration's trials are averaged per device (the
trial's ``device_id``; records without one are one unknown device), and Pareto fronts are drawn
per dataset × model × device. Where a study's trials ran on several devices, each variant's label
ends with its device.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wattwise.analysis.base import Result, finite
from wattwise.analysis.costs import (
    StudyCosts,
    as_record,
    baseline_shares,
    co2e_g,
    study_costs,
    teacher_shares,
)
from wattwise.analysis.intervals import accuracy_interval
from wattwise.analysis.trials import (
    Payback,
    TrialMetrics,
    device_label,
    energy_per_correct_j,
    images_in_test_split,
    num_classes,
    paybacks,
    training_key,
    trial_metrics,
)
from wattwise.energy.carbon import CarbonConfig
from wattwise.experiment.comparison_columns import ComparisonColumns, comparison_columns
from wattwise.experiment.record import TrialRecord

#: Re-exported: the per-trial names (``analysis.trials``, ``analysis.costs``) read from here too.
__all__ = [
    "Payback",
    "TrialMetrics",
    "as_record",
    "co2e_g",
    "device_label",
    "energy_per_correct_j",
    "images_in_test_split",
    "num_classes",
    "paybacks",
    "training_key",
    "trial_metrics",
]  # fmt: skip

#: What identifies a configuration (a variant): its spec fields and the device it ran on (energy
#: is never averaged across devices); seeds are its repetitions.
CONFIG_KEYS = (
    "dataset", "model", "technique", "batch_size", "lr", "epochs", "gpu_memory_gib", "device_id",
    "gpu_power_limit_w",
)  # fmt: skip

EnergyBasis = Literal["inference", "train"]
#: The energy each basis ranks by: J per image of inference, or J of training.
BASIS_METRICS: dict[str, str] = {
    "inference": "inference_energy_per_image_j",
    "train": "train_energy_j",
}

Records = Iterable[TrialRecord | Mapping[str, Any]]


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
class VariantSummary(ComparisonColumns, Result):
    """One configuration (everything but the seed), averaged over its seeds.

    Means are over the ``n`` trials. ``accuracy`` and ``accuracy_low``/``accuracy_high``: the
    seeds' correct predictions pooled into one Wilson interval (``accuracy_method`` says so);
    without recorded test-image counts, the mean and no interval. Efficiencies are means of the
    per-trial ratios. ``saving*``: the seeds' interleaved comparisons of the final variant with
    its eager baseline combined (geometric mean; the interval spans every seed's interval, so it
    excludes 1 only when every seed's does, on the same side); ``None`` unless every trial has
    one; ``rank``: the worst of the seeds' ranks (``verdict`` stays ``None``: the recommendation
    describes combined savings).
    ``j_per_image_values``/``training_energy_values`` (``train_energy_j``): one per trial,
    for the test over seeds where no comparison was recorded. ``training_group``: the training
    settings the configuration's trials share (:func:`training_key` without the seed).
    ``device_id``: the device its trials ran on (``None``: not recorded); ``label`` ends with it
    where the study's trials ran on several devices. ``gpu_power_limit_w``: the GPU power limit
    its trials ran under (``None``: the GPU's own), a configuration axis like the memory cap.
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
    accuracy_method: str = ""
    accuracy_images: int = 0
    training_energy_j: float | None = None
    technique_energy_j: float | None = None
    measurement_energy_j: float | None = None
    cost_energy_j: float | None = None
    total_energy_j: float | None = None
    co2e_training_g: float | None = None
    co2e_technique_g: float | None = None
    accuracy_per_kj_cost: float | None = None
    training_group: str = ""
    training_keys: tuple[str, ...] = ()
    j_per_image_values: tuple[float | None, ...] = ()
    training_energy_values: tuple[float | None, ...] = ()
    baseline_j_per_image: float | None = None
    device_id: str | None = None
    gpu_power_limit_w: float | None = None

    def energy(self, by: EnergyBasis) -> float | None:
        """The energy the recommendation ranks by: J/image (``inference``) or J (``train``)."""
        return getattr(self, BASIS_METRICS[by])


def config_label(
    values: Mapping[str, Any], *, short: bool = False, device: str | None = None
) -> str:
    """``digits · small_cnn · baseline · bs 64 · lr 0.01 · 10 ep`` (``short``: the first three),
    then ``device`` where given (the analysis gives it where a study ran on several devices)."""
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
        if values.get("gpu_power_limit_w") is not None:
            parts.append(f"{values['gpu_power_limit_w']:g} W limit")
    label = " · ".join(parts) or "(unnamed)"
    return f"{label} · {device}" if device else label


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(sum(known) / len(known)) if known else None


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _combined(trials: Sequence[TrialMetrics], prefix: str) -> dict[str, float | None]:
    """The seeds' ratio ``prefix`` (``saving``, ``saving_vs_best_fp32``) combined: geometric
    mean, and the interval spanning every seed's interval; ``None`` unless every seed has one."""
    rows = [(getattr(t, prefix), getattr(t, f"{prefix}_low"), getattr(t, f"{prefix}_high"))
            for t in trials]  # fmt: skip
    names = (prefix, f"{prefix}_low", f"{prefix}_high")
    if not rows or any(None in r or min(r) <= 0 for r in rows):
        return dict.fromkeys(names)
    return dict(zip(names, (_geomean([r[0] for r in rows]), min(r[1] for r in rows),
                            max(r[2] for r in rows)), strict=True))  # fmt: skip


def summarize(
    records: Iterable[TrialRecord | Mapping[str, Any] | TrialMetrics],
    carbon: CarbonConfig | None = None,
) -> list[VariantSummary]:
    """One :class:`VariantSummary` per configuration and device of the ``ok`` trials (others are
    ignored), in the order configurations first appear; labels end with the device where the
    trials ran on several. ``carbon``: for the CO2e of records (see
    :func:`~wattwise.analysis.costs.trial_costs`; records are charged their teacher shares among
    ``records``); a :class:`TrialMetrics` already holds its CO2e."""
    items = list(records)
    raw = [r for r in items if not isinstance(r, TrialMetrics)]
    shares, trained = teacher_shares(raw), baseline_shares(raw)
    groups: dict[tuple[Any, ...], list[TrialMetrics]] = defaultdict(list)
    for item in items:
        if isinstance(item, TrialMetrics):
            m = item
        else:
            rec = as_record(item)
            m = trial_metrics(rec, carbon, shares.get(rec.trial_id), trained.get(rec.trial_id))
        if m.status == "ok":
            groups[tuple(getattr(m, k) for k in CONFIG_KEYS)].append(m)
    several = len({ts[0].device_id for ts in groups.values()}) > 1
    return [
        _summary(dict(zip(CONFIG_KEYS, key, strict=True)), ts, several)
        for key, ts in groups.items()
    ]


def _summary(values: dict[str, Any], trials: list[TrialMetrics], several: bool) -> VariantSummary:
    acc = accuracy_interval([(t.accuracy, t.test_images) for t in trials])
    provenance = {
        p for t in trials for p in (t.train_energy_provenance, t.inference_energy_provenance) if p
    }
    saving = _combined(trials, "saving")
    best = _combined(trials, "saving_vs_best_fp32")
    significant = (
        None
        if saving["saving"] is None
        else bool(saving["saving_low"] > 1 or saving["saving_high"] < 1)  # type: ignore[operator]
    )
    ranks = [t.rank for t in trials if t.rank is not None]
    fp32 = {t.best_fp32 for t in trials if t.best_fp32}
    keys = tuple(dict.fromkeys(t.training_key for t in trials))
    group = {k: v for k, v in json.loads(keys[0]).items() if k != "seed"} if keys else {}
    return VariantSummary(
        label=config_label(values, device=device_label(values["device_id"]) if several else None),
        **values,
        n=len(trials),
        seeds=tuple(t.seed for t in trials),
        trial_ids=tuple(t.trial_id for t in trials),
        accuracy=acc.estimate,
        accuracy_low=acc.low,
        accuracy_high=acc.high,
        accuracy_method=acc.method if acc.reason is None else f"mean ({acc.reason})",
        accuracy_images=acc.n,
        train_energy_j=_mean(t.train_energy_j for t in trials),
        inference_energy_per_image_j=_mean(t.inference_energy_per_image_j for t in trials),
        accuracy_per_kj_train=_mean(t.accuracy_per_kj_train for t in trials),
        accuracy_per_j_per_image=_mean(t.accuracy_per_j_per_image for t in trials),
        energy_per_correct_j=_mean(t.energy_per_correct_j for t in trials),
        co2e_g=_mean(t.co2e_g for t in trials),
        chance_accuracy=_mean(t.chance_accuracy for t in trials),
        provenance=tuple(sorted(provenance)),
        training_energy_j=_mean(t.training_energy_j for t in trials),
        technique_energy_j=_mean(t.technique_energy_j for t in trials),
        measurement_energy_j=_mean(t.measurement_energy_j for t in trials),
        cost_energy_j=_mean(t.cost_energy_j for t in trials),
        total_energy_j=_mean(t.total_energy_j for t in trials),
        co2e_training_g=_mean(t.co2e_training_g for t in trials),
        co2e_technique_g=_mean(t.co2e_technique_g for t in trials),
        accuracy_per_kj_cost=_mean(t.accuracy_per_kj_cost for t in trials),
        training_group=json.dumps(group, sort_keys=True),
        training_keys=keys,
        j_per_image_values=tuple(t.inference_energy_per_image_j for t in trials),
        training_energy_values=tuple(t.train_energy_j for t in trials),
        baseline_j_per_image=_mean(t.baseline_j_per_image for t in trials),
        **comparison_columns(
            None,
            **saving,
            **best,
            saving_significant=significant,
            best_fp32=", ".join(sorted(fp32)) or None,
            rank=max(ranks) if ranks and len(ranks) == len(trials) else None,
            noisy=any(t.noisy for t in trials),
            noise=tuple(dict.fromkeys(n for t in trials for n in t.noise)),
        ),
    )


def pareto_fronts(
    variants: Sequence[VariantSummary], by: EnergyBasis
) -> tuple[tuple[int, ...], ...]:
    """The Pareto front of each dataset × model × device (in order of first appearance), as
    indices into ``variants`` by increasing energy (:func:`pareto_front` of accuracy and
    ``energy(by)``)."""
    tasks: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, v in enumerate(variants):
        tasks[(v.dataset, v.model, v.device_id)].append(i)
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
        trials: Their metrics, in the same order (each charged its teacher share).
        variants: One summary per configuration (:func:`summarize`).
        fronts: ``train``/``inference`` -> the Pareto front of each dataset × model × device,
            indices into ``variants`` (:func:`pareto_fronts`).
        carbon: The carbon settings CO2e was computed with.
        costs: The study's energy and CO2e totals, each teacher counted once.
    """

    records: tuple[TrialRecord, ...]
    trials: tuple[TrialMetrics, ...]
    variants: tuple[VariantSummary, ...]
    fronts: Mapping[str, tuple[tuple[int, ...], ...]]
    carbon: CarbonConfig
    costs: StudyCosts | None = None

    @property
    def devices(self) -> tuple[tuple[str | None, int], ...]:
        """``(device_id, trials)`` of each device the ``ok`` trials ran on, in order of first
        appearance (``None``: trials that recorded no device, counted as one)."""
        counts: dict[str | None, int] = defaultdict(int)
        for t in self.trials:
            counts[t.device_id] += 1
        return tuple(counts.items())

    def front_labels(self, by: EnergyBasis) -> tuple[str, ...]:
        """Labels of the variants on the ``by`` fronts."""
        return tuple(self.variants[i].label for front in self.fronts[by] for i in front)


def analyze(records: Records, carbon: CarbonConfig | None = None) -> Analysis:
    """Metrics, variants, Pareto fronts and costs of the ``ok`` trials of ``records`` (see
    :class:`Analysis`); ``carbon`` as in :func:`~wattwise.analysis.costs.trial_costs`."""
    carbon = carbon or CarbonConfig()
    ok = tuple(r for r in map(as_record, records) if r.status == "ok")
    shares, trained = teacher_shares(ok), baseline_shares(ok)
    trials = tuple(
        trial_metrics(r, carbon, shares.get(r.trial_id), trained.get(r.trial_id)) for r in ok
    )
    variants = tuple(summarize(trials))
    fronts = {by: pareto_fronts(variants, by) for by in ("train", "inference")}
    return Analysis(ok, trials, variants, fronts, carbon, study_costs(ok, carbon))


def as_analysis(study: Analysis | Records) -> Analysis:
    """``study`` itself when it is an :class:`Analysis`, else :func:`analyze` of its records."""
    return study if isinstance(study, Analysis) else analyze(study)
