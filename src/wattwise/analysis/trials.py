"""Per-trial metrics: the headline numbers, costs, accuracy interval and comparison of one trial.

    m = trial_metrics(record, carbon, teacher_shares(records).get(record.trial_id))
    m.cost_energy_j, m.accuracy_low, m.saving, m.verdict, m.device_id
    paybacks(record)                          # every measured variant, with its comparison

:mod:`wattwise.analysis.metrics` summarizes these per configuration and analyses a study once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wattwise.analysis.base import Result, finite
from wattwise.analysis.costs import TeacherShare, as_record, trial_costs
from wattwise.analysis.intervals import accuracy_interval
from wattwise.energy.carbon import CarbonConfig
from wattwise.experiment.comparison_columns import ComparisonColumns, comparison_columns
from wattwise.experiment.record import TrialRecord, accuracy_per_kj_train
from wattwise.experiment.spec import training_key

# --- single formulas ---------------------------------------------------------------------------


def energy_per_correct_j(energy_j: float | None, accuracy: float | None) -> float | None:
    """Energy per correct prediction: ``energy_j / accuracy`` (J). With the inference energy per
    image it is the inference cost of one correct answer; ``None`` at zero accuracy."""
    acc, energy = finite(accuracy), finite(energy_j)
    if acc is None or energy is None or acc <= 0:
        return None
    return energy / acc


#: What a record without a ``device_id`` (an older store) is counted as: one device, unknown.
UNKNOWN_DEVICE = "unknown device"


def device_label(device_id: str | None) -> str:
    """``device_id`` for a label or a sentence; :data:`UNKNOWN_DEVICE` where none was recorded."""
    return device_id or UNKNOWN_DEVICE


# --- per trial ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialMetrics(ComparisonColumns, Result):
    """The headline numbers of one finished trial, with units in the names.

    Energy by category (:mod:`wattwise.analysis.costs`): ``training_energy_j`` (the trial's
    training and test passes), ``technique_energy_j`` (its technique phases plus its share of a
    trained teacher, ``teacher_share_j``), ``measurement_energy_j`` (benchmark windows),
    ``cost_energy_j`` = training + technique and ``total_energy_j`` = cost + measurement.
    ``train_energy_j`` is the stored ``train`` phase. ``accuracy_low``/``accuracy_high``: the
    trial's Wilson interval. ``saving*`` and ``verdict``: the final variant's interleaved
    comparison with its eager baseline (``None`` where none was recorded). ``device_id``: the
    device it ran on (``environment["device_id"]``, :mod:`wattwise.experiment.environment`;
    ``None`` in older stores): energy is only ever averaged and compared within one device.
    ``gpu_power_limit_w``: the GPU power limit it ran under (``None``: the GPU's own).
    """

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
    test_images: int | None = None
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    training_energy_j: float | None = None
    technique_energy_j: float | None = None
    teacher_share_j: float | None = None
    measurement_energy_j: float | None = None
    cost_energy_j: float | None = None
    total_energy_j: float | None = None
    co2e_training_g: float | None = None
    co2e_technique_g: float | None = None
    accuracy_per_kj_cost: float | None = None
    training_key: str = ""
    baseline_j_per_image: float | None = None
    device_id: str | None = None
    gpu_power_limit_w: float | None = None


def num_classes(record: TrialRecord | Mapping[str, Any]) -> int | None:
    """Number of classes from ``details["dataset"]["num_classes"]`` (``None`` if unrecorded)."""
    value = (as_record(record).details.get("dataset") or {}).get("num_classes")
    return int(value) if isinstance(value, int | float) and value >= 2 else None


def images_in_test_split(record: TrialRecord | Mapping[str, Any]) -> int | None:
    """Size of the test split, ``details["dataset"]["test_images"]`` (``None`` if unrecorded)."""
    value = (as_record(record).details.get("dataset") or {}).get("test_images")
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 1
    return int(value) if ok else None


def trial_metrics(
    record: TrialRecord | Mapping[str, Any],
    carbon: CarbonConfig | None = None,
    teacher: TeacherShare | None = None,
    baseline: TeacherShare | None = None,
) -> TrialMetrics:
    """The metrics of one trial: its stored numbers, its ratio properties, the energy per
    correct prediction, its costs and CO2e (with ``carbon``, its ``teacher`` share and its
    share of a shared trained ``baseline``, see :func:`~wattwise.analysis.costs.trial_costs`),
    its Wilson accuracy interval and its final variant's comparison."""
    rec = as_record(record)
    spec = rec.spec
    classes = num_classes(rec)
    images = images_in_test_split(rec)
    acc = accuracy_interval([(rec.accuracy, images)])
    costs = trial_costs(rec, carbon, teacher, baseline)
    final = rec.final_variant
    compared = final if final is not None and final.saving is not None else None
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
        gpu_power_limit_w=spec.get("gpu_power_limit_w"),
        accuracy=rec.accuracy,
        train_energy_j=rec.train_energy_j,
        inference_energy_per_image_j=rec.inference_energy_per_image_j,
        accuracy_per_kj_train=rec.accuracy_per_kj_train,
        accuracy_per_j_per_image=rec.accuracy_per_j_per_image,
        energy_per_correct_j=energy_per_correct_j(rec.inference_energy_per_image_j, rec.accuracy),
        co2e_g=costs.co2e_g,
        num_classes=classes,
        chance_accuracy=1.0 / classes if classes else None,
        train_energy_provenance=rec.train_energy_provenance,
        inference_energy_provenance=rec.inference_energy_provenance,
        params=rec.params,
        model_bytes=rec.model_bytes,
        test_images=images,
        accuracy_low=acc.low,
        accuracy_high=acc.high,
        training_energy_j=costs.training_energy_j,
        technique_energy_j=costs.technique_energy_j,
        teacher_share_j=costs.teacher_share_j,
        measurement_energy_j=costs.measurement_energy_j,
        cost_energy_j=costs.cost_energy_j,
        total_energy_j=costs.total_energy_j,
        co2e_training_g=costs.co2e_training_g,
        co2e_technique_g=costs.co2e_technique_g,
        accuracy_per_kj_cost=accuracy_per_kj_train(rec.accuracy, costs.cost_energy_j),
        training_key=training_key(spec),
        baseline_j_per_image=rec.variants[0].inference_energy_per_image_j if rec.variants else None,
        device_id=str(rec.environment.get("device_id") or "") or None,
        **comparison_columns(
            compared,
            noisy=rec.noisy or any(v.noisy for v in rec.variants),
            noise=rec.noise or tuple(f"{v.step}: {n}" for v in rec.variants for n in v.noise),
        ),
    )


@dataclass(frozen=True)
class Payback(ComparisonColumns, Result):
    """One measured variant of a trial (a recipe step or a fair-baseline reference): what
    optimizing cost, after how many inferences the saving per image repays it (``None``: never,
    or the saving is not significant), and its comparison with the eager baseline and the best
    fp32 variant (``saving*``, ``verdict``, ``noisy``; ``None`` where none was recorded)."""

    trial_id: str
    step: str
    applied: str
    accuracy: float | None
    inference_energy_per_image_j: float | None
    optimization_energy_j: float | None
    payback_inferences: float | None
    inference_energy_provenance: str | None
    reference: bool = False
    payback_low: float | None = None
    payback_high: float | None = None


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
            reference=v.reference,
            payback_low=v.payback_low,
            payback_high=v.payback_high,
            **comparison_columns(v),
        )
        for v in rec.variants
    ]
