"""Running a study: expand the grid (or let Optuna search it), skip what is done, run the rest.

    from wattwise.config import load_study_config
    from wattwise.experiment.sweep import run_study

    summary = run_study(load_study_config("study.yaml"))     # resumes by default

The study folder (``<output_dir>/<name>``, or ``study_dir``) holds ``study.yaml`` (the resolved
config), ``results.sqlite`` (one row per trial), ``teachers/`` (trained distillation teachers),
``baselines/`` (trained weights trials share), ``models/`` (each ok trial's final model, unless
``keep_models: false``: :mod:`~wattwise.experiment.kept_models`), ``sweep.lock`` and, for an
Optuna search (:mod:`wattwise.experiment.search`), ``optuna.sqlite``.
A study whose ``store:`` names a PostgreSQL database keeps its trials, and its Optuna search,
there instead (:mod:`wattwise.experiment.store_postgres`); ``study.yaml`` records the URL without
its password.
Trials finished in an earlier run are skipped; a trial left ``running`` by a killed or
interrupted run is run again. ``run_study`` prints nothing: it tells a :class:`StudyReporter`
what happens (the command line draws a live bar from it), with each running trial's predicted
training total (:class:`~wattwise.train.predict.RunPredictor`). See docs/experiments.md.

One sweep at a time: ``run_study`` holds the study's :data:`LOCK_FILE` (a
:class:`~wattwise.files.FileLock`, released by the OS when the process ends, however it ends)
from before it opens the store until it returns; a second sweep of the study is refused with
:class:`StudyLocked`, naming the holder, or waits (``wait=True``). Its workers never write the
store (the executors hand records to this process), so this lock covers every write. Nothing is
written to the folder before the study is checked against it: the store must belong to this
study, and a search must be able to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wattwise.config import StudyConfig, resolved_yaml
from wattwise.errors import ConfigError, WattwiseError
from wattwise.experiment.executors import Executor, create_executor
from wattwise.experiment.leases import Leases, lease_owner
from wattwise.experiment.plan import plan_study
from wattwise.experiment.recipe_searches import StudySearch, run_study_searches
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.search import OPTUNA_FILE as OPTUNA_FILE  # also this module's name
from wattwise.experiment.search import OptunaSearch, optuna_storage
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.experiment.store import (
    CONFIG_FILE,
    STORE_FILE,
    ResultsStore,
    Store,
    TrialAlreadyDone,
    check_study,
    open_store,
)
from wattwise.experiment.summary import (
    StudySummary,
    describe_trial,
    highlight,
    lowest_training,
    summary_costs,
)
from wattwise.experiment.teachers import TEACHER_DIR
from wattwise.files import FileLock, LockHolder, write_text_atomic
from wattwise.train.predict import Prediction, RunPredictor

#: The lock a running sweep holds in its study folder.
LOCK_FILE = "sweep.lock"


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`run_study`; ``summary`` says what is stored. Every trial that
    finished is committed; the trial(s) in progress stay ``running`` and run again on resume."""

    def __init__(self, summary: StudySummary) -> None:
        super().__init__(f"study {summary.study} interrupted")
        self.summary = summary


class StudyLocked(WattwiseError):
    """Another sweep is running this study (``holder`` says which process)."""

    def __init__(self, study: str, folder: Path, holder: LockHolder) -> None:
        super().__init__(
            f"study {study} is being run by another sweep ({holder.describe()}) in {folder}; "
            "wait for it to end (or pass --wait), or stop it first"
        )
        self.study = study
        self.folder = folder
        self.holder = holder


