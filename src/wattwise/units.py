"""Units of what wattwise shows: the one place that scales a number to a readable unit.

    format_energy(2.612)                     # "2.61 J"      (not "0.002612 kJ")
    format_energy(0.000816, per="image")     # "0.816 mJ/image"
    unit = energy_unit([0.0008, 0.002])      # Unit("mJ", 1e-3): one unit for a column or an axis
    unit.of(0.002)                           # 2.0
    header("inference energy", unit, per="image")   # "inference energy (mJ/image)"
    scaled(0.0008, unit)                     # "0.8": a table cell under that header

Stored values and export columns stay in base units with the unit in the name (``energy_j``,
``co2e_g``); every view (report tables, plots, LaTeX, the terminal) scales them here. A single
number takes the unit of its own size; a column or a plot axis takes one unit for all its numbers,
picked from the largest of them, so that a table never mixes units within a column and its
largest number reads between 1 and 1000 (the largest unit, kWh, has no upper end).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unit:
    """A unit: its symbol and its size in the base unit (``kJ``: 1000 J)."""

    symbol: str
    factor: float

    def of(self, value: float) -> float:
        """``value`` (in the base unit) in this unit."""
        return value / self.factor


#: Energy, base unit J, smallest first. kWh (3.6 MJ) is the unit of grid intensities and bills.
ENERGY_UNITS: tuple[Unit, ...] = (
    Unit("µJ", 1e-6),
    Unit("mJ", 1e-3),
    Unit("J", 1.0),
    Unit("kJ", 1e3),
    Unit("kWh", 3.6e6),
)
#: Mass (CO2e), base unit g, smallest first.
MASS_UNITS: tuple[Unit, ...] = (Unit("mg", 1e-3), Unit("g", 1.0), Unit("kg", 1e3), Unit("t", 1e6))


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _base(ladder: Sequence[Unit]) -> Unit:
    return next(u for u in ladder if u.factor == 1.0)


def pick_unit(values: Iterable[Any], ladder: Sequence[Unit] = ENERGY_UNITS) -> Unit:
    """One unit of ``ladder`` for every number of ``values`` (a table column, a plot axis): the
    largest unit not larger than their largest magnitude; the base unit when none is a finite
    non-zero number (missing values, text and NaN are ignored)."""
    magnitudes = [abs(v) for v in map(_finite, values) if v]
    if not magnitudes:
        return _base(ladder)
    top = max(magnitudes)
    fitting = [u for u in ladder if u.factor <= top * (1 + 1e-12)]
    return fitting[-1] if fitting else ladder[0]


def energy_unit(joules: Iterable[Any]) -> Unit:
    """:func:`pick_unit` of energies in J."""
    return pick_unit(joules, ENERGY_UNITS)


def format_scaled(
    value: Any,
    ladder: Sequence[Unit],
    *,
    unit: Unit | None = None,
    spec: str = ".3g",
    per: str = "",
    missing: str = "—",
) -> str:
    """``value`` (base unit) with its unit: ``unit`` when given (a column's), else the unit of
    its own size; ``per``: ``"image"`` makes ``mJ/image``. ``missing`` for ``None`` and NaN."""
    number = _finite(value)
    if number is None:
        return missing
    unit = unit or pick_unit([number], ladder)
    symbol = f"{unit.symbol}/{per}" if per else unit.symbol
    return f"{format(unit.of(number), spec)} {symbol}"


def format_energy(
    joules: Any,
    *,
    unit: Unit | None = None,
    spec: str = ".3g",
    per: str = "",
    missing: str = "—",
) -> str:
    """Energy in J as ``2.61 J``, ``0.816 mJ/image``, ``1.23 kJ`` (see :func:`format_scaled`)."""
    return format_scaled(joules, ENERGY_UNITS, unit=unit, spec=spec, per=per, missing=missing)


def format_mass(
    grams: Any, *, unit: Unit | None = None, spec: str = ".3g", missing: str = "—"
) -> str:
    """A mass in g (CO2e) as ``50 mg``, ``12.3 g``, ``1.23 kg`` (see :func:`format_scaled`)."""
    return format_scaled(grams, MASS_UNITS, unit=unit, spec=spec, missing=missing)


def scaled(value: Any, unit: Unit, spec: str = ".4g", missing: str = "—") -> str:
    """The number of ``value`` (base unit) in ``unit``, without the symbol (a table cell whose
    header names the unit); ``missing`` for ``None`` and NaN."""
    number = _finite(value)
    return missing if number is None else format(unit.of(number), spec)


#: The ladders :func:`column_unit` knows, by quantity.
LADDERS: dict[str, tuple[Unit, ...]] = {"energy": ENERGY_UNITS, "mass": MASS_UNITS}


def column_unit(rows: Iterable[Any], attr: str, quantity: str = "energy") -> Unit:
    """One unit for the column ``attr`` of ``rows`` (objects with that attribute; a column of a
    table): :func:`pick_unit` of their values on the ``quantity`` ladder (``energy``, ``mass``)."""
    return pick_unit((getattr(r, attr, None) for r in rows), LADDERS[quantity])


def header(name: str, unit: Unit, *, per: str = "") -> str:
    """A column or axis title: ``training energy (kJ)``, ``inference energy (mJ/image)``."""
    return f"{name} ({unit.symbol}/{per})" if per else f"{name} ({unit.symbol})"
