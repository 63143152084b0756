"""The Optuna search over a study's axes: which points to run next, and what each one scored.

:func:`wattwise.experiment.sweep.run_study` drives it for ``search.kind: optuna``: it asks for a
batch of points, runs every point once per seed, and tells Optuna the mean of each objective over
the seeds' ``ok`` records (a point with none fails). The search lives in its own SQLite file
(only the sweep's process uses it), or, for a study stored in PostgreSQL, in that database
(:func:`optuna_storage`: every worker's sweep shares it), so that a resumed study counts the
trials it finished and finishes those a killed run left open.
A point is evaluated once: a proposal that repeats one is recorded as a failed duplicate, which
the sampler ignores and the count leaves out, and a search never asks for more points than the
grid has.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from wattwise.config import StudyConfig
from wattwise.errors import ConfigError
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec, expand_grid

#: Axes Optuna chooses from, by trial field -> study key (seeds are replicates: every Optuna
#: trial runs all of them).
SEARCH_AXES = {
    "dataset": "datasets",
    "model": "models",
    "technique": "techniques",
    "batch_size": "batch_sizes",
    "lr": "learning_rates",
    "epochs": "epochs",
    "gpu_memory_gib": "gpu_memory_gib",
    "gpu_power_limit_w": "gpu_power_limits_w",
}


#: The Optuna study's storage inside a study folder (a study stored in SQLite).
OPTUNA_FILE = "optuna.sqlite"

#: User attribute of an Optuna trial that repeated an evaluated point (its number).
DUPLICATE = "duplicate_of"
#: Repeated proposals in a row after which the first unevaluated grid point is taken.
MAX_REPEATS = 20


@dataclass(frozen=True)
class SearchPoint:
    """One Optuna trial: its number and the study's trials that run its point, one per seed."""

    number: int
    specs: tuple[TrialSpec, ...]


def objective_values(
    records: Sequence[TrialRecord | None], objectives: Sequence[str]
) -> list[float] | None:
    """The mean of each objective (a :class:`TrialRecord` attribute) over the ``ok`` records.

    Returns:
        One value per objective, or ``None`` when an objective has no number (no ``ok`` record,
        or none that measured it): Optuna records the point as failed.
    """
    ok = [r for r in records if r is not None and r.status == "ok"]
    values = []
    for metric in objectives:
        numbers = [getattr(r, metric) for r in ok if getattr(r, metric) is not None]
        if not numbers:
            return None
        values.append(sum(numbers) / len(numbers))
    return values


def optuna_storage(config: StudyConfig, folder: Path) -> Path | BaseStorage:
    """Where a study's search lives: ``folder/optuna.sqlite``, or for a study stored in
    PostgreSQL (``store:``) that database (its ``wattwise_optuna`` schema)."""
    if config.store is None:
        return folder / OPTUNA_FILE
    from wattwise.experiment.store_postgres import optuna_storage as in_database

    return in_database(config.store)  # type: ignore[no-any-return]