class StudyReporter(Protocol):
    """What :func:`run_study` tells as it goes; every method is called in the calling thread.

    ``done`` counts the study's trials that are finished (earlier, or by this run) and ``total``
    is the study's size, so that a reporter needs no counting of its own.
    """

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        """The plan: ``total`` trials, ``done`` of them finished earlier, run by ``executor``."""

    def on_trial_start(self, spec: TrialSpec, done: int, total: int) -> None:
        """A trial begins (with a parallel executor, several run at once)."""

    def on_trial_prediction(self, trial_id: str, prediction: Prediction) -> None:
        """Optional (called only when the reporter has it): after one of a running trial's first
        training epochs, its training's predicted total (none for a reused training; none with
        the ``slurm`` executor, whose jobs report no epochs: the record keeps them)."""

    def on_trial_end(self, record: TrialRecord, done: int, total: int) -> None:
        """A trial finished, ``ok`` or ``failed``, and is committed; ``done`` counts it."""

    def on_progress(self, done: int, total: int) -> None:
        """``done`` grew without a trial running (a point an Optuna search had picked before)."""

    def on_recipe_candidate(self, candidate: Any, index: int, budget: int) -> None:
        """Optional (called only when the reporter has it): a recipe search after the trials
        (the study's ``recipe_search`` section) measured its ``index``-th candidate
        (:class:`~wattwise.optimize.recipe_search.SearchCandidate`) of ``budget``."""

    def on_study_end(self, summary: StudySummary) -> None:
        """The study ran to its end (not called when it is interrupted or fails)."""


class _Silent:
    """The reporter of a study run without one: it ignores everything."""

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        pass

    def on_trial_start(self, spec: TrialSpec, done: int, total: int) -> None:
        pass

    def on_trial_prediction(self, trial_id: str, prediction: Prediction) -> None:
        pass

    def on_trial_end(self, record: TrialRecord, done: int, total: int) -> None:
        pass

    def on_progress(self, done: int, total: int) -> None:
        pass

    def on_study_end(self, summary: StudySummary) -> None:
        pass


def study_dir_of(config: StudyConfig) -> Path:
    """``<output_dir>/<name>``: where a study's results go by default."""
    return Path(config.output_dir) / config.name


def store_location(config: StudyConfig, folder: Path) -> str | Path:
    """Where the study's trials are stored: its ``store:`` URL, else ``folder/results.sqlite``."""
    return config.store if config.store is not None else folder / STORE_FILE


def run_study(
    config: StudyConfig,
    *,
    resume: bool = True,
    executor: Executor | None = None,
    reporter: StudyReporter | None = None,
    retry_failed: bool = False,
    study_dir: str | Path | None = None,
    wait: bool = False,
) -> StudySummary:
    """Runs a study: every grid point, or ``search.n_trials`` Optuna trials.

    Args:
        config: The validated study.
        resume: Skip trials that finished in an earlier run (default). ``False`` runs every
            trial again, replacing stored results (and starts a new Optuna search).
        executor: Where trials run (default: the study's ``executor`` section; an executor
            created here is closed here, one passed in is left open).
        reporter: Told the plan, each trial's start and end, and the summary (default: none).
        retry_failed: Also run trials that failed in an earlier run.
        study_dir: The study folder (default ``<output_dir>/<name>``).
        wait: When another sweep runs this study, wait for it to end (default: refuse).

    Returns:
        The :class:`StudySummary`.

    Raises:
        ConfigError: The plan finds a problem (missing data or checkpoints, GPU caps on a CPU:
            :func:`~wattwise.experiment.plan.plan_study`), the study folder cannot be created
            or written, or a search cannot resume.
        StudyLocked: Another sweep runs this study (without ``wait``).
        StoreError: The folder's store belongs to another study, or cannot be used.
        StudyInterrupted: Ctrl-C (a ``KeyboardInterrupt``), after what finished was committed.
    """
    started = time.perf_counter()
    plan_study(config).check()  # missing data, GPU caps on a CPU...: refused before anything
    folder = Path(study_dir) if study_dir is not None else study_dir_of(config)
    _make_folder(folder)
    check_study(store_location(config, folder), config.name)  # another study's: refused untouched
    lock = _lock(folder, config.name, wait)
    try:
        return _run_locked(config, folder, started, resume, executor, reporter, retry_failed)
    finally:
        lock.release()


def _run_locked(
    config: StudyConfig,
    folder: Path,
    started: float,
    resume: bool,
    executor: Executor | None,
    reporter: StudyReporter | None,
    retry_failed: bool,
) -> StudySummary:
    reporter = reporter if reporter is not None else _Silent()
    own = executor is None
    store = open_store(store_location(config, folder), study=config.name)  # not another study's
    state = _State(config, folder, store, reporter, resume, retry_failed)
    try:
        executor = executor or create_executor(config.executor)
        with state.leases:  # this sweep's claims, renewed while it runs, released at its end
            if config.search.kind == "optuna":
                _search(state, executor)
            else:
                _grid(state, executor)
        if config.recipe_search is not None:  # on the trained baselines the trials left
            told = getattr(reporter, "on_recipe_candidate", None)  # optional (StudyReporter)
            state.searches = run_study_searches(config, folder, on_candidate=told, resume=resume)
    except KeyboardInterrupt:
        summary = _summary(state, started, interrupted=True)
        raise StudyInterrupted(summary) from None
    finally:
        if own and executor is not None:
            with contextlib.suppress(Exception):
                executor.close()
        store.close()
    summary = _summary(state, started)
    reporter.on_study_end(summary)
    return summary


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the study folder {folder}: {err.strerror or err}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"the study folder {folder} is not writable")


