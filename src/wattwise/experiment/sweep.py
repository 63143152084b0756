"""Running a study: expand the grid (or let Optuna search it), skip what is done, run the rest.

    from wattwise.config import load_study_config
    from wattwise.experiment.sweep import run_study

    summary = run_study(load_study_config("study.yaml"))     # resumes by default

The study folder (``<output_dir>/<name>``, or ``study_dir``) holds ``study.yaml`` (the resolved
config), ``results.sqlite`` (one row per trial), ``teachers/`` (trained distillation teachers)
and, for an Optuna search, ``optuna.sqlite``. Trials finished in an earlier run are skipped;
a trial left ``running`` by a killed or interrupted run is run again. See docs/experiments.md,
"Running studies".
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from wattwise.config import StudyConfig, TrialSpec, expand_grid, resolved_yaml
from wattwise.errors import ConfigError
from wattwise.experiment.executors import Executor, create_executor
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.store import ResultsStore

#: File names inside a study folder.
STORE_FILE = "results.sqlite"
CONFIG_FILE = "study.yaml"
OPTUNA_FILE = "optuna.sqlite"
TEACHER_DIR = "teachers"


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
        duration_s: Wall time of this run.
        best_accuracy: The ``ok`` trial with the highest accuracy.
        lowest_train_energy: The ``ok`` trial with the lowest training energy (joules).
        interrupted: The run was stopped by Ctrl-C.
    """

    study: str
    search: str
    study_dir: Path
    store_path: Path
    config_path: Path
    total: int
    ok: int
    failed: int
    running: int
    left: int
    skipped: int
    ran: int
    duration_s: float
    best_accuracy: Highlight | None = None
    lowest_train_energy: Highlight | None = None
    interrupted: bool = False


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`run_study`; ``summary`` says what is stored. Every trial that
    finished is committed; the trial(s) in progress stay ``running`` and run again on resume."""

    def __init__(self, summary: StudySummary) -> None:
        super().__init__(f"study {summary.study} interrupted")
        self.summary = summary


def describe_trial(spec: TrialSpec | Mapping[str, Any]) -> str:
    """``digits small_cnn prune:structured:0.5 bs32 lr0.05 ep4 seed0`` (+ ``cap8GB``)."""
    s = spec.to_dict() if isinstance(spec, TrialSpec) else dict(spec)
    text = (
        f"{s.get('dataset')} {s.get('model')} {s.get('technique')} bs{s.get('batch_size')} "
        f"lr{float(s.get('lr') or 0):g} ep{s.get('epochs')} seed{s.get('seed')}"
    )
    if s.get("gpu_memory_gb") is not None:
        text += f" cap{float(s['gpu_memory_gb']):g}GB"
    return text


def study_dir_of(config: StudyConfig) -> Path:
    """``<output_dir>/<name>``: where a study's results go by default."""
    return Path(config.output_dir) / config.name


def run_study(
    config: StudyConfig,
    *,
    resume: bool = True,
    executor: Executor | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    study_dir: str | Path | None = None,
    console: Console | None = None,
) -> StudySummary:
    """Runs a study: every grid point, or ``search.n_trials`` Optuna trials.

    Args:
        config: The validated study.
        resume: Skip trials that finished in an earlier run (default). ``False`` runs every
            trial again, replacing stored results (and starts a new Optuna search).
        executor: Where trials run (default: the study's ``executor`` section; an executor
            created here is closed here, one passed in is left open).
        progress: Live progress bar with ETA, a line per finished trial and a summary table.
        retry_failed: Also run trials that failed in an earlier run.
        study_dir: The study folder (default ``<output_dir>/<name>``).
        console: Where progress goes (default: stdout).

    Returns:
        The :class:`StudySummary`.

    Raises:
        ConfigError: The study folder cannot be created or written, or a search cannot resume.
        StudyInterrupted: Ctrl-C (a ``KeyboardInterrupt``), after what finished was committed.
    """
    started = time.perf_counter()
    folder = Path(study_dir) if study_dir is not None else study_dir_of(config)
    store_path, _ = _prepare(folder, config)
    console = console or Console()
    reporter = _Reporter(console, progress, config.name)
    own = executor is None
    store = ResultsStore(store_path, study=config.name, config_yaml=resolved_yaml(config))
    state = _State(config, folder, store, reporter, resume, retry_failed)
    try:
        executor = executor or create_executor(config.executor)
        with reporter:
            if config.search.kind == "optuna":
                _search(state, executor)
            else:
                _grid(state, executor)
    except KeyboardInterrupt:
        summary = _summary(state, started, interrupted=True)
        raise StudyInterrupted(summary) from None
    finally:
        if own and executor is not None:
            with contextlib.suppress(Exception):
                executor.close()
        store.close()
    summary = _summary(state, started)
    if progress:
        console.print(summary_table(summary))
    return summary


