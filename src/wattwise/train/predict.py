"""Predicting a training run's total energy and time from its first epochs.

    from wattwise.train.predict import RunPredictor, predictions
    predictor = RunPredictor(epochs=10)
    prediction = predictor.add(epoch_record)      # after epochs 1..PREDICT_EPOCHS, else None
    predictions(result.history, 10)               # the same predictions, made afterwards

What is predicted is the run's ``fit`` window, the trial's ``train`` phase: every epoch's
training **and** validation pass, not the final test pass (phase ``test``) nor anything after.
The outcome it is compared with is ``TrialRecord.train_energy_j`` and the ``train`` phase's
``duration_s``. The prediction assumes the run goes all ``epochs``: a run that stops early
(early stopping, divergence) is a different run, and analysis leaves it out.

Method, for energy and time alike, after ``k`` of ``E`` epochs (``R = E - k`` to go)::

    total = (what the k finished epochs cost) + R x (per-epoch estimate)

- **Epoch 1 carries warm-up** (first allocations, lazy initialization, autotuning), so once a
  second epoch exists the per-epoch estimate is the mean of epochs 2..k; epoch 1 is used only
  while it is the only one.
- **The interval** is on the part to go (what has been spent is known):

  - ``k = 1`` (method ``first_epoch_band``): ``R x e1 x (1 - FIRST_EPOCH_BAND_LOW)`` to
    ``R x e1 x (1 + FIRST_EPOCH_BAND_HIGH)``, a stated band, wider below than above since epoch
    1's warm-up makes it dearer than the epochs that follow;
  - ``k = 2`` (``steady_band``): one steady epoch, no spread yet: ``R x e2 x (1 ± STEADY_BAND)``;
  - ``k >= 3`` (``steady_t``): a 95 % t prediction interval for the sum of ``R`` further epochs
    from the ``n = k - 1`` steady epochs, mean ``m`` and standard deviation ``s``:
    ``R m ± t(0.975, n - 1) s sqrt(R + R² / n)`` (the spread of ``R`` epochs plus the
    uncertainty of ``m``), never narrower than ``R m x (1 ± STEADY_BAND)``: the spread of the
    epochs so far cannot see a change of the machine's load that is yet to come.

The bands come from digits runs on the shared 2-core development machine (docs/benchmarks.md,
"Prediction"), where the mean cost of the epochs to go was 0.64 to 1.28 x epoch 1 and 0.67 to
1.32 x epoch 2, but 1.5 and 1.9 in one run that another process slowed down; elsewhere they are
a stated assumption, and the study report shows how well they held
(``wattwise.analysis.prediction``).

On this CPU epoch 1 cost about what the later epochs cost, except in a process's first training
(20-50 % more at 8 px); leaving it out of the estimate also guards against the larger warm-up of
GPU runs (CUDA context, autotuning) and compiled models. Energy is left out (``None``) when an
epoch's energy is unavailable or not a finite number; time is always predicted.

Nothing here imports torch or prints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

#: Predictions are made after each of the first this many epochs (when epochs remain to go).
PREDICT_EPOCHS = 3

#: After epoch 1: the epochs to go may cost this much less than epoch 1 (a fraction).
FIRST_EPOCH_BAND_LOW = 0.40
#: After epoch 1: the epochs to go may cost this much more than epoch 1 (a fraction).
FIRST_EPOCH_BAND_HIGH = 0.30
#: From epoch 2 on: the epochs to go may differ from the steady mean by this fraction (at least).
STEADY_BAND = 0.35
#: Confidence of the t interval.
CONFIDENCE = 0.95

Method = Literal["first_epoch_band", "steady_band", "steady_t"]


@dataclass(frozen=True)
class Interval:
    """A predicted total and its interval (``low <= value <= high``), in one unit."""

    value: float
    low: float
    high: float

    def __contains__(self, outcome: object) -> bool:
        return isinstance(outcome, int | float) and self.low <= outcome <= self.high


@dataclass(frozen=True)
class Prediction:
    """The run's total energy and time as predicted after ``after_epoch`` of ``epochs`` epochs.

    Attributes:
        after_epoch: Epochs finished when the prediction was made.
        epochs: Epochs the run was set to train.
        predicted_energy_j: Predicted energy of the ``fit`` window (J), or ``None``.
        energy_low_j / energy_high_j: Its interval (J).
        predicted_duration_s: Predicted wall time of the ``fit`` window (s).
        duration_low_s / duration_high_s: Its interval (s).
        method: ``first_epoch_band``, ``steady_band`` or ``steady_t`` (see the module).
    """

    after_epoch: int
    epochs: int
    predicted_energy_j: float | None
    energy_low_j: float | None
    energy_high_j: float | None
    predicted_duration_s: float
    duration_low_s: float
    duration_high_s: float
    method: Method

    @property
    def energy(self) -> Interval | None:
        if self.predicted_energy_j is None or self.energy_low_j is None:
            return None
        return Interval(self.predicted_energy_j, self.energy_low_j, self.energy_high_j or 0.0)

    @property
    def duration(self) -> Interval:
        return Interval(self.predicted_duration_s, self.duration_low_s, self.duration_high_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``TrialRecord.details["prediction"]`` keeps, one per prediction)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: A key is missing or a value is not a number.
        """
        try:
            return cls(
                after_epoch=int(data["after_epoch"]),
                epochs=int(data["epochs"]),
                predicted_energy_j=_optional(data["predicted_energy_j"]),
                energy_low_j=_optional(data["energy_low_j"]),
                energy_high_j=_optional(data["energy_high_j"]),
                predicted_duration_s=float(data["predicted_duration_s"]),
                duration_low_s=float(data["duration_low_s"]),
                duration_high_s=float(data["duration_high_s"]),
                method=data["method"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a prediction: {err}") from err


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _value(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _t_quantile(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof))


def project(values: Sequence[float], epochs: int) -> tuple[Interval, Method]:
    """The total of ``epochs`` epochs from the first ``len(values)`` of them (one quantity:
    energy or time per epoch), by the module's method.

    Raises:
        ValueError: No value, or as many values as ``epochs`` or more.
    """
    k = len(values)
    if not 0 < k < epochs:
        raise ValueError(f"need 1 to {epochs - 1} epochs of {epochs}, got {k}")
    spent, to_go = math.fsum(values), epochs - k
    if k == 1:
        rest = to_go * values[0]
        low, high = rest * (1 - FIRST_EPOCH_BAND_LOW), rest * (1 + FIRST_EPOCH_BAND_HIGH)
        return Interval(spent + rest, spent + low, spent + high), "first_epoch_band"
    steady = values[1:]
    n = len(steady)
    mean = math.fsum(steady) / n
    rest = to_go * mean
    half = STEADY_BAND * rest
    method: Method = "steady_band"
    if n > 1:
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in steady) / (n - 1))
        half = max(_t_quantile(n - 1) * sd * math.sqrt(to_go + to_go**2 / n), half)
        method = "steady_t"
    return Interval(spent + rest, spent + max(rest - half, 0.0), spent + rest + half), method


