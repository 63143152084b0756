"""The report's operator section: each variant's top operators beside its J/image.

A trial run with ``measurement: {profile: true}`` stores operator profiles
(:class:`~wattwise.energy.operators.OperatorProfile`): a few training steps and each variant's
inference batches. :func:`study_profiles` turns them into rows, once, for every view: one row per
profile with the variant's J/image and its verdict from the comparison next to the top
operators, and for each operator an estimated share of J/image (its estimated energy share of the
profiled window x the variant's compared J/image). Reading the baseline's rows against a
variant's shows which operators a technique made cheaper. Every operator energy is an
estimate (labelled so); the method is stated with each profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wattwise.analysis.base import fmt
from wattwise.analysis.metrics import config_label
from wattwise.energy.operators import ESTIMATED, OperatorProfile, OperatorStat
from wattwise.experiment.record import TrialRecord


@dataclass(frozen=True)
class ProfileRow:
    """One stored operator profile of an ok trial, with what the trial measured of its variant.

    Attributes:
        trial_id: The trial.
        label: Its configuration (dataset, model, technique, settings).
        phase: ``train`` or ``inference``.
        variant: The variant profiled (inference), else ``None``.
        j_per_image: The variant's J/image from the comparison (inference), else ``None``.
        verdict: The comparison's verdict on it against the baseline, if any.
        profile: The profile itself.
    """

    trial_id: str
    label: str
    phase: str
    variant: str | None
    j_per_image: float | None
    verdict: str | None
    profile: OperatorProfile

    def operator_j_per_image(self, op: OperatorStat) -> float | None:
        """The operator's estimated share of the variant's J/image (J), or ``None``."""
        if op.energy_share is None or self.j_per_image is None:
            return None
        return op.energy_share * self.j_per_image


def study_profiles(records: Iterable[TrialRecord]) -> tuple[ProfileRow, ...]:
    """The operator profiles of the ok trials, in trial order, the training first."""
    rows: list[ProfileRow] = []
    for record in records:
        if record.status != "ok" or not record.profiles:
            continue
        variants = {v.step: v for v in record.variants}
        label = config_label(record.spec)
        for stored in record.profiles:
            profile = OperatorProfile.from_dict(stored)
            variant = variants.get(profile.variant) if profile.variant is not None else None
            rows.append(
                ProfileRow(
                    trial_id=record.trial_id,
                    label=label,
                    phase=profile.phase,
                    variant=profile.variant,
                    j_per_image=variant.inference_energy_per_image_j if variant else None,
                    verdict=variant.verdict if variant else None,
                    profile=profile,
                )
            )
    return tuple(rows)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def profiles_markdown(rows: Sequence[ProfileRow]) -> list[str]:
    """The Markdown section (empty without profiles)."""
    if not rows:
        return []
    out = [
        "## Operators",
        "",
        f"Top operators of the profiled training steps and of each variant's inference "
        f"(torch.profiler). Energy shares are {ESTIMATED}: "
        f"{rows[0].profile.method}. {rows[0].profile.note}.",
        "",
    ]
    for row in rows:
        head = f"### `{row.trial_id}` {row.label}: {row.profile.label}"
        if row.j_per_image is not None:
            head += f" — {fmt(row.j_per_image, '.4g', 1e3)} mJ/image"
        out += [head, ""]
        if row.verdict:
            out += [f"Compared with the baseline: {row.verdict}.", ""]
        out += [
            "| operator | calls | self CPU (ms) | MFLOPs | energy share (estimated) | "
            "mJ/image (estimated) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for op in row.profile.operators:
            name = op.name.replace("|", "\\|")
            out.append(
                f"| `{name}` | {op.calls} | {op.self_cpu_time_s * 1e3:.3f} | "
                f"{op.flops / 1e6:.3g} | {_share(op.energy_share)} | "
                f"{fmt(row.operator_j_per_image(op), '.4g', 1e3)} |"
            )
        out.append("")
    return out