def _lock(folder: Path, study: str, wait: bool) -> FileLock:
    """The study's lock, held; :class:`StudyLocked` when another sweep holds it."""
    lock = FileLock(folder / LOCK_FILE)
    try:
        if not lock.acquire(blocking=wait):
            raise StudyLocked(study, folder, lock.holder())
    except OSError as err:
        raise ConfigError(f"cannot lock the study folder {folder}: {err.strerror or err}") from None
    return lock


def recorded_config(config: StudyConfig, folder: Path) -> StudyConfig:
    """The study as ``study.yaml`` records it: in a folder named after the study, ``output_dir``
    is the folder's parent (absolute), so that ``wattwise sweep <folder>/study.yaml`` resumes
    this folder wherever it is run from. A PostgreSQL ``store`` is kept without its password."""
    if config.store is not None:
        from wattwise.experiment.store_postgres import url_without_password

        config = dataclasses.replace(config, store=url_without_password(config.store))
    if folder.name != config.name:
        return config
    return dataclasses.replace(config, output_dir=os.path.abspath(folder.parent))


def _write_config(folder: Path, config: StudyConfig, store: Store) -> None:
    """``study.yaml`` and the store's copy of it: written once the study is known to fit."""
    text = resolved_yaml(recorded_config(config, folder))
    config_path = folder / CONFIG_FILE
    try:
        write_text_atomic(config_path, text)
    except OSError as err:
        raise ConfigError(f"cannot write {config_path}: {err.strerror or err}") from None
    store.set_config_yaml(text)


