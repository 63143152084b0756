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


# --- formatting for tables (every view) ---------------------------------------------------------


def fmt(value: Any, spec: str = ".4g", scale: float = 1.0) -> str:
    """A number for a table (``—`` when unknown); text is returned as is."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != value:  # NaN
        return "—"
    return format(value * scale if scale != 1.0 else value, spec)


def pct(value: Any) -> str:
    """A fraction as ``95.20 %`` (``—`` when unknown)."""
    return "—" if value is None else f"{value * 100:.2f} %"


def ratio(estimate: Any, low: Any = None, high: Any = None) -> str:
    """``2.31x (2.10 to 2.54)`` (``—`` when unknown; no interval when its ends are unknown)."""
    if finite(estimate) is None:
        return "—"
    text = f"{estimate:.3g}x"
    if finite(low) is not None and finite(high) is not None:
        text += f" ({low:.3g} to {high:.3g})"
    return text


def payback(estimate: Any, low: Any = None, high: Any = None) -> str:
    """Inferences until an optimization pays back: ``1.2e+05 (1e+05 to never)``; ``never``."""
    if finite(estimate) is None:
        return "never"
    text = f"{estimate:.3g}"
    if finite(low) is not None or finite(high) is not None:
        text += f" ({fmt(low, '.3g') if finite(low) is not None else 'never'} to "
        text += f"{fmt(high, '.3g') if finite(high) is not None else 'never'})"
    return text
