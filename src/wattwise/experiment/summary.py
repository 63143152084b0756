"""What a run of a study did: its :class:`StudySummary` and the totals it reports.

Kept apart from :mod:`wattwise.experiment.sweep` (which runs the study and builds the summary
from its state): the summary's shape, the one-line label of a trial, and the study's energy,
CO2e, distinct trainings and the training reuse avoided, computed from the ``ok`` records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from wattwise.config import StudyConfig
from wattwise.experiment.recipe_searches import StudySearch
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec, training_key


class Highlight(NamedTuple):
    """One trial singled out by the summary (best accuracy, lowest energy)."""

    trial_id: str
    label: str
    value: float
    provenance: str | None = None


@dataclass(frozen=True)
class StudySummary:
    """What a run of a study did and where its results are.

    Attributes:
        study: The study's name.
        search: ``grid`` or ``optuna``.
        study_dir: The study folder; ``store_path`` and ``config_path`` lie in it.
        total: Trials of the study (grid points, or Optuna trials x seeds).
        ok / failed / running: Their status in the store now (``running``: left by an
            interruption, run again on resume).
        left: Trials a resume would still run (``running`` ones and those never begun).
        skipped: Trials that had finished before this run (not run again).
        ran: Trials this run finished.
        elsewhere: Trials this run left to another sweep of the study sharing its store: that
            sweep held them when this one came to them, or stored them first.
        duration_s: Wall time of this run.
        best_accuracy: The ``ok`` trial with the highest accuracy.
        lowest_train_energy: The ``ok`` trial with the lowest training energy (joules).
        interrupted: The run was stopped by Ctrl-C.
        energy_j: Energy of the study's ``ok`` trials, every phase (training, technique,
            measurement; each shared training once, in the trial that ran it).
        co2e_g: CO2e of their training and technique energy (the study's carbon settings).
        trainings: Distinct trainings among them; ``training_avoided_j``: the training energy
            that reusing trained baselines saved (one training's energy per reusing trial).
        failed_trials: ``(trial id, configuration, reason)`` of every failed trial.
        searches: The study's recipe searches (its ``recipe_search`` section), after the
            trials; ``search_energy_j``: what they spent (not in ``energy_j``: they are not
            trials; the study's total is the sum, :attr:`total_energy_j`).
    """

    study: str
    search: str
    study_dir: Path
    store_path: Path | str  # the results.sqlite, or a PostgreSQL store's URL (password masked)
    config_path: Path
    total: int
    ok: int
    failed: int
    running: int
    left: int
    skipped: int
    ran: int
    duration_s: float
    elsewhere: int = 0
    best_accuracy: Highlight | None = None
    lowest_train_energy: Highlight | None = None
    interrupted: bool = False
    energy_j: float = 0.0
    co2e_g: float | None = None
    trainings: int = 0
    training_avoided_j: float = 0.0
    failed_trials: tuple[tuple[str, str, str], ...] = ()
    searches: tuple[StudySearch, ...] = ()

    @property
    def search_energy_j(self) -> float:
        return sum(s.energy_j for s in self.searches)

    @property
    def total_energy_j(self) -> float:
        """The study's trials and its recipe searches."""
        return self.energy_j + self.search_energy_j


def describe_trial(spec: TrialSpec | Mapping[str, Any]) -> str:
    """``digits small_cnn prune:structured:0.5 bs32 lr0.05 ep4 seed0`` (+ ``cap8GiB``, + the
    GPU power limit ``limit200W``)."""
    s = spec.to_dict() if isinstance(spec, TrialSpec) else dict(spec)
    text = (
        f"{s.get('dataset')} {s.get('model')} {s.get('technique')} bs{s.get('batch_size')} "
        f"lr{float(s.get('lr') or 0):g} ep{s.get('epochs')} seed{s.get('seed')}"
    )
    if s.get("gpu_memory_gib") is not None:
        text += f" cap{float(s['gpu_memory_gib']):g}GiB"
    if s.get("gpu_power_limit_w") is not None:
        text += f" limit{float(s['gpu_power_limit_w']):g}W"
    return text


def summary_costs(config: StudyConfig, done: list[TrialRecord]) -> dict[str, Any]:
    """The study's energy, CO2e and what training once per shared training avoided."""
    energy = sum(r.total_energy_j for r in done)
    counted = sum(r.training_energy_j + r.technique_energy_j + r.teacher_energy_j for r in done)
    reused = [b for r in done if isinstance(b := r.details.get("baseline"), Mapping)]
    avoided = sum(
        float(b.get("training_energy_j") or 0.0) for b in reused if not b.get("trained_here")
    )
    trained = {b.get("key") for b in reused} | {r.trial_id for r in done
                                                   if not r.details.get("baseline")}  # fmt: skip
    carbon = config.measurement.monitor_config().carbon
    return {
        "energy_j": energy,
        "co2e_g": carbon.estimate(counted).co2e_g if done else None,
        "trainings": len(trained),
        "training_avoided_j": avoided,
    }


def lowest_training(records: list[TrialRecord]) -> tuple[TrialRecord | None, float | None]:
    """The cheapest distinct training: its first trial and its mean energy (J). Trials that
    share dataset, model, training settings and seed ran the identical training, so their
    energies differ by noise only: such a group counts once, by its mean."""
    groups: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.train_energy_j is not None:
            groups.setdefault(training_key(r.spec), []).append(r)
    if not groups:
        return None, None

    def mean(group: list[TrialRecord]) -> float:
        return sum(r.train_energy_j or 0.0 for r in group) / len(group)

    cheapest = min(groups.values(), key=mean)
    return cheapest[0], mean(cheapest)


def highlight(record: TrialRecord | None, value: float | None, prov: str | None) -> Any:
    if record is None or value is None:
        return None
    return Highlight(record.trial_id, describe_trial(record.spec), float(value), prov)
