"""CO2e of energy: co2e_g = energy_j / 3.6e6 * intensity_g_per_kwh * pue."""

from __future__ import annotations

import math

import pytest

from wattwise.energy.carbon import CARBON_INTENSITY_G_PER_KWH, CarbonConfig
from wattwise.errors import ConfigError


def test_given_intensity_and_pue():
    estimate = CarbonConfig(intensity_g_per_kwh=300, pue=1.4).estimate(7.2e6)  # 2 kWh
    assert estimate.co2e_g == pytest.approx(2 * 300 * 1.4)
    assert estimate.intensity_g_per_kwh == 300
    assert estimate.pue == 1.4
    assert estimate.source == "given"


def test_given_intensity_overrides_country():
    config = CarbonConfig(intensity_g_per_kwh=10, country="POL")
    assert config.resolve() == (10.0, "given")


def test_country_table_is_case_insensitive():
    intensity, source = CarbonConfig(country="fra").resolve()
    assert intensity == CARBON_INTENSITY_G_PER_KWH["FRA"] == 55
    assert source.startswith("table: FRA")


def test_default_is_the_labelled_world_average():
    estimate = CarbonConfig().estimate(3.6e6)
    assert estimate.intensity_g_per_kwh == CARBON_INTENSITY_G_PER_KWH["WORLD"]
    assert estimate.co2e_g == pytest.approx(CARBON_INTENSITY_G_PER_KWH["WORLD"])
    assert "world average" in estimate.source
    assert estimate.pue == 1.0


def test_zero_energy_and_zero_intensity():
    assert CarbonConfig().estimate(0.0).co2e_g == 0.0
    assert CarbonConfig(intensity_g_per_kwh=0).estimate(1e6).co2e_g == 0.0


def test_to_dict():
    data = CarbonConfig(intensity_g_per_kwh=100).estimate(3.6e6).to_dict()
    assert data == {
        "co2e_g": pytest.approx(100.0),
        "intensity_g_per_kwh": 100.0,
        "pue": 1.0,
        "source": "given",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"intensity_g_per_kwh": -1},
        {"intensity_g_per_kwh": math.nan},
        {"pue": 0.9},
        {"pue": math.nan},
        {"country": "XYZ"},
        {"country": "france"},
    ],
)
def test_invalid_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        CarbonConfig(**kwargs)
