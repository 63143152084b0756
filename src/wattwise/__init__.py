"""wattwise: energy-aware optimization of neural networks.

Importing the package is cheap: it imports neither torch nor NVML, and initializes no
accelerator. Public names are resolved lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "EnergyMonitor": "wattwise.energy.monitor",
    "Measurement": "wattwise.energy.base",
    "MonitorConfig": "wattwise.energy.monitor",
    "WattwiseError": "wattwise.errors",
    "load_model": "wattwise.optimize.saved_model",
}

if TYPE_CHECKING:  # pragma: no cover
    from wattwise.energy.base import Measurement
    from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
    from wattwise.errors import WattwiseError
    from wattwise.optimize.saved_model import load_model

__all__ = [
    "EnergyMonitor",
    "Measurement",
    "MonitorConfig",
    "WattwiseError",
    "__version__",
    "load_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
