"""Statistics of a study, with SciPy and statsmodels (no hand-written tests).

    mean_ci([1, 2, 3, 4, 5])                      # MeanCI(mean=3.0, low=1.04, high=4.96, ...)
    correlate(energy, accuracy)                   # Pearson and Spearman, with p-values
    training_block(row)                           # the training a trial's technique was applied to
    study_statistics(rows)                        # all of it per dataset × model, and the OLS

The comparison of techniques (:func:`compare_groups`, :func:`holm`, :class:`GroupComparison`:
which test runs in the paired and the independent design, and why) is in
:mod:`wattwise.analysis.comparison`, and re-exported here; what drives energy (the OLS of log
energy on the swept settings) is in :mod:`wattwise.analysis.regression`.

Every result is a small frozen dataclass with ``to_dict()``. Too little data is a result, not an
exception: ``reason`` says what was missing and the numbers are ``None``.

:func:`study_statistics` picks the design per dataset × model × device: paired, blocked by
:func:`training_block`, where the rows allow it, else independent groups. Energy measured on
different devices (the rows' ``device_id``; rows without one are one unknown device) is never
tested together; the energy model has the device as a factor.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from wattwise.analysis.base import Result, finite, finite_values
from wattwise.analysis.comparison import (
    ALPHA,
    GroupComparison,
    PairwiseTest,
    compare_groups,
    holm,
)
from wattwise.analysis.regression import EnergyModel, energy_drivers
from wattwise.analysis.trials import device_label

#: The public names; ``ALPHA``, ``GroupComparison``, ``PairwiseTest``, ``compare_groups`` and
#: ``holm`` are re-exported from :mod:`wattwise.analysis.comparison`.
__all__ = [
    "ALPHA",
    "COMPARED_METRICS",
    "Correlation",
    "GroupComparison",
    "MeanCI",
    "PairwiseTest",
    "StudyStatistics",
    "compare_groups",
    "correlate",
    "holm",
    "mean_ci",
    "study_statistics",
    "training_block",
]


# --- mean and confidence interval ---------------------------------------------------------------


@dataclass(frozen=True)
class MeanCI(Result):
    """Mean of ``n`` values with a two-sided t-interval (``low``/``high`` ``None`` when n < 2).

    ``half_width = t_{(1+confidence)/2, n-1} x sd / sqrt(n)``, ``sd`` with ``ddof=1``.
    """

    mean: float | None
    low: float | None
    high: float | None
    half_width: float | None
    sd: float | None
    n: int
    confidence: float = 0.95


def mean_ci(values: Iterable[Any], confidence: float = 0.95) -> MeanCI:
    """Mean with a ``confidence`` t-interval (``scipy.stats.t``); ``None``/NaN values are dropped.

    Raises:
        ValueError: ``confidence`` not in (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    data = np.asarray(finite_values(values), dtype=float)
    n = int(data.size)
    if n == 0:
        return MeanCI(None, None, None, None, None, 0, confidence)
    mean = float(data.mean())
    if n < 2:
        return MeanCI(mean, None, None, None, None, 1, confidence)
    sd = float(data.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n))
    return MeanCI(mean, mean - half, mean + half, half, sd, n, confidence)


# --- correlation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation(Result):
    """Pearson's r and Spearman's rho of ``x`` and ``y`` with two-sided p-values."""

    x: str
    y: str
    n: int
    pearson_r: float | None
    pearson_p: float | None
    spearman_rho: float | None
    spearman_p: float | None
    reason: str | None = None


