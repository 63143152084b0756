"""How well the live predictions of training energy and time held, over a study.

    errors = prediction_errors(records)        # one per (trial, prediction made)
    prediction_summary(records)                # per epoch after which it was made: n, mean |error|

A trial's predictions are in ``details["prediction"]`` (see :mod:`wattwise.train.predict`): the
total energy and time of its ``train`` phase (training + validation passes, not the test pass)
as predicted after each of its first epochs. The outcome is the same phase as measured:
``train_energy_j`` and ``phases["train"]["duration_s"]``. The error is relative and signed,
``(predicted - measured) / measured``; the summary gives the mean of its absolute value and how
many outcomes fell inside the predicted interval.

Only ``ok`` trials that ran every epoch they were set to count: a prediction is made for the run
as configured, and a run that stopped early (early stopping) is another run; those are counted
apart (``stopped_early``), and so are records without predictions (written before predictions
existed, or single-epoch runs, which have nothing to predict).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wattwise.analysis.base import Result, finite
from wattwise.analysis.costs import as_record
from wattwise.experiment.record import TrialRecord
from wattwise.train.predict import Prediction

#: The predictions the summary reports: made after these epochs.
SUMMARY_EPOCHS: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class PredictionError(Result):
    """One prediction of one trial against its outcome.

    Attributes:
        energy_error / duration_error: ``(predicted - measured) / measured`` (``None`` when
            either is unknown or the outcome is not positive).
        energy_in_interval / duration_in_interval: The outcome lies in the predicted interval.
    """

    trial_id: str
    after_epoch: int
    epochs: int
    method: str
    predicted_energy_j: float | None
    measured_energy_j: float | None
    energy_error: float | None
    energy_in_interval: bool | None
    predicted_duration_s: float
    measured_duration_s: float | None
    duration_error: float | None
    duration_in_interval: bool | None


@dataclass(frozen=True)
class PredictionSummary(Result):
    """The predictions made after ``after_epoch`` epochs, over the study's comparable trials.

    Attributes:
        n: Trials with such a prediction and a measured outcome.
        energy_n / duration_n: Of them, those whose energy / time error is known.
        energy_mae / duration_mae: Mean absolute relative error (a fraction), or ``None``.
        energy_covered / duration_covered: Outcomes inside the predicted interval.
    """

    after_epoch: int
    n: int
    energy_n: int
    energy_mae: float | None
    energy_covered: int
    duration_n: int
    duration_mae: float | None
    duration_covered: int


@dataclass(frozen=True)
class PredictionReport(Result):
    """What the report shows: a summary per epoch in :data:`SUMMARY_EPOCHS`, and the trials
    left out (``stopped_early``: ran fewer epochs than set; ``without``: no prediction)."""

    summaries: tuple[PredictionSummary, ...]
    trials: int
    stopped_early: int
    without: int


def _relative(predicted: float | None, measured: float | None) -> float | None:
    if predicted is None or measured is None or not measured > 0:
        return None
    return (predicted - measured) / measured


def _inside(low: Any, high: Any, outcome: float | None) -> bool | None:
    low, high = finite(low), finite(high)
    if low is None or high is None or outcome is None:
        return None
    return low <= outcome <= high


def stored_predictions(record: TrialRecord) -> list[Prediction]:
    """The predictions kept in ``record.details["prediction"]`` (unreadable entries skipped)."""
    entries = record.details.get("prediction")
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return []
    found = []
    for entry in entries:
        if isinstance(entry, Mapping):
            try:
                found.append(Prediction.from_dict(entry))
            except ValueError:
                continue
    return found


def trial_prediction_errors(record: TrialRecord | Mapping[str, Any]) -> list[PredictionError]:
    """Each stored prediction of one trial against its measured ``train`` phase (any status:
    callers decide which trials count)."""
    rec = as_record(record)
    train = rec.phases.get("train")
    measured_s = finite(train.get("duration_s")) if isinstance(train, Mapping) else None
    measured_j = finite(rec.train_energy_j)
    errors = []
    for p in stored_predictions(rec):
        errors.append(
            PredictionError(
                trial_id=rec.trial_id,
                after_epoch=p.after_epoch,
                epochs=p.epochs,
                method=p.method,
                predicted_energy_j=p.predicted_energy_j,
                measured_energy_j=measured_j,
                energy_error=_relative(p.predicted_energy_j, measured_j),
                energy_in_interval=_inside(p.energy_low_j, p.energy_high_j, measured_j)
                if p.predicted_energy_j is not None
                else None,
                predicted_duration_s=p.predicted_duration_s,
                measured_duration_s=measured_s,
                duration_error=_relative(p.predicted_duration_s, measured_s),
                duration_in_interval=_inside(p.duration_low_s, p.duration_high_s, measured_s),
            )
        )
    return errors


def _ran_all(record: TrialRecord, errors: Sequence[PredictionError]) -> bool:
    return all(len(record.history) == e.epochs for e in errors)


def prediction_errors(records: Iterable[TrialRecord | Mapping[str, Any]]) -> list[PredictionError]:
    """Every prediction of the ``ok`` trials that ran all their epochs, against its outcome."""
    errors = []
    for rec in map(as_record, records):
        found = trial_prediction_errors(rec) if rec.status == "ok" else []
        if found and _ran_all(rec, found):
            errors += found
    return errors


def _mean_abs(values: Sequence[float | None]) -> tuple[int, float | None]:
    known = [abs(v) for v in values if v is not None]
    return len(known), (sum(known) / len(known) if known else None)


def summarize_errors(errors: Sequence[PredictionError], after_epoch: int) -> PredictionSummary:
    """The errors of the predictions made after ``after_epoch`` epochs."""
    chosen = [e for e in errors if e.after_epoch == after_epoch]
    energy_n, energy_mae = _mean_abs([e.energy_error for e in chosen])
    duration_n, duration_mae = _mean_abs([e.duration_error for e in chosen])
    return PredictionSummary(
        after_epoch=after_epoch,
        n=len({e.trial_id for e in chosen}),
        energy_n=energy_n,
        energy_mae=energy_mae,
        energy_covered=sum(e.energy_in_interval is True for e in chosen),
        duration_n=duration_n,
        duration_mae=duration_mae,
        duration_covered=sum(e.duration_in_interval is True for e in chosen),
    )


def prediction_summary(
    records: Iterable[TrialRecord | Mapping[str, Any]],
    after: Sequence[int] = SUMMARY_EPOCHS,
) -> PredictionReport:
    """The prediction error over a study: per epoch in ``after``, over the ``ok`` trials that
    ran all their epochs, and how many trials were left out and why."""
    ok = [r for r in map(as_record, records) if r.status == "ok"]
    stopped = without = 0
    errors: list[PredictionError] = []
    for rec in ok:
        found = trial_prediction_errors(rec)
        if not found:
            without += 1
        elif not _ran_all(rec, found):
            stopped += 1
        else:
            errors += found
    summaries = tuple(s for s in (summarize_errors(errors, k) for k in after) if s.n)
    return PredictionReport(summaries, len(ok), stopped, without)