def predict(history: Sequence[Any], epochs: int) -> Prediction | None:
    """The prediction after the epochs in ``history`` (``EpochRecord``\\ s or their dicts, in
    order), for a run of ``epochs`` epochs.

    Returns:
        ``None`` when no epoch has finished, none is left to go, or an epoch's duration is not a
        finite number.
    """
    if not 0 < len(history) < epochs:
        return None
    durations = [_finite(_value(r, "duration_s")) for r in history]
    energies = [_finite(_value(r, "energy_j")) for r in history]
    if any(d is None for d in durations):
        return None
    duration, method = project(durations, epochs)  # type: ignore[arg-type]
    energy = None
    unavailable = any(_value(r, "energy_provenance") == "unavailable" for r in history)
    if not unavailable and all(e is not None for e in energies):
        energy, _ = project(energies, epochs)  # type: ignore[arg-type]
    return Prediction(
        after_epoch=len(history),
        epochs=epochs,
        predicted_energy_j=energy.value if energy else None,
        energy_low_j=energy.low if energy else None,
        energy_high_j=energy.high if energy else None,
        predicted_duration_s=duration.value,
        duration_low_s=duration.low,
        duration_high_s=duration.high,
        method=method,
    )


def predictions(
    history: Sequence[Any], epochs: int, *, after: int = PREDICT_EPOCHS
) -> list[Prediction]:
    """Every prediction a run of ``epochs`` epochs makes with this ``history``: one after each of
    its first ``after`` epochs that leaves epochs to go (what :class:`RunPredictor` made live)."""
    made = (predict(history[:k], epochs) for k in range(1, min(after, len(history)) + 1))
    return [p for p in made if p is not None]


class RunPredictor:
    """Live predictions of one run: :meth:`add` each finished epoch's record, in order.

    Args:
        epochs: Epochs the run is set to train.
        after: Predict after each of the first this many epochs.
    """

    def __init__(self, epochs: int, *, after: int = PREDICT_EPOCHS) -> None:
        self.epochs = epochs
        self.after = after
        self.history: list[Any] = []
        self.made: list[Prediction] = []

    def add(self, record: Any) -> Prediction | None:
        """Takes the next epoch's record; returns the prediction it makes, if any."""
        self.history.append(record)
        if len(self.history) > self.after:
            return None
        prediction = predict(self.history, self.epochs)
        if prediction is not None:
            self.made.append(prediction)
        return prediction
