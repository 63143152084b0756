"""Measuring energy, power, time and memory: meters, the EnergyMonitor and its results."""

from __future__ import annotations

from wattwise.energy.base import (
    Availability,
    CarbonEstimate,
    ComponentEnergy,
    Measurement,
    Meter,
    PowerSample,
    ProfileSummary,
    Provenance,
    Reading,
)
from wattwise.energy.carbon import CarbonConfig
from wattwise.energy.meters import METER_NAMES, MeterSet, MeterSettings, create_meters
from wattwise.energy.monitor import EnergyMonitor, MonitorConfig, Window

__all__ = [
    "METER_NAMES",
    "Availability",
    "CarbonConfig",
    "CarbonEstimate",
    "ComponentEnergy",
    "EnergyMonitor",
    "Measurement",
    "Meter",
    "MeterSet",
    "MeterSettings",
    "MonitorConfig",
    "PowerSample",
    "ProfileSummary",
    "Provenance",
    "Reading",
    "Window",
    "create_meters",
]
