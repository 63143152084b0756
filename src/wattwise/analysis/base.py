"""What every analysis result shares: a ``to_dict()`` base and finite-number helpers.

Analysis reads numbers that may be missing (``None``), non-finite (SciPy returns NaN where a
statistic is undefined) or not numbers at all (a hand-edited export): :func:`finite` turns each
into a finite ``float`` or ``None``, once, for every module of the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from wattwise.experiment.record import json_safe


class Result:
    """Base of the frozen result dataclasses: ``to_dict()`` gives plain JSON types."""

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))  # type: ignore[call-overload, no-any-return]


def finite(value: Any) -> float | None:
    """``value`` as a finite ``float``, or ``None`` (missing, NaN, infinite, a bool, or not a
    number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def finite_values(values: Iterable[Any]) -> list[float]:
    """The finite numbers of ``values`` (see :func:`finite`), in order; the rest are dropped."""
    return [number for number in map(finite, values) if number is not None]
