"""Statistics of a study, with SciPy and statsmodels (no hand-written tests).

    mean_ci([1, 2, 3, 4, 5])                      # MeanCI(mean=3.0, low=1.04, high=4.96, ...)
    correlate(energy, accuracy)                   # Pearson and Spearman, with p-values
    compare_groups({"baseline": [...], "prune:structured:0.5": [...]}, metric="accuracy")
    study_statistics(rows)                        # all of it per dataset × model, and the OLS

What drives energy (the OLS of log energy on the swept settings) is in
:mod:`wattwise.analysis.regression`.

Every result is a small frozen dataclass with ``to_dict()``. Too little data is a result, not an
exception: ``reason`` says what was missing and the numbers are ``None``.

Choosing the test across techniques: one-way ANOVA when every group has at least 3 observations,
each passes Shapiro–Wilk (p > alpha) and Levene's test finds equal variances (p > alpha);
otherwise Kruskal–Wallis. Effect sizes: eta² (ANOVA) and epsilon² = H / (n - 1)
(Kruskal–Wallis). Pairwise: Welch's t-test after ANOVA, Mann–Whitney U after Kruskal–Wallis,
with Holm's correction over all pairs.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from wattwise.analysis.base import Result, finite, finite_values
from wattwise.analysis.regression import EnergyModel, energy_drivers

#: The significance level used unless told otherwise.
ALPHA = 0.05


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


# --- comparing techniques -----------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (``statsmodels.stats.multitest.multipletests(method="holm")``)."""
    from statsmodels.stats.multitest import multipletests

    if len(p_values) == 0:
        return []
    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]


@dataclass(frozen=True)
class PairwiseTest(Result):
    """One pair of groups: the test, its statistic, raw and Holm-adjusted p-values."""

    a: str
    b: str
    test: str
    statistic: float | None
    p_value: float | None
    p_holm: float | None
    significant: bool


@dataclass(frozen=True)
class GroupComparison(Result):
    """A metric across groups (techniques): which omnibus test ran, why, and its effect size.

    Attributes:
        test: ``one-way ANOVA``, ``Kruskal-Wallis`` or ``None`` (not enough data).
        rationale: Why this test (the normality and equal-variance checks), or why none ran.
        normality_p: Shapiro–Wilk p-value per group (``None`` where n < 3 or constant).
        levene_p: Levene's test of equal variances (``None`` where it could not run).
        effect_size: eta² for ANOVA, epsilon² for Kruskal–Wallis.
        pairwise: Every pair, Holm-adjusted together.
    """

    metric: str
    groups: tuple[str, ...]
    sizes: tuple[int, ...]
    test: str | None
    statistic: float | None
    p_value: float | None
    effect_size: float | None
    effect_size_name: str | None
    rationale: str
    normality_p: Mapping[str, float | None]
    levene_p: float | None
    pairwise: tuple[PairwiseTest, ...]
    alpha: float = ALPHA
    dropped: tuple[str, ...] = ()

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"significant": self.significant}


def compare_groups(
    groups: Mapping[str, Iterable[Any]], *, metric: str = "", alpha: float = ALPHA
) -> GroupComparison:
    """Tests whether ``metric`` differs across groups (e.g. techniques).

    Groups with fewer than 2 values are dropped (and listed in ``dropped``); at least 2 groups
    must remain. See the module docstring for how the test is chosen.
    """
    data = {str(k): np.asarray(finite_values(v), dtype=float) for k, v in groups.items()}
    dropped = tuple(k for k, v in data.items() if v.size < 2)
    data = {k: v for k, v in data.items() if v.size >= 2}
    names, arrays = tuple(data), list(data.values())
    sizes = tuple(int(a.size) for a in arrays)

    def result(**kw: Any) -> GroupComparison:
        base: dict[str, Any] = dict(
            metric=metric,
            groups=names,
            sizes=sizes,
            test=None,
            statistic=None,
            p_value=None,
            effect_size=None,
            effect_size_name=None,
            normality_p={},
            levene_p=None,
            pairwise=(),
            alpha=alpha,
            dropped=dropped,
        )
        return GroupComparison(**(base | kw))

    if len(arrays) < 2:
        return result(
            rationale=f"not enough data: {len(arrays)} group(s) with at least 2 trials, need 2"
        )
    pooled = np.concatenate(arrays)
    if np.ptp(pooled) == 0:
        return result(rationale="no variation: every value is the same")
    normality, levene = _assumptions(data)
    checks_pass = all(p is not None and p > alpha for p in normality.values())
    equal_var = levene is not None and levene > alpha
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if checks_pass and equal_var:
            test, effect_name = "one-way ANOVA", "eta²"
            omnibus = sps.f_oneway(*arrays)
            statistic, p = finite(omnibus.statistic), finite(omnibus.pvalue)
            grand = pooled.mean()
            ss_between = sum(a.size * (a.mean() - grand) ** 2 for a in arrays)
            ss_total = float(((pooled - grand) ** 2).sum())
            effect = float(ss_between / ss_total) if ss_total > 0 else None
            rationale = (
                f"one-way ANOVA: every group passed Shapiro–Wilk (p > {alpha:g}) and Levene "
                f"found equal variances (p = {levene:.3g})"
            )
        else:
            test, effect_name = "Kruskal-Wallis", "epsilon²"
            omnibus = sps.kruskal(*arrays)
            statistic, p = finite(omnibus.statistic), finite(omnibus.pvalue)
            n = pooled.size
            effect = statistic / (n - 1) if statistic is not None and n > 1 else None
            rationale = "Kruskal–Wallis: " + _why_not_anova(normality, levene, alpha)
    pairwise = _pairwise(names, arrays, parametric=test == "one-way ANOVA", alpha=alpha)
    return result(
        test=test,
        statistic=statistic,
        p_value=p,
        effect_size=effect,
        effect_size_name=effect_name,
        rationale=rationale,
        normality_p=normality,
        levene_p=levene,
        pairwise=pairwise,
    )


