"""Full costs: every joule of a trial in one category, shared teachers charged 1/k, CO2e per
category, and the study's totals.

    shares = teacher_shares(records)          # trial_id -> TeacherShare (1/k of a teacher)
    costs = trial_costs(record, carbon, shares.get(record.trial_id))
    costs.cost_energy_j                       # training + technique + teacher share (J)
    study_costs(records, carbon)              # the study's totals, each teacher counted once

The categories come from the record (:func:`~wattwise.experiment.record.phase_category`):
training (the trial's own ``train`` and ``test`` phases; a trained baseline that k trials
compress is charged 1/k to each, see :func:`baseline_shares`), technique (``recipe/<step>``,
``teacher_logits``, and the teacher's training) and measurement (the benchmark windows). A
distillation teacher shared by the k trials whose ``details["teacher"]["key"]`` is the same is
charged ``details["teacher"]["train_energy_j"] / k`` to each, and once to the study. Efficiency
and payback use the cost (training + technique); CO2e is computed per category, and measurement
is shown apart, never in a CO2e total.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wattwise.analysis.base import Result, finite
from wattwise.energy.carbon import CarbonConfig
from wattwise.experiment.record import TrialRecord, phase_category


def as_record(record: TrialRecord | Mapping[str, Any]) -> TrialRecord:
    """``record`` as a :class:`TrialRecord` (a dict from ``to_dict()`` or a store export)."""
    return record if isinstance(record, TrialRecord) else TrialRecord.from_dict(record)


@dataclass(frozen=True)
class TeacherShare(Result):
    """What one trial is charged for a training it shares — a distillation teacher, or a
    trained baseline that several techniques compress: ``train_energy_j / trials``."""

    key: str
    train_energy_j: float
    trials: int

    @property
    def energy_j(self) -> float:
        return self.train_energy_j / self.trials


def _teacher(record: TrialRecord) -> tuple[str, float] | None:
    teacher = record.details.get("teacher")
    if not isinstance(teacher, Mapping) or not teacher.get("key"):
        return None  # no teacher, or a checkpoint teacher: nothing trained for it
    energy = finite(teacher.get("train_energy_j"))
    return (str(teacher["key"]), energy) if energy is not None else None


def _baseline(record: TrialRecord) -> tuple[str, float] | None:
    baseline = record.details.get("baseline")
    if not isinstance(baseline, Mapping) or not baseline.get("key"):
        return None  # a distilled student, or a record from before trainings were shared
    energy = finite(baseline.get("training_energy_j"))
    return (str(baseline["key"]), energy) if energy is not None else None


def teacher_shares(records: Iterable[TrialRecord | Mapping[str, Any]]) -> dict[str, TeacherShare]:
    """Trial id -> its share of the teacher it distilled from, over the ``ok`` ``records``: the
    teacher's training energy (``details["teacher"]["train_energy_j"]``) / the number of trials
    with the same ``details["teacher"]["key"]``. Trials without a trained teacher are absent."""
    return _shares(records, _teacher)


def baseline_shares(
    records: Iterable[TrialRecord | Mapping[str, Any]],
) -> dict[str, TeacherShare]:
    """Trial id -> its share of the trained baseline it compressed (train once, compress many;
    :mod:`wattwise.experiment.baselines`), over the ``ok`` ``records``: the training's energy
    (``details["baseline"]["training_energy_j"]``: phases ``train`` + ``test`` of the trial that
    trained it) / the number of trials with the same ``details["baseline"]["key"]``."""
    return _shares(records, _baseline)


def _shares(
    records: Iterable[TrialRecord | Mapping[str, Any]],
    read: Callable[[TrialRecord], tuple[str, float] | None],
) -> dict[str, TeacherShare]:
    users: dict[str, list[str]] = defaultdict(list)
    energy: dict[str, float] = {}
    for rec in map(as_record, records):
        found = read(rec) if rec.status == "ok" else None
        if found is not None:
            users[found[0]].append(rec.trial_id)
            energy.setdefault(found[0], found[1])
    return {
        trial_id: TeacherShare(key, energy[key], len(ids))
        for key, ids in users.items()
        for trial_id in ids
    }


@dataclass(frozen=True)
class TrialCosts(Result):
    """One trial's energy by category (J) and its CO2e (g).

    Attributes:
        training_energy_j: The trial's own training (phases ``train``, ``test``).
        technique_energy_j: Its technique phases plus ``teacher_share_j``.
        teacher_share_j: Its share of a trained teacher (0 without one).
        measurement_energy_j: The benchmark windows (never in a CO2e total).
        cost_energy_j: training + technique: what efficiency and payback use.
        total_energy_j: cost + measurement.
        co2e_training_g: CO2e of the training energy.
        co2e_technique_g: CO2e of the technique energy.
        co2e_g: Their sum (``None`` when no training or technique energy is known).
        teacher_trials: How many trials share its teacher (0 without one).
    """

    training_energy_j: float
    technique_energy_j: float
    teacher_share_j: float
    measurement_energy_j: float
    cost_energy_j: float
    total_energy_j: float
    co2e_training_g: float | None
    co2e_technique_g: float | None
    co2e_g: float | None
    teacher_trials: int = 0


def _has_energy(record: TrialRecord, category: str) -> bool:
    return any(
        finite(e) is not None and phase_category(name) == category
        for name, e in record.phase_energy_j().items()
    )


def trial_costs(
    record: TrialRecord | Mapping[str, Any],
    carbon: CarbonConfig | None = None,
    teacher: TeacherShare | None = None,
    baseline: TeacherShare | None = None,
) -> TrialCosts:
    """The costs of one trial (see :class:`TrialCosts`).

    Args:
        record: The trial.
        carbon: The study's carbon settings; ``None``: ``CarbonConfig()`` (world average, PUE 1).
        teacher: Its teacher share (:func:`teacher_shares`); ``None``: a trained teacher is
            charged in full, as if no other trial shared it.
        baseline: Its share of a shared trained baseline (:func:`baseline_shares`): its
            training energy is then that share, whichever trial ran the training; ``None``: the
            training it records is charged in full.
    """
    rec = as_record(record)
    carbon = carbon or CarbonConfig()
    if teacher is None and (found := _teacher(rec)) is not None:
        teacher = TeacherShare(found[0], found[1], 1)
    if baseline is None and (found := _baseline(rec)) is not None:
        baseline = TeacherShare(found[0], found[1], 1)
    share = teacher.energy_j if teacher is not None else 0.0
    training = baseline.energy_j if baseline is not None else rec.training_energy_j
    technique = rec.technique_energy_j + share
    known_training = baseline is not None or _has_energy(rec, "training")
    known_technique = teacher is not None or _has_energy(rec, "technique")
    co2e_training = carbon.estimate(training).co2e_g if known_training else None
    co2e_technique = carbon.estimate(technique).co2e_g if known_technique else None
    co2e = None
    if known_training or known_technique:
        co2e = carbon.estimate(training + technique).co2e_g
    measurement = rec.measurement_energy_j
    return TrialCosts(
        training_energy_j=training,
        technique_energy_j=technique,
        teacher_share_j=share,
        measurement_energy_j=measurement,
        cost_energy_j=training + technique,
        total_energy_j=training + technique + measurement,
        co2e_training_g=co2e_training,
        co2e_technique_g=co2e_technique,
        co2e_g=co2e,
        teacher_trials=teacher.trials if teacher is not None else 0,
    )


def co2e_g(
    record: TrialRecord | Mapping[str, Any], carbon: CarbonConfig | None = None
) -> float | None:
    """CO2-equivalent of a trial (g): its training and technique energy (a trained teacher in
    full; :func:`trial_costs` charges a shared one 1/k) x the carbon intensity x PUE of
    ``carbon``; the benchmark windows are not counted. ``None`` when no counted energy is known.
    """
    return trial_costs(record, carbon).co2e_g


@dataclass(frozen=True)
class StudyCosts(Result):
    """The study's energy (J) and CO2e (g) over its ``ok`` trials, each teacher counted once.

    Attributes:
        teacher_energy_j: The distinct teachers' training, once each.
        teachers: How many distinct teachers were trained.
        teacher_training_avoided_j: Training the shared teachers saved: ``(k - 1) x`` a teacher's
            training energy for a teacher shared by k trials.
        trainings: How many distinct trainings the study ran (each shared baseline once).
        training_avoided_j: Training that reusing trained baselines saved: ``(k - 1) x`` the
            training energy of a baseline that k trials compressed.
    """

    trials: int
    training_energy_j: float
    technique_energy_j: float
    teacher_energy_j: float
    measurement_energy_j: float
    cost_energy_j: float
    total_energy_j: float
    co2e_training_g: float
    co2e_technique_g: float
    co2e_g: float
    teachers: int
    teacher_training_avoided_j: float
    trainings: int = 0
    training_avoided_j: float = 0.0


def study_costs(
    records: Iterable[TrialRecord | Mapping[str, Any]], carbon: CarbonConfig | None = None
) -> StudyCosts:
    """The totals of the ``ok`` ``records`` (see :class:`StudyCosts`)."""
    carbon = carbon or CarbonConfig()
    ok = [r for r in map(as_record, records) if r.status == "ok"]
    shares = teacher_shares(ok)
    teachers = {s.key: s for s in shares.values()}
    trained = baseline_shares(ok)
    baselines = {s.key: s for s in trained.values()}
    training = sum(r.training_energy_j for r in ok if r.trial_id not in trained)
    training += sum(s.train_energy_j for s in baselines.values())
    technique = sum(r.technique_energy_j for r in ok)
    teacher = sum(s.train_energy_j for s in teachers.values())
    measurement = sum(r.measurement_energy_j for r in ok)
    return StudyCosts(
        trials=len(ok),
        training_energy_j=training,
        technique_energy_j=technique + teacher,
        teacher_energy_j=teacher,
        measurement_energy_j=measurement,
        cost_energy_j=training + technique + teacher,
        total_energy_j=training + technique + teacher + measurement,
        co2e_training_g=carbon.estimate(training).co2e_g,
        co2e_technique_g=carbon.estimate(technique + teacher).co2e_g,
        co2e_g=carbon.estimate(training + technique + teacher).co2e_g,
        teachers=len(teachers),
        teacher_training_avoided_j=sum(
            (s.trials - 1) * s.train_energy_j for s in teachers.values()
        ),
        trainings=len(baselines) + sum(1 for r in ok if r.trial_id not in trained),
        training_avoided_j=sum((s.trials - 1) * s.train_energy_j for s in baselines.values()),
    )
