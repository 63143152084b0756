"""Terminal presentation of operator profiles (``train --profile``, ``optimize --profile``).

One compact table per profile that fits 80 columns, in the habits of
:mod:`wattwise.cli.render`: number columns keep their line, the operator name wraps, how the
numbers were made goes into the caption (the energy shares are estimates, and say so).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from wattwise.cli.render import escape, fmt_bytes, fmt_energy
from wattwise.energy.operators import ESTIMATED, OperatorProfile


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def operators_table(profile: OperatorProfile) -> Table:
    """The top operators of ``profile``: calls, self CPU time (and self CUDA time when CUDA
    ran), FLOPs, net memory allocated by the operator itself, estimated energy share."""
    what = "training steps" if profile.phase == "train" else "inference batches"
    steps = "" if profile.steps is None else f"{profile.steps} "
    table = Table(
        title=(
            f"{escape(profile.label)}: top operators of {steps}{what} "
            f"({profile.duration_s:.2f} s, {fmt_energy(profile.energy_j)}, profiled)"
        ),
        title_justify="left",
    )
    cuda = any(op.self_cuda_time_s is not None for op in profile.operators)
    table.add_column("operator", overflow="fold")
    columns = ["calls", "self CPU"] + (["self CUDA"] if cuda else []) + ["MFLOP", "memory"]
    for col in [*columns, "energy"]:
        table.add_column(col, justify="right", no_wrap=True, overflow="fold")
    for op in profile.operators:
        cells = [str(op.calls), f"{op.self_cpu_time_s * 1e3:.2f} ms"]
        if cuda:
            cuda_s = op.self_cuda_time_s
            cells.append("-" if cuda_s is None else f"{cuda_s * 1e3:.2f} ms")
        cells += [f"{op.flops / 1e6:.3g}", fmt_bytes(op.self_cpu_memory_bytes)]
        table.add_row(escape(op.name), *cells, _share(op.energy_share))
    table.caption = (
        f"other operators {_share(profile.other_share)}, in no operator "
        f"{_share(profile.unattributed_share)} (Python, idle, the profiler). "
        f"energy = {ESTIMATED} share of the profiled window's energy "
        f"({profile.energy_provenance}): {profile.method.removeprefix(ESTIMATED + ': ')}. "
        f"memory = net bytes the operator allocated itself. {profile.note}."
    )
    table.caption_justify = "left"
    return table


def print_profiles(
    console: Console, profiles: Iterable[OperatorProfile | Mapping[str, Any]]
) -> None:
    """Prints one :func:`operators_table` per profile (stored dicts are read back first)."""
    for profile in profiles:
        if not isinstance(profile, OperatorProfile):
            profile = OperatorProfile.from_dict(profile)
        console.print(operators_table(profile))