def _prepare(folder: Path, config: StudyConfig) -> tuple[Path, Path]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the study folder {folder}: {err.strerror or err}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"the study folder {folder} is not writable")
    config_path = folder / CONFIG_FILE
    tmp = folder / f".{CONFIG_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(resolved_yaml(config), encoding="utf-8")
        os.replace(tmp, config_path)
    except OSError as err:
        raise ConfigError(f"cannot write {config_path}: {err.strerror or err}") from None
    return folder / STORE_FILE, config_path


@dataclass
class _State:
    config: StudyConfig
    folder: Path
    store: ResultsStore
    reporter: _Reporter
    resume: bool
    retry_failed: bool
    ids: list[str] = field(default_factory=list)
    skipped: int = 0
    ran: int = 0
    total: int = 0
    search_left: int = 0

    def pending(self, specs: Sequence[TrialSpec]) -> list[TrialSpec]:
        if not self.resume:
            return list(specs)
        return self.store.pending(specs, retry_failed=self.retry_failed)

    def run(self, executor: Executor, specs: Sequence[TrialSpec], decorate: Any = None) -> None:
        store, reporter = self.store, self.reporter

        def on_start(spec: TrialSpec) -> None:
            store.begin_trial(spec.trial_id, spec, rerun=True)
            reporter.started(spec)

        def on_done(record: TrialRecord) -> None:
            if decorate is not None:
                record = decorate(record)
            stored = store.finish_trial(record)
            self.ran += 1
            reporter.finished(stored)

        executor.run(
            specs, on_start=on_start, on_done=on_done, teacher_dir=self.folder / TEACHER_DIR
        )


def _grid(state: _State, executor: Executor) -> None:
    specs = expand_grid(state.config)
    todo = state.pending(specs)
    state.ids = [s.trial_id for s in specs]
    state.total, state.skipped = len(specs), len(specs) - len(todo)
    state.reporter.begin(len(specs), state.skipped, executor.name)
    state.run(executor, todo)


# --- Optuna -----------------------------------------------------------------------------------

#: Axes Optuna chooses from (seeds are replicates: every Optuna trial runs all of them).
_SEARCH_AXES = {
    "dataset": "datasets",
    "model": "models",
    "technique": "techniques",
    "batch_size": "batch_sizes",
    "lr": "learning_rates",
    "epochs": "epochs",
    "gpu_memory_gb": "gpu_memory_gb",
}


def _point(spec: TrialSpec) -> tuple[Any, ...]:
    return (*(getattr(spec, name) for name in _SEARCH_AXES), spec.seed)