@dataclass
class _State:
    config: StudyConfig
    folder: Path
    store: Store
    reporter: StudyReporter
    resume: bool
    retry_failed: bool
    ids: list[str] = field(default_factory=list)
    skipped: int = 0
    ran: int = 0
    elsewhere: int = 0  # trials another sweep of the study ran (or was running)
    total: int = 0
    search_left: int = 0
    searches: list[StudySearch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.leases = Leases(self.store, lease_owner())

    @property
    def done(self) -> int:
        return self.skipped + self.ran + self.elsewhere

    def begin(self, executor: Executor) -> None:
        _write_config(self.folder, self.config, self.store)
        self.reporter.on_study_start(self.config.name, self.total, self.skipped, executor.name)

    def pending(self, specs: Sequence[TrialSpec]) -> list[TrialSpec]:
        """The specs to run; those another sweep holds are counted in ``elsewhere``."""
        if not self.resume:
            todo = list(specs)
        else:
            owner = self.leases.owner
            todo = self.store.pending(specs, retry_failed=self.retry_failed, owner=owner)
        held = self.store.held_elsewhere(self.leases.owner)
        self.elsewhere += sum(s.trial_id in held for s in specs)
        return [s for s in todo if s.trial_id not in held]

    def run(self, executor: Executor, specs: Sequence[TrialSpec]) -> None:
        store, reporter = self.store, self.reporter
        told = getattr(reporter, "on_trial_prediction", None)  # optional (see StudyReporter)
        predictors: dict[str, RunPredictor] = {}  # each running trial's, fed its training epochs

        def on_start(spec: TrialSpec) -> bool:  # without resume, a finished trial runs again
            owner, rerun = self.leases.owner, not self.resume
            if store.claim_trial(spec.trial_id, spec, owner=owner, rerun=rerun) is None:
                self.elsewhere += 1  # another sweep holds it (or finished it since we looked)
                reporter.on_progress(self.done, self.total)
                return False
            self.leases.hold(spec.trial_id)
            predictors[spec.trial_id] = RunPredictor(spec.epochs)
            reporter.on_trial_start(spec, self.done, self.total)
            return True

        def on_epoch(spec: TrialSpec, record: Any) -> None:
            predictor = predictors.get(spec.trial_id)
            prediction = predictor.add(record) if predictor is not None else None
            if prediction is not None and told is not None:
                told(spec.trial_id, prediction)

        def on_done(record: TrialRecord) -> None:
            predictors.pop(record.trial_id, None)
            self.leases.drop(record.trial_id)
            try:
                stored = store.finish_trial(record)
            except TrialAlreadyDone:  # another sweep took it over (our claim lapsed) and won
                self.elsewhere += 1
                reporter.on_progress(self.done, self.total)
                return
            self.ran += 1
            reporter.on_trial_end(stored, self.done, self.total)

        teachers, live = self.folder / TEACHER_DIR, on_epoch if told is not None else None
        executor.run(specs, on_start=on_start, on_done=on_done, teacher_dir=teachers, on_epoch=live)


def _grid(state: _State, executor: Executor) -> None:
    specs = expand_grid(state.config)
    todo = state.pending(specs)
    state.ids = [s.trial_id for s in specs]
    state.total, state.skipped = len(specs), len(specs) - len(todo) - state.elsewhere
    state.begin(executor)
    state.run(executor, todo)


def _search(state: _State, executor: Executor) -> None:
    """Batches of Optuna points, as many as the executor has slots for; each point runs every
    seed, then Optuna is told its score (see :class:`~wattwise.experiment.search.OptunaSearch`).
    """
    storage = optuna_storage(state.config, state.folder)
    search = OptunaSearch(state.config, storage, resume=state.resume)
    seeds = len(state.config.seeds)
    state.total, state.search_left = search.total, search.remaining
    state.skipped = len(search.finished) * seeds
    for point in search.finished:
        state.ids.extend(s.trial_id for s in point.specs)
    state.begin(executor)
    per_batch = max(1, executor.slots // seeds)
    ran_now: set[str] = set()
    while search.remaining > 0:
        points = search.ask(per_batch)
        unique = list({s.trial_id: s for p in points for s in p.specs}.values())
        state.ids.extend(s.trial_id for s in unique)
        held_before = state.elsewhere
        todo = [s for s in state.pending(unique) if s.trial_id not in ran_now]
        # a point Optuna picked before (or twice in one batch) is not run again
        reused = len(points) * seeds - len(todo) - (state.elsewhere - held_before)
        if reused:
            state.skipped += reused
            state.reporter.on_progress(state.done, state.total)
        state.run(executor, todo)
        ran_now.update(s.trial_id for s in todo)
        for point in points:
            search.tell(point, [state.store.get(s.trial_id) for s in point.specs])
        state.search_left = search.remaining


# --- summary ----------------------------------------------------------------------------------


def _summary(state: _State, started: float, *, interrupted: bool = False) -> StudySummary:
    ids = set(state.ids)
    try:
        records = [r for r in state.store.records() if r.trial_id in ids]
    except Exception:  # a summary must not hide why the study stopped
        records = []
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "failed", "running")}
    if state.config.search.kind == "optuna":
        left = state.search_left * len(state.config.seeds) + counts["running"]
    else:
        left = len(ids) - counts["ok"] - counts["failed"]
    done = [r for r in records if r.status == "ok"]
    best = max((r for r in done if r.accuracy is not None), key=lambda r: r.accuracy, default=None)
    lowest, lowest_j = lowest_training(done)
    return StudySummary(
        study=state.config.name,
        search=state.config.search.kind,
        study_dir=state.folder,
        store_path=(
            state.store.path if isinstance(state.store, ResultsStore) else state.store.location
        ),
        config_path=state.folder / CONFIG_FILE,
        total=state.total,
        ok=counts["ok"],
        failed=counts["failed"],
        running=counts["running"],
        left=left,
        skipped=state.skipped,
        ran=state.ran,
        elsewhere=state.elsewhere,
        duration_s=time.perf_counter() - started,
        best_accuracy=highlight(best, best.accuracy if best else None, None),
        lowest_train_energy=highlight(
            lowest, lowest_j, lowest.train_energy_provenance if lowest else None
        ),
        interrupted=interrupted,
        **summary_costs(state.config, done),
        failed_trials=tuple(
            (r.trial_id, describe_trial(r.spec), r.reason or "")
            for r in records
            if r.status == "failed"
        ),
        searches=tuple(state.searches),
    )
