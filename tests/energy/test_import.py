"""Importing wattwise is cheap: no torch, no NVML, no accelerator initialized."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import wattwise

CHECK = """
import json, sys
{imports}
print(json.dumps({{name: name in sys.modules for name in ("torch", "pynvml", "pynvml_utils")}}))
"""


def _loaded_after(imports: str) -> dict[str, bool]:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(imports=imports)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_wattwise_energy_loads_neither_torch_nor_nvml():
    loaded = _loaded_after("import wattwise\nimport wattwise.energy")
    assert loaded == {"torch": False, "pynvml": False, "pynvml_utils": False}


def test_lazy_public_names_and_cli_stay_lean():
    loaded = _loaded_after(
        "import wattwise\n"
        "wattwise.EnergyMonitor, wattwise.Measurement, wattwise.MonitorConfig\n"
        "import wattwise.cli\n"
        "import wattwise.cli.render, wattwise.cli.progress, wattwise.energy.command\n"
        "from wattwise.energy import base, carbon, cpu_model, memory, meters, monitor, nvml\n"
        "from wattwise.energy import nvidia_smi, process, rapl, devices\n"
    )
    assert loaded == {"torch": False, "pynvml": False, "pynvml_utils": False}


def test_measuring_a_window_does_not_import_torch():
    loaded = _loaded_after(
        "from wattwise.energy import EnergyMonitor\n"
        "with EnergyMonitor() as monitor:\n"
        "    with monitor.window('w') as w:\n"
        "        pass\n"
        "assert w.measurement is not None\n"
    )
    assert loaded["torch"] is False


def test_unknown_attribute_of_the_package():
    with pytest.raises(AttributeError):
        _ = wattwise.NoSuchThing
    assert wattwise.__version__