def _assumptions(data: Mapping[str, np.ndarray]) -> tuple[dict[str, float | None], float | None]:
    normality: dict[str, float | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, values in data.items():
            if values.size < 3 or np.ptp(values) == 0:
                normality[name] = None
            else:
                normality[name] = finite(sps.shapiro(values).pvalue)
        try:
            levene = finite(sps.levene(*data.values()).pvalue)
        except ValueError:
            levene = None
    return normality, levene


def _why_not_anova(
    normality: Mapping[str, float | None], levene: float | None, alpha: float
) -> str:
    unchecked = [k for k, p in normality.items() if p is None]
    if unchecked:
        return (
            "normality cannot be checked for "
            + ", ".join(unchecked)
            + " (fewer than 3 trials or constant values)"
        )
    failed = [f"{k} (p = {p:.3g})" for k, p in normality.items() if p is not None and p <= alpha]
    if failed:
        return "Shapiro–Wilk rejects normality for " + ", ".join(failed)
    if levene is None:
        return "Levene's test could not run"
    return f"Levene's test rejects equal variances (p = {levene:.3g})"


def _pairwise(
    names: Sequence[str], arrays: Sequence[np.ndarray], *, parametric: bool, alpha: float
) -> tuple[PairwiseTest, ...]:
    test = "Welch t" if parametric else "Mann-Whitney U"
    raw: list[tuple[str, str, float | None, float | None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (i, a), (j, b) in itertools.combinations(enumerate(arrays), 2):
            if parametric:
                r = sps.ttest_ind(a, b, equal_var=False)
            else:
                r = sps.mannwhitneyu(a, b, alternative="two-sided")
            raw.append((names[i], names[j], finite(r.statistic), finite(r.pvalue)))
    known = [p for *_, p in raw if p is not None]
    adjusted = iter(holm(known))
    out = []
    for a_name, b_name, stat, p in raw:
        p_holm = next(adjusted) if p is not None else None
        out.append(
            PairwiseTest(
                a_name, b_name, test, stat, p, p_holm, p_holm is not None and p_holm < alpha
            )
        )
    return tuple(out)


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
    """Everything :func:`study_statistics` computed, per dataset × model where it matters."""

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


def study_statistics(rows: Sequence[Mapping[str, Any]], *, alpha: float = ALPHA) -> StudyStatistics:
    """Correlations, technique comparisons and energy models over finished trials.

    Args:
        rows: One mapping per ``ok`` trial (``TrialMetrics.to_dict()``): the caller excludes
            failed trials. Correlations and comparisons run within each dataset × model (techniques
            are only comparable on the same task and architecture); the OLS runs on all rows.
    """
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row.get("dataset"), row.get("model")), []).append(row)
    correlations, comparisons = [], []
    for (dataset, model), members in groups.items():
        where = " · ".join(str(p) for p in (dataset, model) if p) or "all"
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
        for metric in COMPARED_METRICS:
            by_technique = {
                t: [r.get(metric) for r in members if str(r.get("technique")) == t]
                for t in techniques
            }
            comparisons.append(
                compare_groups(by_technique, metric=f"{where}: {metric}", alpha=alpha)
            )
    return StudyStatistics(
        correlations=tuple(correlations),
        comparisons=tuple(comparisons),
        energy_model=energy_drivers(rows, response="train_energy_j"),
        inference_model=energy_drivers(rows, response="inference_energy_per_image_j"),
    )
