"""Whether a metric differs across groups (techniques), with SciPy and statsmodels.

    compare_groups({"baseline": [...], "prune:structured:0.5": [...]}, metric="accuracy")
    compare_groups(groups, metric="accuracy", blocks={"baseline": [b1, b2, ...], ...})  # paired
    holm([0.01, 0.04, 0.03])                      # Holm-adjusted p-values

This module knows nothing of a study's rows: :func:`~wattwise.analysis.stats.study_statistics`
groups the rows, decides the design and passes ``blocks`` (see
:func:`~wattwise.analysis.stats.training_block`). Every result is a small frozen dataclass with
``to_dict()``; too little data is a ``rationale`` ("not enough data: ..."), not an exception.

Choosing the test depends on the design (``GroupComparison.design``):

- **paired** (``blocks`` given): the trials of a study that share dataset, model, training
  settings and seed share one trained baseline, and every technique compresses those same
  weights, so each training is a block holding one observation per technique. A lucky or unlucky
  training moves every technique of its block alike; comparing within blocks removes that
  offset. Only complete blocks (every technique present, with a value) are used; the others are
  dropped and counted. Omnibus: the Friedman test (3 or more techniques; effect size Kendall's
  W = chi² / (n (k - 1)), n blocks, k techniques) or, for 2 techniques, the pairwise test
  itself. Pairwise: the paired t-test where the pair's differences pass Shapiro–Wilk
  (p > alpha), else the Wilcoxon signed-rank test; Holm's correction over all pairs. Fewer than
  2 complete blocks is a ``rationale``; fewer than 5 is tested and the rationale says the test
  has little power.
- **independent** (no ``blocks``): one-way ANOVA when every group has at least 3 observations,
  each passes Shapiro–Wilk (p > alpha) and Levene's test finds equal variances (p > alpha);
  otherwise Kruskal–Wallis. Effect sizes: eta² (ANOVA) and epsilon² = H / (n - 1)
  (Kruskal–Wallis). Pairwise: Welch's t-test after ANOVA, Mann–Whitney U after Kruskal–Wallis,
  with Holm's correction over all pairs.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as sps

from wattwise.analysis.base import Result, finite, finite_values

#: The significance level used unless told otherwise.
ALPHA = 0.05


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
        test: ``one-way ANOVA`` or ``Kruskal-Wallis`` (independent design), ``Friedman``,
            ``paired t`` or ``Wilcoxon signed-rank`` (paired design, the last two with 2
            groups), or ``None`` (not enough data).
        rationale: Why this test (the normality and equal-variance checks), or why none ran.
        normality_p: Shapiro–Wilk p-value per group (independent) or of each pair's differences,
            keyed ``"a − b"`` (paired); ``None`` where n < 3 or constant.
        levene_p: Levene's test of equal variances (``None`` where it could not run or paired).
        effect_size: eta² for ANOVA, epsilon² for Kruskal–Wallis, Kendall's W when paired.
        pairwise: Every pair, Holm-adjusted together.
        design: ``"paired"`` (observations matched by block) or ``"independent"``.
        blocks_used: Complete blocks the paired tests ran on (``sizes`` are this); ``None`` when
            independent.
        blocks_dropped: Blocks left out because a group has no value there (a failed trial).
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
    design: str = "independent"
    blocks_used: int | None = None
    blocks_dropped: int | None = None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"significant": self.significant}


def compare_groups(
    groups: Mapping[str, Iterable[Any]],
    *,
    metric: str = "",
    alpha: float = ALPHA,
    blocks: Mapping[str, Sequence[Hashable]] | None = None,
) -> GroupComparison:
    """Tests whether ``metric`` differs across groups (e.g. techniques).

    Groups with fewer than 2 values are dropped (and listed in ``dropped``); at least 2 groups
    must remain. See the module docstring for how the test is chosen.

    Args:
        groups: The values of each group.
        blocks: The block of each value, parallel to ``groups`` (the training a technique was
            applied to): given, the design is paired; ``None``: independent groups.

    Raises:
        ValueError: ``blocks`` does not match ``groups`` value for value, or a block holds a
            group twice.
    """
    if blocks is not None:
        return _compare_paired(groups, blocks, metric=metric, alpha=alpha)
    data = {str(k): np.asarray(finite_values(v), dtype=float) for k, v in groups.items()}
    dropped = tuple(k for k, v in data.items() if v.size < 2)
    data = {k: v for k, v in data.items() if v.size >= 2}
    names, arrays = tuple(data), list(data.values())
    sizes = tuple(int(a.size) for a in arrays)

    def result(**kw: Any) -> GroupComparison:
        return _comparison(metric, names, sizes, alpha=alpha, dropped=dropped, **kw)

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


def _comparison(
    metric: str, names: tuple[str, ...], sizes: tuple[int, ...], **kw: Any
) -> GroupComparison:
    """A :class:`GroupComparison` with no test run unless ``kw`` says otherwise."""
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
    )
    return GroupComparison(**(base | kw))


def _compare_paired(
    groups: Mapping[str, Iterable[Any]],
    blocks: Mapping[str, Sequence[Hashable]],
    *,
    metric: str,
    alpha: float,
) -> GroupComparison:
    """The paired design of :func:`compare_groups` (see the module docstring)."""
    cells: dict[str, dict[Hashable, float]] = {}
    for name, group in groups.items():
        values, keys = list(group), list(blocks.get(name, ()))
        if len(keys) != len(values):
            raise ValueError(f"{name}: {len(values)} value(s) but {len(keys)} block(s)")
        if len(set(keys)) != len(keys):
            raise ValueError(f"{name}: a block holds this group more than once")
        known = zip(keys, map(finite, values), strict=True)
        cells[str(name)] = {b: v for b, v in known if v is not None}
    dropped = tuple(k for k, c in cells.items() if len(c) < 2)
    cells = {k: c for k, c in cells.items() if len(c) >= 2}
    names = tuple(cells)
    seen = dict.fromkeys(b for c in cells.values() for b in c)
    complete = [b for b in seen if all(b in c for c in cells.values())]
    n, k = len(complete), len(names)
    matrix = np.array([[cells[g][b] for g in names] for b in complete], dtype=float)
    matrix = matrix.reshape(n, k)
    counted = dict(design="paired", blocks_used=n, blocks_dropped=len(seen) - n)

    def result(**kw: Any) -> GroupComparison:
        return _comparison(metric, names, (n,) * k, alpha=alpha, dropped=dropped, **counted, **kw)

    incomplete = f"; {len(seen) - n} incomplete block(s) dropped" if len(seen) > n else ""
    if k < 2:
        return result(rationale=f"not enough data: {k} group(s) with at least 2 trials, need 2")
    if n < 2:
        return result(
            rationale=f"not enough data: {n} complete block(s) (a training every technique "
            f"ran on), need 2{incomplete}"
        )
    if np.ptp(matrix, axis=1).max() == 0:
        return result(rationale="no variation: every technique has the same value in each block")
    pairwise, normality = _paired_pairwise(names, matrix, alpha=alpha)
    power = f"; only {n} blocks: the test has little power" if n < 5 else ""
    blocked = f"{k} techniques on the same {n} trainings (blocks){incomplete}{power}"
    if k == 2:
        test, statistic, p = pairwise[0].test, pairwise[0].statistic, pairwise[0].p_value
        rationale = f"{test}: {blocked}; " + _why_paired_test(normality, alpha)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            omnibus = sps.friedmanchisquare(*matrix.T)
        test, statistic, p = "Friedman", finite(omnibus.statistic), finite(omnibus.pvalue)
        rationale = (
            f"Friedman: {blocked}; pairwise paired t where the differences pass Shapiro–Wilk "
            f"(p > {alpha:g}), else Wilcoxon signed-rank"
        )
    return result(
        test=test,
        statistic=statistic,
        p_value=p,
        effect_size=_kendall_w(matrix),
        effect_size_name="Kendall's W",
        rationale=rationale,
        normality_p=normality,
        pairwise=pairwise,
    )


def _kendall_w(matrix: np.ndarray) -> float | None:
    """Kendall's W of ``n`` blocks (rows) ranking ``k`` groups (columns), tie-corrected:
    ``12 S / (n² (k³ - k) - n Σ(t³ - t))``, S the squared deviations of the groups' rank sums
    from their mean, t the sizes of the ties within a block. Equals Friedman's chi² / (n (k - 1))
    and is defined for k = 2 too. 0: no agreement between blocks, 1: every block ranks alike."""
    n, k = matrix.shape
    sums = sps.rankdata(matrix, axis=1).sum(axis=0)
    spread = float(((sums - sums.mean()) ** 2).sum())
    ties = sum(int((t**3 - t).sum()) for t in (np.unique(r, return_counts=True)[1] for r in matrix))
    denominator = n**2 * (k**3 - k) - n * ties
    return 12 * spread / denominator if denominator > 0 else None


def _paired_pairwise(
    names: Sequence[str], matrix: np.ndarray, *, alpha: float
) -> tuple[tuple[PairwiseTest, ...], dict[str, float | None]]:
    """Every pair of columns of ``matrix``: the paired t-test where the differences pass
    Shapiro–Wilk, else Wilcoxon signed-rank; Holm over all pairs. Also the Shapiro–Wilk p of
    each pair's differences, keyed ``"a − b"``."""
    raw: list[tuple[str, str, str, float | None, float | None]] = []
    normality: dict[str, float | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, j in itertools.combinations(range(len(names)), 2):
            a, b = matrix[:, i], matrix[:, j]
            diff = a - b
            normal = None if diff.size < 3 or np.ptp(diff) == 0 else sps.shapiro(diff).pvalue
            normality[f"{names[i]} − {names[j]}"] = normal = finite(normal)
            if normal is not None and normal > alpha:
                test, r = "paired t", sps.ttest_rel(a, b)
            else:
                test, r = "Wilcoxon signed-rank", signed_rank_test(a, b)
            raw.append((names[i], names[j], test, finite(r.statistic), finite(r.pvalue)))
    return _holm_pairs(raw, alpha), normality


class _SignedRank(NamedTuple):
    statistic: float
    pvalue: float


def signed_rank_test(a: np.ndarray, b: np.ndarray) -> Any:
    """``scipy.stats.wilcoxon(a, b)`` (two-sided, zeros dropped), the same statistic and p-value,
    computed fast where scipy is slow.

    With ties or zero differences and at most 13 pairs, scipy computes the exact p-value by a
    permutation test over all ``2**n`` sign flips, calling the statistic once per flip in
    Python: 1.9 s per test at n = 12 here, most of a report's time. The flips do not change the
    ranks of ``|a - b|``, so here the same ``scipy.stats.permutation_test`` gets a vectorized
    statistic (the rank sum of the positive differences over precomputed ranks): the identical
    null distribution, in milliseconds. Every other case is scipy's own call.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    nonzero = d[d != 0]
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    if d.size > 13 or not (ties or nonzero.size < d.size) or nonzero.size == 0:
        return sps.wilcoxon(a, b)
    ranks = np.zeros_like(d)
    ranks[d != 0] = sps.rankdata(np.abs(nonzero))  # zeros rank 0: dropped ("wilcox")

    def r_plus(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return ((x > 0) * ranks).sum(axis=axis)

    p = sps.permutation_test(
        (d,), r_plus, permutation_type="samples", vectorized=True, n_resamples=9999
    ).pvalue
    plus = float(r_plus(d))
    return _SignedRank(min(plus, float(ranks.sum()) - plus), float(p))


def _why_paired_test(normality: Mapping[str, float | None], alpha: float) -> str:
    (p,) = normality.values()
    if p is None:
        return "normality of the differences cannot be checked (fewer than 3 or constant)"
    if p > alpha:
        return f"the differences pass Shapiro–Wilk (p = {p:.3g})"
    return f"Shapiro–Wilk rejects normality of the differences (p = {p:.3g})"


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
    raw: list[tuple[str, str, str, float | None, float | None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (i, a), (j, b) in itertools.combinations(enumerate(arrays), 2):
            if parametric:
                r = sps.ttest_ind(a, b, equal_var=False)
            else:
                r = sps.mannwhitneyu(a, b, alternative="two-sided")
            raw.append((names[i], names[j], test, finite(r.statistic), finite(r.pvalue)))
    return _holm_pairs(raw, alpha)


def _holm_pairs(
    raw: Sequence[tuple[str, str, str, float | None, float | None]], alpha: float
) -> tuple[PairwiseTest, ...]:
    """``(a, b, test, statistic, p)`` per pair as :class:`PairwiseTest`, Holm over the known p."""
    adjusted = iter(holm([p for *_, p in raw if p is not None]))
    out = []
    for a_name, b_name, test, stat, p in raw:
        p_holm = next(adjusted) if p is not None else None
        out.append(
            PairwiseTest(
                a_name, b_name, test, stat, p, p_holm, p_holm is not None and p_holm < alpha
            )
        )
    return tuple(out)
