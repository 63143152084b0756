"""The sampled power of one phase of one trial (records keep the training phase's timeline).

render_timeline(timeline_data(analysis))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from matplotlib.figure import Figure

from wattwise.analysis.metrics import Analysis, Records, as_analysis
from wattwise.analysis.plots._common import colors, figure, message_figure


class TimelineData(NamedTuple):
    trial_id: str | None
    phase: str | None
    t_s: tuple[float, ...]
    power_w: Mapping[str, tuple[float, ...]]  # component -> watts at each t_s
    message: str | None


def timeline_data(
    study: Analysis | Records, *, trial_id: str | None = None, phase: str | None = None
) -> TimelineData:
    """The sampled power of one phase of one trial (the first ``ok`` trial that kept a timeline,
    preferring the ``train`` phase). Trial records keep the training phase's timeline (thinned to
    at most 600 samples); where none was kept, ``message`` says so."""
    for rec in as_analysis(study).records:
        if trial_id is not None and rec.trial_id != trial_id:
            continue
        names = [phase] if phase else ["train", *sorted(rec.phases)]
        for name in names:
            samples = (rec.phases.get(name) or {}).get("timeline")
            if samples:
                comps = sorted({c for s in samples for c in (s.get("power_w") or {})})
                return TimelineData(
                    rec.trial_id,
                    name,
                    tuple(float(s["t_s"]) for s in samples),
                    {
                        c: tuple(float((s.get("power_w") or {}).get(c, math.nan)) for s in samples)
                        for c in comps
                    },
                    None,
                )
    which = f" for trial {trial_id}" if trial_id else ""
    return TimelineData(
        trial_id,
        phase,
        (),
        {},
        f"no timeline recorded{which}: only the training phase keeps its power samples "
        "(measure a run with `wattwise monitor --json` to keep one)",
    )


def render_timeline(data: TimelineData) -> Figure:
    """Power of each component (W) against the time since the phase began."""
    title = "Power timeline"
    if data.message:
        return message_figure(title, data.message)
    fig, (ax,) = figure()
    palette = colors(data.power_w)
    for comp, watts in data.power_w.items():
        ax.plot(data.t_s, watts, color=palette[comp], label=comp, linewidth=1)
    ax.set_xlabel("time since the phase began (s)")
    ax.set_ylabel("power (W)")
    ax.set_title(f"{title}: trial {data.trial_id}, phase {data.phase}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig
