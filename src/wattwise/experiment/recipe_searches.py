"""A study's recipe searches: after its trials, search the recipe space of its trained baselines.

    recipe_search:          # in the study file (wattwise.config.RecipeSearchStudy)
      budget: 8
      floor_points: 1
      sampler: tpe
      baselines: first      # or all: one search per distinct trained baseline
      space: {ratio_low: 0.3, ratio_high: 0.9, int8: [none, static]}

:func:`run_study_searches` runs :func:`wattwise.optimize.recipe_search.search_recipes` on each
chosen trained baseline of the study (``<study>/baselines/<key>.pt``, written by the trials:
train once, compress many), with the trial's data and measurement settings, and keeps each
search in ``<study>/search/<key>.sqlite`` (resumed by the next sweep: finished candidates are
given back to the sampler and never measured again) and its result in
``<study>/search/<key>.json`` (candidates, Pareto front, the chosen recipe with its interval,
the joules the search spent). The search's joules are in that file only: they are not trials,
so the study's store does not count them, and the study summary and the report add them as
their own line (every joule in exactly one place).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.config import StudyConfig
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.recipe_space import RecipeSearchStudy

#: Folder (below the study folder) of the study's recipe searches.
SEARCH_DIR = "search"


@dataclass(frozen=True)
class StudySearch:
    """One recipe search of a study.

    Attributes:
        key: The trained baseline's key (:func:`~wattwise.experiment.baselines.baseline_key`).
        trial_id: The first trial of the grid with that training.
        path: Its result, ``<study>/search/<key>.json``.
        result: The :class:`~wattwise.optimize.recipe_search.SearchResult`, or ``None`` when
            the baseline was never trained (``reason`` says why nothing was searched).
        reason: Why there is no result.
    """

    key: str
    trial_id: str
    path: Path
    result: Any = None
    reason: str | None = None

    @property
    def energy_j(self) -> float:
        """What the search spent (its candidates' steps and comparisons)."""
        return float(self.result.energy_j) if self.result is not None else 0.0

    @property
    def message(self) -> str:
        return self.result.message if self.result is not None else f"not run: {self.reason}"


def search_baselines(config: StudyConfig) -> list[TrialSpec]:
    """The trials whose trained baselines the study's ``recipe_search`` searches: the first
    trial of the grid per distinct trained baseline (``first``: only the first of them).
    Distillation trials train a student, not the baseline: they are not searched."""
    from wattwise.experiment.baselines import baseline_key
    from wattwise.optimize.distill_config import DistillConfig

    section = config.recipe_search
    if section is None:
        return []
    chosen: dict[str, TrialSpec] = {}
    for spec in expand_grid(config):
        if isinstance(spec.steps[0], DistillConfig):
            continue
        chosen.setdefault(baseline_key(spec), spec)
    specs = list(chosen.values())
    return specs[:1] if section.baselines == "first" else specs


def run_study_searches(
    config: StudyConfig,
    study_dir: str | Path,
    *,
    on_candidate: Callable[[Any, int, int], None] | None = None,
    resume: bool = True,
) -> list[StudySearch]:
    """Runs (or resumes) the study's recipe searches (see the module docstring).

    Args:
        config: The study; nothing happens without its ``recipe_search`` section.
        study_dir: The study folder (its ``baselines/`` are searched).
        on_candidate: Told each measured candidate, its index and the budget.
        resume: Continue stored searches (``False``: start them again).
    """
    from wattwise.experiment.baselines import BASELINE_DIR, baseline_key

    section = config.recipe_search
    if section is None:
        return []
    folder = Path(study_dir)
    out: list[StudySearch] = []
    for spec in search_baselines(config):
        key = baseline_key(spec)
        path = folder / SEARCH_DIR / f"{key}.json"
        weights = folder / BASELINE_DIR / f"{key}.pt"
        if not weights.is_file():
            why = f"no trained baseline {weights.name} (trial {spec.trial_id} did not train it)"
            out.append(StudySearch(key, spec.trial_id, path, reason=why))
            continue
        storage = folder / SEARCH_DIR / f"{key}.sqlite"
        result = _search(spec, section, weights, storage, on_candidate, resume)
        _write(path, key, spec, result)
        out.append(StudySearch(key, spec.trial_id, path, result))
    return out


def _search(
    spec: TrialSpec,
    section: RecipeSearchStudy,
    weights: Path,
    storage: Path,
    on_candidate: Callable[[Any, int, int], None] | None,
    resume: bool,
) -> Any:
    from wattwise.energy.monitor import EnergyMonitor
    from wattwise.experiment.runner import load_trial_data, recipe_settings
    from wattwise.optimize.recipe_search import search_recipes
    from wattwise.train.checkpoint import load_checkpoint
    from wattwise.train.device import num_threads, resolve_device

    checkpoint = load_checkpoint(weights)
    data = load_trial_data(spec)
    int8 = any(kind != "none" for kind in section.space.int8)
    device = "cpu" if int8 else str(resolve_device(spec.train.device))  # x86 int8: CPU only
    storage.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        monitor = stack.enter_context(EnergyMonitor(spec.measurement.monitor_config()))
        stack.enter_context(num_threads(spec.train.num_threads))
        return search_recipes(
            checkpoint.build_model(),
            data,
            settings=section,
            space=section.space,
            recipe_settings=recipe_settings(spec, (), device),
            model_spec=checkpoint.model_spec,
            storage=storage,
            monitor=monitor,
            on_candidate=on_candidate,
            resume=resume,
        )


def _write(path: Path, key: str, spec: TrialSpec, result: Any) -> None:
    from wattwise.files import write_json_atomic

    write_json_atomic(path, {"baseline_key": key, "trial_id": spec.trial_id,
                             "spec": spec.to_dict(), **result.to_dict()})  # fmt: skip


def read_study_searches(study_dir: str | Path) -> list[dict[str, Any]]:
    """The stored results of a study's recipe searches (``<study>/search/*.json``), in name
    order; files that are not search results are skipped."""
    folder = Path(study_dir) / SEARCH_DIR
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, Mapping) and "candidates" in data and "baseline_key" in data:
                found.append({**data, "path": str(path)})
    return found
