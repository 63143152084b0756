"""The group comparisons' own pieces: the Wilcoxon signed-rank test where scipy is slow."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("n", [5, 9, 12, 20])
def test_the_signed_rank_test_equals_scipys_and_is_fast_with_ties(n: int) -> None:
    import time

    from scipy import stats as sps

    from wattwise.analysis.comparison import signed_rank_test

    rng = np.random.default_rng(n)
    a, b = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)
    assert (a == b).any() and len(set(np.abs(a - b))) < n  # zeros and ties: scipy's slow path
    start = time.perf_counter()
    ours = signed_rank_test(a, b)
    took = time.perf_counter() - start
    ref = sps.wilcoxon(a, b)
    assert ours.statistic == ref.statistic and ours.pvalue == pytest.approx(ref.pvalue, abs=1e-12)
    assert took < 0.5  # scipy: 1.4 s at n = 12 on the development VM