def _search(state: _State, executor: Executor) -> None:
    """``n_trials`` Optuna trials over the study's axes; each runs every seed, and Optuna is told
    the mean of each objective over the seeds' ``ok`` records (a trial with none fails)."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - a dependency
        raise ConfigError("search.kind optuna needs optuna: pip install optuna") from None
    from optuna.trial import TrialState

    config, search = state.config, state.config.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(state.folder / OPTUNA_FILE).resolve()}"
    if not state.resume:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=config.name, storage=storage)
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        load_if_exists=True,
        directions=list(search.directions),
        sampler=optuna.samplers.TPESampler(seed=config.seeds[0]),
    )
    wanted = [optuna.study.StudyDirection[d.upper()] for d in search.directions]
    if list(study.directions) != wanted:
        raise ConfigError(
            f"{state.folder / OPTUNA_FILE} holds a search with other objectives; run with "
            "--no-resume to start it again, or use another output folder"
        )
    axes = {name: tuple(getattr(config, key)) for name, key in _SEARCH_AXES.items()}
    index = {_point(spec): spec for spec in expand_grid(config)}
    seeds = config.seeds

    def specs_for(params: Mapping[str, Any]) -> list[TrialSpec]:
        point = [params.get(name, values[0]) for name, values in axes.items()]
        return [index[(*point, seed)] for seed in seeds]

    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)]
    stale = [t for t in trials if t.state == TrialState.RUNNING]  # left by a killed run
    remaining = max(0, search.n_trials - len(finished))
    state.total = search.n_trials * len(seeds)
    state.search_left = remaining
    state.skipped = len(finished) * len(seeds)
    state.reporter.begin(state.total, state.skipped, executor.name)
    for trial in finished:
        state.ids.extend(s.trial_id for s in specs_for(trial.params))
    per_batch = max(1, executor.slots // len(seeds))
    ran_now: set[str] = set()
    while remaining > 0:
        batch: list[tuple[int, list[TrialSpec]]] = []
        while len(batch) < min(per_batch, remaining):
            if stale:
                old = stale.pop(0)
                batch.append((old.number, specs_for(old.params)))
                continue
            trial = study.ask()
            params = {
                name: trial.suggest_categorical(name, list(values))
                for name, values in axes.items()
                if len(values) > 1
            }
            batch.append((trial.number, specs_for(params)))
        unique = list({s.trial_id: s for _, specs in batch for s in specs}.values())
        state.ids.extend(s.trial_id for s in unique)
        todo = [s for s in state.pending(unique) if s.trial_id not in ran_now]
        # a point Optuna picked before (or twice in one batch) is not run again
        reused = len(batch) * len(seeds) - len(todo)
        state.skipped += reused
        state.reporter.advance(reused)
        state.run(executor, todo)
        ran_now.update(s.trial_id for s in todo)
        for number, specs in batch:
            values = _objectives(state.store, specs, search.objectives)
            if values is None:
                study.tell(number, state=TrialState.FAIL)
            else:
                study.tell(number, values)
        remaining -= len(batch)
        state.search_left = remaining


def _objectives(
    store: ResultsStore, specs: Sequence[TrialSpec], objectives: Sequence[str]
) -> list[float] | None:
    records = [store.get(s.trial_id) for s in specs]
    ok = [r for r in records if r is not None and r.status == "ok"]
    values = []
    for metric in objectives:
        numbers = [getattr(r, metric) for r in ok if getattr(r, metric) is not None]
        if not numbers:
            return None
        values.append(sum(numbers) / len(numbers))
    return values


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
    lowest = min(
        (r for r in done if r.train_energy_j is not None),
        key=lambda r: r.train_energy_j,
        default=None,
    )
    return StudySummary(
        study=state.config.name,
        search=state.config.search.kind,
        study_dir=state.folder,
        store_path=state.store.path,
        config_path=state.folder / CONFIG_FILE,
        total=state.total,
        ok=counts["ok"],
        failed=counts["failed"],
        running=counts["running"],
        left=left,
        skipped=state.skipped,
        ran=state.ran,
        duration_s=time.perf_counter() - started,
        best_accuracy=_highlight(best, best.accuracy if best else None, None),
        lowest_train_energy=_highlight(
            lowest,
            lowest.train_energy_j if lowest else None,
            lowest.train_energy_provenance if lowest else None,
        ),
        interrupted=interrupted,
    )


def _highlight(record: TrialRecord | None, value: float | None, prov: str | None) -> Any:
    if record is None or value is None:
        return None
    return Highlight(record.trial_id, describe_trial(record.spec), float(value), prov)


def summary_table(summary: StudySummary) -> Table:
    """The end-of-study table: counts, best accuracy, lowest training energy, time, paths."""
    from wattwise.console import fmt_energy

    title = f"study {summary.study}" + (" (interrupted)" if summary.interrupted else "")
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    table.add_row("trials", f"{summary.total} ({summary.search})")
    table.add_row("ok", str(summary.ok))
    table.add_row("failed", str(summary.failed))
    table.add_row("skipped (finished earlier)", str(summary.skipped))
    table.add_row("run now", str(summary.ran))
    if summary.left:
        table.add_row("left to run (resume)", str(summary.left))
    if summary.best_accuracy is not None:
        best = summary.best_accuracy
        table.add_row("best accuracy", f"{best.value:.2%}  {best.label}  [{best.trial_id}]")
    if summary.lowest_train_energy is not None:
        low = summary.lowest_train_energy
        table.add_row(
            "lowest training energy",
            f"{fmt_energy(low.value)} ({low.provenance})  {low.label}  [{low.trial_id}]",
        )
    table.add_row("time", f"{summary.duration_s:.1f} s")
    table.add_row("results", str(summary.store_path))
    table.add_row("resolved config", str(summary.config_path))
    return table


# --- progress ---------------------------------------------------------------------------------


class _Reporter:
    """A live bar with ETA for the study, a status line of the running trials, and one printed
    line per finished trial. Disabled: silent."""

    def __init__(self, console: Console, enabled: bool, name: str) -> None:
        self.console = console
        self.enabled = enabled
        self.name = name
        self.running: dict[str, str] = {}
        self.finished_count = 0
        self.total = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task(f"study {name}", total=None)
        self.live: Live | None = None

    def __enter__(self) -> _Reporter:
        if self.enabled:
            self.live = Live(
                Group(self.progress, _StatusLine(self)),
                console=self.console,
                refresh_per_second=4,
                transient=False,
            )
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.running.clear()
            self.live.stop()
            self.live = None

    def begin(self, total: int, done: int, executor: str) -> None:
        self.total = total
        self.finished_count = done
        self.progress.update(self.task, total=total, completed=done)
        if self.enabled:
            self.console.print(
                f"study [bold]{self.name}[/bold]: {total} trials, {done} finished earlier, "
                f"{total - done} to run ({executor} executor)"
            )

    def advance(self, count: int) -> None:
        if count:
            self.finished_count += count
            self.progress.update(self.task, advance=count)

    def started(self, spec: TrialSpec) -> None:
        self.running[spec.trial_id] = describe_trial(spec)

    def finished(self, record: TrialRecord) -> None:
        self.running.pop(record.trial_id, None)
        self.finished_count += 1
        self.progress.update(self.task, advance=1)
        if self.enabled:
            self.console.print(trial_line(record, self.finished_count, self.total))


class _StatusLine:
    def __init__(self, reporter: _Reporter) -> None:
        self.reporter = reporter

    def __rich__(self) -> Text:
        running = list(self.reporter.running.values())
        if not running:
            return Text("")
        more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
        return Text(f"running: {running[0]}{more}", style="dim", overflow="ellipsis", no_wrap=True)


def trial_line(record: TrialRecord, done: int, total: int) -> str:
    """One line per finished trial: status, label, accuracy, training energy, J/image, time."""
    from rich.markup import escape

    label = escape(describe_trial(record.spec))
    where = f"{done}/{total}"
    if record.status != "ok":
        return f"[red]failed[/red] {where} {label}: {escape(record.reason or '')}"
    parts = [f"[green]ok[/green]     {where} {label}:"]
    if record.accuracy is not None:
        parts.append(f"acc {record.accuracy:.2%}")
    if record.train_energy_j is not None:
        parts.append(f"train {record.train_energy_j:.4g} J ({record.train_energy_provenance})")
    if record.inference_energy_per_image_j is not None:
        parts.append(f"{record.inference_energy_per_image_j:.3g} J/image")
    if record.duration_s is not None:
        parts.append(f"{record.duration_s:.1f} s")
    return "  ".join(parts)
