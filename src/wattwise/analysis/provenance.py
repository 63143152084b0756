"""Where a study's numbers came from: the provenance of every energy component, and the
software and hardware the trials ran on.

    summary = energy_provenance(records)     # status "measured" | "estimated" | "mixed" | ...
    summary.headline, [e.sentence for e in summary.entries]
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from wattwise.experiment.record import TrialRecord


@dataclass(frozen=True)
class ProvenanceEntry:
    """One (component, provenance, detail) seen in the study's measurements."""

    component: str
    kind: str
    label: str
    detail: str
    phases: tuple[str, ...]
    trials: int

    @property
    def sentence(self) -> str:
        """One line for the report, e.g. "CPU energy is an estimate (estimated:tdp): TDP ..."."""
        name = self.component.split(":", 1)[0].upper()
        if ":" in self.component:
            name += f" ({self.component})"
        if self.kind == "estimated":
            text = f"{name} energy is an estimate ({self.label}): {self.detail}"
            if self.label == "estimated:tdp":
                text += " — no RAPL counter was used on this machine"
            return text + "."
        if self.kind == "measured":
            return f"{name} energy was measured ({self.label}): {self.detail or '—'}."
        return f"{name} energy was not measured: {self.detail or 'unavailable'}."


@dataclass(frozen=True)
class ProvenanceSummary:
    """The study's energy provenance: ``status`` is ``measured``, ``estimated`` (every summed
    component is an estimate), ``mixed`` or ``unavailable`` (no energy at all); ``suspect``
    names each phase whose energy a meter or a resumed training marked suspect, the reason and
    how many trials."""

    status: str
    entries: tuple[ProvenanceEntry, ...]
    headline: str
    suspect: tuple[str, ...] = ()  # one sentence per (phase, reason) of suspect energy


def energy_provenance(records: Iterable[TrialRecord]) -> ProvenanceSummary:
    """Collects the provenance of every component of every phase of the ``ok`` records."""
    seen: dict[tuple[str, str, str], tuple[set[str], set[str]]] = {}
    suspect: dict[tuple[str, str], set[str]] = defaultdict(set)
    kinds_summed: set[str] = set()
    fallback: set[str] = set()
    for rec in records:
        if rec.status != "ok":
            continue
        fallback.update(
            p for p in (rec.train_energy_provenance, rec.inference_energy_provenance) if p
        )
        for phase_name, phase in rec.phases.items():
            for comp in (phase or {}).get("components") or []:
                prov = comp.get("provenance") or {}
                kind = str(prov.get("kind", "unavailable"))
                label = str(prov.get("label") or kind)
                key = (str(comp.get("component", "?")), label, str(prov.get("detail", "")))
                phases, trials = seen.setdefault(key, (set(), set()))
                phases.add(phase_name.split("/", 1)[0])
                trials.add(rec.trial_id)
                if comp.get("nested_in") is None and comp.get("energy_j") is not None:
                    kinds_summed.add(kind)
                if prov.get("suspect"):
                    suspect[(phase_name.split("/", 1)[0], str(prov["suspect"]))].add(rec.trial_id)
    entries = tuple(
        ProvenanceEntry(comp, label.split(":", 1)[0], label, detail, tuple(sorted(ph)), len(tr))
        for (comp, label, detail), (ph, tr) in sorted(seen.items())
    )
    kinds = kinds_summed or {k for k in fallback if k != "unavailable"}
    status = "mixed" if "mixed" in kinds or len(kinds) > 1 else next(iter(kinds), "unavailable")
    headline = {
        "estimated": "Every energy number in this study is an ESTIMATE: no hardware energy "
        "counter (RAPL, NVML) was used. Compare variants with each other; do not quote the "
        "absolute joules as measurements.",
        "mixed": "Energy is partly measured and partly ESTIMATED: the components marked "
        "'estimated' below come from a model, not a counter.",
        "measured": "Every energy number in this study was measured by hardware counters or "
        "power sensors.",
        "unavailable": "No energy was recorded in this study's finished trials.",
    }[status]
    flagged = tuple(
        f"{phase} energy of {len(trials)} trial(s) is suspect: {why}."
        for (phase, why), trials in sorted(suspect.items())
    )
    return ProvenanceSummary(status, entries, headline, flagged)


def environment_summary(records: Iterable[TrialRecord]) -> list[tuple[str, str, int]]:
    """``(key, value, trials)`` for each distinct environment value (software, hardware)."""
    values: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        for key, value in rec.environment.items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            values[str(key)][text] += 1
    return [(k, v, n) for k in sorted(values) for v, n in values[k].most_common()]