class OptunaSearch:
    """``search.n_trials`` Optuna trials (TPE, seeded by the study's first seed) over the study.

    Attributes:
        total: Trials of the study this search runs (Optuna trials x seeds).
        finished: The points Optuna had been told about before (complete or failed).
        remaining: Optuna trials still to tell, including those :meth:`ask` handed out.
    """

    def __init__(
        self, config: StudyConfig, storage_path: Path | BaseStorage, *, resume: bool = True
    ) -> None:
        """Opens (or, with ``resume=False``, starts again) the search stored in ``storage_path``
        (a SQLite file, or an Optuna storage: :func:`optuna_storage`).

        Raises:
            ConfigError: The stored search has other objectives or directions.
        """
        search = config.search
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if isinstance(storage_path, BaseStorage):
            storage: str | BaseStorage = storage_path
            where = "the study's database"
        else:
            storage, where = f"sqlite:///{Path(storage_path).resolve()}", str(storage_path)
        if not resume:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=config.name, storage=storage)
        self._study = optuna.create_study(
            study_name=config.name,
            storage=storage,
            load_if_exists=True,
            directions=list(search.directions),
            sampler=optuna.samplers.TPESampler(seed=config.seeds[0]),
        )
        wanted = [optuna.study.StudyDirection[d.upper()] for d in search.directions]
        if list(self._study.directions) != wanted:
            raise ConfigError(
                f"{where} holds a search with other objectives; run with "
                "--no-resume to start it again, or use another output folder"
            )
        self._objectives = tuple(search.objectives)
        self._axes = {name: tuple(getattr(config, key)) for name, key in SEARCH_AXES.items()}
        self._seeds = tuple(config.seeds)
        self._index = {_point(spec): spec for spec in expand_grid(config)}
        trials = self._study.get_trials(deepcopy=False)
        done = [
            t
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.FAIL) and DUPLICATE not in t.user_attrs
        ]
        # left RUNNING by a killed run: asked again before anything new
        self._stale = [t for t in trials if t.state == TrialState.RUNNING]
        self._seen = {self._key(t.params): t.number for t in [*done, *self._stale]}
        self.finished = tuple(SearchPoint(t.number, self._specs(t.params)) for t in done)
        points = math.prod(len(v) for v in self._axes.values())
        # never more points than the grid has: a point is evaluated once, never repeated
        self.remaining = max(0, min(search.n_trials, points) - len(done))
        self.total = (len(done) + self.remaining) * len(self._seeds)

    def ask(self, count: int) -> list[SearchPoint]:
        """Up to ``count`` points to run (at most :attr:`remaining`): first those a killed run
        left open, then new ones from the sampler. Tell each one before asking again."""
        points = []
        while len(points) < min(count, self.remaining):
            if self._stale:
                old = self._stale.pop(0)
                points.append(SearchPoint(old.number, self._specs(old.params)))
                continue
            points.append(self._new_point())
        return points

    def _new_point(self) -> SearchPoint:
        """A point no trial has evaluated: a proposal the sampler repeats is recorded as a
        failed duplicate (ignored by the sampler, not counted) and another is asked for; after
        :data:`MAX_REPEATS` repeats in a row the first unevaluated grid point is taken."""
        for _ in range(MAX_REPEATS):
            trial = self._study.ask()
            params = {
                name: trial.suggest_categorical(name, list(values))
                for name, values in self._axes.items()
                if len(values) > 1
            }
            key = self._key(params)
            if key not in self._seen:
                self._seen[key] = trial.number
                return SearchPoint(trial.number, self._specs(params))
            trial.set_user_attr(DUPLICATE, self._seen[key])
            self._study.tell(trial.number, state=TrialState.FAIL)
        free = next(p for p in self._grid() if self._key(p) not in self._seen)
        self._study.enqueue_trial(free)
        return self._new_point()

    def _grid(self) -> Iterator[dict[str, Any]]:
        varied = {name: values for name, values in self._axes.items() if len(values) > 1}
        for combo in itertools.product(*varied.values()):
            yield dict(zip(varied, combo, strict=True))

    def _key(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params.get(name, values[0]) for name, values in self._axes.items())

    def tell(self, point: SearchPoint, records: Sequence[TrialRecord | None]) -> None:
        """Tells Optuna what ``point`` scored from its seeds' stored records."""
        values = objective_values(records, self._objectives)
        if values is None:
            self._study.tell(point.number, state=TrialState.FAIL)
        else:
            self._study.tell(point.number, values)
        self.remaining -= 1

    def _specs(self, params: Mapping[str, Any]) -> tuple[TrialSpec, ...]:
        point = [params.get(name, values[0]) for name, values in self._axes.items()]
        return tuple(self._index[(*point, seed)] for seed in self._seeds)


def _point(spec: TrialSpec) -> tuple[Any, ...]:
    return (*(getattr(spec, name) for name in SEARCH_AXES), spec.seed)
