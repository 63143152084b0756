"""One window measured in segments, one after another: an epoch paused by its validations
(the framework callbacks), a training resumed after an interruption (:mod:`wattwise.train.resume`).

    whole = combine("fit", [first_attempt, second_attempt], note="resumed after epoch 2: ...")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from wattwise.energy.base import (
    CarbonEstimate,
    ComponentEnergy,
    Measurement,
    PowerSample,
    Provenance,
)


def combine(name: str, parts: Sequence[Measurement], *, note: str | None = None) -> Measurement:
    """One Measurement named ``name`` for a window measured in ``parts``: energies, durations,
    samples and CO2e add up, peaks are the highest, a component that one part could not measure
    (or lacks) is unavailable for the whole, and the timeline keeps each part's samples at their
    time since the first part began. ``note`` (when given) marks every summed component suspect
    with it (the whole is a lower bound, say). One part named ``name`` and no note: that part.

    Raises:
        ValueError: No parts.
    """
    if not parts:
        raise ValueError(f"window {name!r} has no parts")
    first = parts[0]
    if len(parts) == 1 and note is None:
        return first if first.name == name else replace(first, name=name)
    duration = sum(p.duration_s for p in parts)
    names = list(dict.fromkeys(c.component for p in parts for c in p.components))
    components: list[ComponentEnergy] = []
    for component in names:
        same = [next((c for c in p.components if c.component == component), None) for p in parts]
        gap = next((c for c in same if c is None or c.energy_j is None), False)
        if gap is not False:
            lost = gap or ComponentEnergy(
                component, None, Provenance.unavailable(f"{component}: not in every segment")
            )
            components.append(replace(lost, avg_power_w=None, peak_power_w=None))
            continue
        found = [c for c in same if c is not None]
        base = found[0]
        energy = float(sum(c.energy_j for c in found))  # type: ignore[misc]
        provenance = next((c.provenance for c in found if c.provenance.suspect), base.provenance)
        components.append(
            replace(
                base,
                energy_j=energy,
                provenance=provenance.with_suspect(note) if note is not None else provenance,
                avg_power_w=energy / duration if duration > 0 else None,
                peak_power_w=_highest(c.peak_power_w for c in found),
            )
        )
    gpu_memory: dict[str, int] = {}
    for part in parts:
        for comp, used in part.peak_gpu_memory_bytes.items():
            gpu_memory[comp] = max(gpu_memory.get(comp, 0), used)
    timeline = None
    if all(p.timeline is not None for p in parts):
        timeline = tuple(
            PowerSample(s.t_s + p.start_unix_s - first.start_unix_s, s.power_w)
            for p in parts
            for s in p.timeline or ()
        )
    carbon = None
    if first.carbon is not None and all(p.carbon is not None for p in parts):
        carbon = CarbonEstimate(
            sum(p.carbon.co2e_g for p in parts),  # type: ignore[union-attr]
            first.carbon.intensity_g_per_kwh,
            first.carbon.pue,
            first.carbon.source,
        )
    return Measurement(
        name=name,
        start_unix_s=first.start_unix_s,
        duration_s=duration,
        components=tuple(components),
        peak_power_w=_highest(p.peak_power_w for p in parts),
        peak_rss_bytes=_highest(p.peak_rss_bytes for p in parts),
        peak_gpu_memory_bytes=gpu_memory,
        peak_cuda_allocated_bytes=_highest(p.peak_cuda_allocated_bytes for p in parts),
        peak_cuda_reserved_bytes=_highest(p.peak_cuda_reserved_bytes for p in parts),
        timeline=timeline,
        carbon=carbon,
        samples=sum(p.samples for p in parts),
    )


def _highest(values: Any) -> Any:
    known = [v for v in values if v is not None]
    return max(known) if known else None
