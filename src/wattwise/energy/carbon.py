"""CO2-equivalent of measured energy: grid carbon intensity (g CO2e per kWh) x PUE.

The offline table holds approximate yearly averages of electricity-generation carbon intensity
(2023, rounded, as published by Ember / Our World in Data). They are for orientation; for a report,
give the intensity of your grid and hour with ``--carbon-intensity`` and your data centre's PUE
with ``--pue``. ``co2e_g = energy_j / 3.6e6 * intensity_g_per_kwh * pue``.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge

from wattwise.energy.base import CarbonEstimate
from wattwise.validation import NonNegativeNumber, Number, Text, checked, config_dataclass

#: ISO 3166-1 alpha-3 code -> g CO2e / kWh (approximate 2023 averages; "WORLD" is the world mean).
CARBON_INTENSITY_G_PER_KWH: dict[str, float] = {
    "WORLD": 480,
    "AUS": 550,
    "AUT": 110,
    "BEL": 140,
    "BRA": 100,
    "CAN": 130,
    "CHE": 35,
    "CHN": 580,
    "DEU": 380,
    "DNK": 150,
    "ESP": 170,
    "FIN": 80,
    "FRA": 55,
    "GBR": 240,
    "IND": 710,
    "IRL": 280,
    "ITA": 330,
    "JPN": 490,
    "KOR": 430,
    "NLD": 270,
    "NOR": 30,
    "POL": 660,
    "SWE": 40,
    "USA": 370,
    "ZAF": 710,
}


def _known_country(code: str) -> str:
    if code.upper() not in CARBON_INTENSITY_G_PER_KWH:
        known = ", ".join(sorted(CARBON_INTENSITY_G_PER_KWH))
        raise ValueError(f"no carbon intensity for {code!r}; choose from: {known}")
    return code.upper()


#: An ISO 3166-1 alpha-3 code of the offline table, any case (stored upper-case).
Country = Annotated[Text, checked(_known_country)]
#: Power usage effectiveness: facility energy / IT energy (1.0: no overhead counted).
Pue = Annotated[Number, Ge(1.0)]


@config_dataclass
class CarbonConfig:
    """How to turn joules into CO2e.

    Attributes:
        intensity_g_per_kwh: The grid's intensity in g CO2e per kWh; overrides ``country``.
        country: ISO 3166-1 alpha-3 code looked up in the offline table (``None``: world mean).
        pue: Power usage effectiveness of the facility (>= 1; 1.0 = no overhead counted).
    """

    intensity_g_per_kwh: NonNegativeNumber | None = None
    country: Country | None = None
    pue: Pue = 1.0

    def resolve(self) -> tuple[float, str]:
        """(g CO2e per kWh, where it came from)."""
        if self.intensity_g_per_kwh is not None:
            return float(self.intensity_g_per_kwh), "given"
        code = self.country or "WORLD"
        origin = "default: world average" if self.country is None else f"table: {code}"
        return CARBON_INTENSITY_G_PER_KWH[code], f"{origin} (approx. 2023 yearly average)"

    def estimate(self, energy_j: float) -> CarbonEstimate:
        intensity, source = self.resolve()
        co2e_g = energy_j / 3.6e6 * intensity * self.pue
        return CarbonEstimate(co2e_g, intensity, self.pue, source)
