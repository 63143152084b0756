"""Units: one unit per number, column or axis, scaled to the number (2.6 J, not 0.002612 kJ)."""

from __future__ import annotations

import math

import pytest

from wattwise.units import (
    ENERGY_UNITS,
    MASS_UNITS,
    Unit,
    energy_unit,
    format_energy,
    format_mass,
    header,
    pick_unit,
)


@pytest.mark.parametrize(
    ("joules", "text"),
    [
        (2.612, "2.61 J"),
        (0.002612, "2.61 mJ"),
        (2612.0, "2.61 kJ"),
        (7.2e6, "2 kWh"),
        (4.2e-6, "4.2 µJ"),
        (0.0, "0 J"),
        (-2.612, "-2.61 J"),
        (None, "—"),
        (math.nan, "—"),
    ],
)
def test_a_number_takes_the_unit_of_its_size(joules: float | None, text: str) -> None:
    assert format_energy(joules) == text


def test_per_image_energy_and_fixed_units() -> None:
    assert format_energy(0.0026, per="image") == "2.6 mJ/image"
    assert format_energy(0.000816, per="image") == "816 µJ/image"
    assert format_energy(0.5, spec=".3f", missing="-") == "500.000 mJ"
    assert format_energy(None, missing="-") == "-"
    kj = Unit("kJ", 1e3)
    assert format_energy(40.0, unit=kj, spec=".4g") == "0.04 kJ"  # a column's unit, when given
    assert format_mass(1234.0) == "1.23 kg" and format_mass(0.05) == "50 mg"


def test_a_column_or_axis_takes_one_unit_from_its_largest_value() -> None:
    assert energy_unit([0.0008, 0.002]).symbol == "mJ"
    assert energy_unit([40.0, 1500.0]).symbol == "kJ"
    assert energy_unit([2.6, 900.0]).symbol == "J"
    assert energy_unit([None, math.nan, math.inf]).symbol == "J"  # nothing known: the base unit
    assert energy_unit([]).symbol == "J" and energy_unit([0.0]).symbol == "J"
    assert pick_unit([1500.0], MASS_UNITS).symbol == "kg"
    unit = energy_unit([0.0008, 0.002])
    assert unit.of(0.002) == pytest.approx(2.0)
    assert [u.symbol for u in ENERGY_UNITS] == ["µJ", "mJ", "J", "kJ", "kWh"]


def test_headers_name_the_quantity_and_its_unit() -> None:
    assert header("training energy", Unit("kJ", 1e3)) == "training energy (kJ)"
    assert header("inference energy", Unit("mJ", 1e-3), per="image") == (
        "inference energy (mJ/image)"
    )


def test_a_table_column_takes_one_unit() -> None:
    from types import SimpleNamespace

    from wattwise.units import column_unit, scaled

    rows = [SimpleNamespace(e=40.0, g=0.2), SimpleNamespace(e=1500.0, g=None)]
    unit = column_unit(rows, "e")
    assert unit.symbol == "kJ" and [scaled(r.e, unit) for r in rows] == ["0.04", "1.5"]
    assert column_unit(rows, "g", "mass").symbol == "mg" and scaled(None, unit) == "—"