def correlate(
    x: Sequence[Any], y: Sequence[Any], *, x_name: str = "energy", y_name: str = "accuracy"
) -> Correlation:
    """Pearson (``scipy.stats.pearsonr``) and Spearman (``scipy.stats.spearmanr``) correlation
    over the pairs where both values are known. Needs 3 pairs and variation in both."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} != {len(y)})")
    pairs = [
        (a, b)
        for a, b in zip(map(finite, x), map(finite, y), strict=True)
        if a is not None and b is not None
    ]
    n = len(pairs)
    empty = Correlation(x_name, y_name, n, None, None, None, None)
    if n < 3:
        return _replace_reason(empty, f"not enough data: {n} pair(s), need at least 3")
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return _replace_reason(empty, "no variation: one of the two is constant")
    pearson = sps.pearsonr(xs, ys)
    spearman = sps.spearmanr(xs, ys)
    return Correlation(
        x_name,
        y_name,
        n,
        finite(pearson.statistic),
        finite(pearson.pvalue),
        finite(spearman.statistic),
        finite(spearman.pvalue),
    )


def _replace_reason(result: Correlation, reason: str) -> Correlation:
    return replace(result, reason=reason)


# --- a whole study ------------------------------------------------------------------------------

#: Metrics compared across techniques. Not the training energy: techniques that share a training
#: ran the identical one, so it differs between them by noise only; the cost (training +
#: technique, a shared teacher charged 1/k) is what differs.
COMPARED_METRICS = (
    "accuracy",
    "cost_energy_j",
    "accuracy_per_kj_cost",
    "inference_energy_per_image_j",
)


@dataclass(frozen=True)
class StudyStatistics(Result):
    """Everything :func:`study_statistics` computed, per dataset × model (× device) where it
    matters."""

    correlations: tuple[Correlation, ...]
    comparisons: tuple[GroupComparison, ...]
    energy_model: EnergyModel
    inference_model: EnergyModel

    def to_dict(self) -> dict[str, Any]:
        return {
            "correlations": [c.to_dict() for c in self.correlations],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "energy_model": self.energy_model.to_dict(),
            "inference_model": self.inference_model.to_dict(),
        }


def training_block(row: Mapping[str, Any]) -> str | None:
    """The block of a finished trial in the paired design: the training its technique was
    applied to, from the row's ``training_key`` (:func:`~wattwise.experiment.spec.training_key`
    with the seed: dataset, model, every training setting and the seed); ``None`` where the row
    does not carry it (an old export).

    The key's ``trains_by`` is left out: a ``distill:<teacher>`` student is a different model from
    the shared baseline, but it is trained from the same seed, data and settings, so it joins the
    block of its seed. The pairing stays valid (blocks are independent replicates, and within a
    block every technique had the same chance); it only gains less where the student's weights
    owe less to the seed.
    """
    key = row.get("training_key")
    if not isinstance(key, str) or not key:
        return None
    try:
        values = json.loads(key)
    except json.JSONDecodeError:
        return None
    if not isinstance(values, dict):
        return None
    values.pop("trains_by", None)
    return json.dumps(values, sort_keys=True, default=str)


def _study_blocks(rows: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The block of each row when the rows form a paired design, else ``None``: every row knows
    its training, no technique ran twice on one training (which would be ambiguous), and some
    training is shared by two or more techniques (otherwise the trials are independent)."""
    keys = [training_block(r) for r in rows]
    if not keys or any(k is None for k in keys):
        return None
    cells = Counter((k, str(r.get("technique"))) for k, r in zip(keys, rows, strict=True))
    if max(cells.values()) > 1:
        return None
    if max(Counter(keys).values()) < 2:
        return None
    return [str(k) for k in keys]


def study_statistics(rows: Sequence[Mapping[str, Any]], *, alpha: float = ALPHA) -> StudyStatistics:
    """Correlations, technique comparisons and energy models over finished trials.

    Args:
        rows: One mapping per ``ok`` trial (``TrialMetrics.to_dict()``): the caller excludes
            failed trials. Correlations and comparisons run within each dataset × model and
            device (techniques are only comparable on the same task and architecture, and
            energy on the same device; the device is named in each metric where the rows span
            several); the OLS runs on all rows, with the device as a factor where it varies.
            Techniques are compared in the paired design, blocked by :func:`training_block`,
            where every row of the dataset × model carries its training, no technique ran twice
            on one training and some training is shared by two or more techniques; otherwise as
            independent groups.
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = (row.get("dataset"), row.get("model"), row.get("device_id"))
        groups.setdefault(key, []).append(row)
    several = len({device for _, _, device in groups}) > 1
    if several:  # rows without a device are one device for the OLS too
        rows = [{**r, "device_id": device_label(r.get("device_id"))} for r in rows]
    correlations, comparisons = [], []
    for (dataset, model, device), members in groups.items():
        where = " · ".join(str(p) for p in (dataset, model) if p) or "all"
        where += f" · {device_label(device)}" if several else ""
        acc = [r.get("accuracy") for r in members]
        for energy in ("train_energy_j", "inference_energy_per_image_j"):
            c = correlate(
                [r.get(energy) for r in members],
                acc,
                x_name=f"{where}: {energy}",
                y_name="accuracy",
            )
            correlations.append(c)
        techniques = sorted({str(r.get("technique")) for r in members})
        if len(techniques) < 2:
            continue
        keys = _study_blocks(members)
        of = {
            t: [i for i, r in enumerate(members) if str(r.get("technique")) == t]
            for t in techniques
        }
        blocks = {t: [keys[i] for i in of[t]] for t in techniques} if keys is not None else None
        for metric in COMPARED_METRICS:
            by_technique = {t: [members[i].get(metric) for i in of[t]] for t in techniques}
            comparisons.append(
                compare_groups(
                    by_technique, metric=f"{where}: {metric}", alpha=alpha, blocks=blocks
                )
            )
    return StudyStatistics(
        correlations=tuple(correlations),
        comparisons=tuple(comparisons),
        energy_model=energy_drivers(rows, response="train_energy_j"),
        inference_model=energy_drivers(rows, response="inference_energy_per_image_j"),
    )
