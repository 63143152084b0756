"""What the interleaved comparison says of one variant, as flat columns: defined once.

A trial's :class:`~wattwise.experiment.record.VariantRecord` stores these fields, and every
analysis row built from it (a trial row, a payback row, a variant summary) carries the same ones
under the same names, one column each in tables and CSV/Parquet exports. They are declared here,
once, and mixed in (``kw_only``: they follow each row's own fields in its constructor);
:func:`comparison_columns` copies them from one row to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ComparisonColumns:
    """A variant's saving against the baseline and the best fp32 variant, its rank and flags.

    Attributes:
        saving: Baseline J/image / this J/image (geometric mean of the paired rounds; > 1:
            less energy per image).
        saving_low: Lower end of the confidence interval of ``saving``.
        saving_high: Upper end of it.
        saving_significant: Whether that interval excludes 1 (``None``: not compared).
        saving_vs_best_fp32: The same ratio against the best fp32 variant (the eager baseline
            or a fair reference, whichever has the lowest J/image), named by ``best_fp32``.
        saving_vs_best_fp32_low: Lower end of its interval.
        saving_vs_best_fp32_high: Upper end of it.
        best_fp32: Name of that best fp32 variant.
        verdict: The saving in words, e.g. ``2.31x less J/image (2.10 to 2.54, 95 %)`` or
            ``no significant difference (...)``.
        rank: Rank by J/image among the variants compared with it: 1 + the number of them
            that use significantly less energy per image (ties share a rank; ``None``: not
            ranked).
        noisy: The comparison's noise checks flagged it (see ``noise``).
        noise: Why, with the figures, one reason each.
    """

    saving: float | None = None
    saving_low: float | None = None
    saving_high: float | None = None
    saving_significant: bool | None = None
    saving_vs_best_fp32: float | None = None
    saving_vs_best_fp32_low: float | None = None
    saving_vs_best_fp32_high: float | None = None
    best_fp32: str | None = None
    verdict: str | None = None
    rank: int | None = None
    noisy: bool = False
    noise: tuple[str, ...] = ()


#: The column names, in order.
COMPARISON_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ComparisonColumns))


def comparison_columns(source: Any | None, **overrides: Any) -> dict[str, Any]:
    """The comparison columns of ``source`` (any row that has them; their defaults when
    ``source`` is ``None``), with ``overrides`` applied: keyword arguments for another row."""
    values = {f.name: f.default for f in fields(ComparisonColumns)}
    if source is not None:
        values.update({name: getattr(source, name) for name in COMPARISON_COLUMNS})
    unknown = set(overrides) - set(values)
    if unknown:
        raise TypeError(f"not comparison columns: {', '.join(sorted(unknown))}")
    return {**values, **overrides}
