"""Fallback GPU meter: ``nvidia-smi`` queried in CSV for power and memory.

Used where the NVML bindings cannot start but the ``nvidia-smi`` program works. It has no energy
counter: power is sampled (each sample runs the program, tens of milliseconds) and integrated by
the monitor, so it is coarser and costlier than NVML.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from wattwise.energy.base import DEVICE_WIDE, Availability, Provenance, Reading
from wattwise.energy.nvml import parse_visible_devices
from wattwise.errors import MeterError

QUERY_FIELDS = ("index", "uuid", "name", "power.draw", "memory.used", "memory.total")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class SmiRow:
    """One GPU line of ``nvidia-smi --query-gpu`` output, in base units."""

    index: int
    uuid: str
    name: str
    power_w: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None


def _number(text: str) -> float | None:
    """Parse ``'71.23'``, ``'71.23 W'``, ``'1024 MiB'``; ``None`` for N/A, [Not Supported]..."""
    text = text.strip()
    match = _NUMBER.search(text)
    if not match or "n/a" in text.lower() or "not supported" in text.lower():
        return None
    return float(match.group(0))


def _mib(text: str) -> int | None:
    value = _number(text)
    return None if value is None else int(value * 2**20)


def parse_query_output(output: str) -> list[SmiRow]:
    """Parse CSV from ``--query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits``.

    Tolerates a header line, unit suffixes, blank lines, ``[N/A]`` values and extra whitespace;
    raises ``ValueError`` on rows that are not GPU rows.
    """
    rows: list[SmiRow] = []
    for record in csv.reader(io.StringIO(output), skipinitialspace=True):
        if not record or all(not cell.strip() for cell in record):
            continue
        if record[0].strip().lower() == "index":  # a header line
            continue
        if len(record) < len(QUERY_FIELDS):
            raise ValueError(f"unexpected nvidia-smi line: {','.join(record)!r}")
        cells = [c.strip() for c in record]
        try:
            index = int(cells[0])
        except ValueError:
            raise ValueError(f"unexpected nvidia-smi line: {','.join(record)!r}") from None
        rows.append(
            SmiRow(
                index=index,
                uuid=cells[1],
                name=cells[2],
                power_w=_number(cells[3]),
                memory_used_bytes=_mib(cells[4]),
                memory_total_bytes=_mib(cells[5]),
            )
        )
    return rows


class NvidiaSmiMeter:
    """GPU power and memory from the ``nvidia-smi`` program.

    Args:
        executable: Path or name of ``nvidia-smi`` (default: found on ``PATH``).
        required: When true (asked for by name), failure raises instead of ``unavailable``.
        visible_devices: A ``CUDA_VISIBLE_DEVICES`` value (default: the environment's).
        timeout_s: Limit for one query, in seconds; a query that takes longer is killed and
            raises ``TimeoutError`` (the monitor then reports the GPU unavailable for the rest
            of the window). Below the monitor's own read timeout, so that the program is
            killed rather than left running.
    """

    name = "nvidia-smi"

    def __init__(
        self,
        executable: str | None = None,
        *,
        required: bool = False,
        visible_devices: str | None = None,
        timeout_s: float = 4.0,
    ):
        self.executable = shutil.which(executable or "nvidia-smi")
        self.timeout_s = timeout_s
        self._selected: dict[int, str] = {}  # nvidia-smi index -> component
        self._names: dict[str, str] = {}
        if visible_devices is None:
            visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self._availability = self._probe(visible_devices)
        if required and not self._availability.available:
            raise MeterError(
                f"nvidia-smi was requested but cannot measure: {self._availability.reason}"
            )

    def query(self) -> list[SmiRow]:
        """Run one query (raises ``OSError``/``TimeoutError``/``subprocess`` errors/``ValueError``).

        A query that takes longer than ``timeout_s`` is killed and raises ``TimeoutError``.
        """
        try:
            result = subprocess.run(
                [
                    self.executable or "nvidia-smi",
                    f"--query-gpu={','.join(QUERY_FIELDS)}",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"query timed out after {self.timeout_s:g} s (killed)") from None
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise OSError(f"nvidia-smi exited {result.returncode}: {' '.join(message)[:200]}")
        return parse_query_output(result.stdout)

    def _probe(self, visible: str | None) -> Availability:
        if self.executable is None:
            return Availability(False, "nvidia-smi is not on PATH")
        try:
            rows = self.query()
        except (OSError, subprocess.SubprocessError, ValueError) as err:
            return Availability(False, f"nvidia-smi failed: {err}")
        rows.sort(key=lambda r: r.index)
        chosen = parse_visible_devices(visible, len(rows), [r.uuid for r in rows])
        for visible_index, position in enumerate(chosen):
            row = rows[position]
            if row.power_w is None:
                continue  # no power reading: cannot measure this GPU
            self._selected[row.index] = f"gpu:{visible_index}"
            self._names[f"gpu:{visible_index}"] = row.name
        if not self._selected:
            return Availability(False, "nvidia-smi reports no visible GPU with a power reading")
        desc = "; ".join(f"{c}={n} (power sampling)" for c, n in self._names.items())
        return Availability(True, desc)

    def availability(self) -> Availability:
        return self._availability

    def components(self) -> list[str]:
        return list(self._selected.values())

    def nested_components(self) -> dict[str, str]:
        return {}

    def provenance(self, component: str) -> Provenance:
        return Provenance.measured(
            "nvidia-smi",
            f"{self._names[component]}: power.draw samples, integrated; "
            f"{DEVICE_WIDE.format(device='GPU')}",
            scope="device",
        )

    def read(self) -> Reading:
        power: dict[str, float] = {}
        memory: dict[str, int] = {}
        for row in self.query():
            component = self._selected.get(row.index)
            if component is None:
                continue
            if row.power_w is not None:
                power[component] = row.power_w
            if row.memory_used_bytes is not None:
                memory[component] = row.memory_used_bytes
        return Reading(power_w=power, memory_bytes=memory)

    def close(self) -> None:
        return None
