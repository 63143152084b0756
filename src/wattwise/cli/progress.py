"""Live terminal displays: the progress of a study and of a training run.

:class:`StudyProgress` implements :class:`~wattwise.experiment.sweep.StudyReporter` and
:class:`TrainBar` implements :class:`~wattwise.train.loop.TrainProgress`; the library calls
them, they draw with ``rich``. Both show the predicted total energy and time of a training run
(:mod:`wattwise.train.predict`): :class:`TrainBar` prints it after each of the first epochs,
:class:`StudyProgress` shows a running trial's in its status line and, when a trial ends, each
prediction it made against what it measured.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from wattwise.cli.render import study_start_line, study_summary_table, trial_line
from wattwise.train.predict import Interval, Prediction, RunPredictor
from wattwise.units import energy_unit, format_energy


def _energy(value: Interval | None) -> str:
    """``1.23 kJ (0.9-1.6)``: the unit of the value, three significant digits."""
    if value is None:
        return "energy unknown"
    unit = energy_unit([value.value])
    low, high = unit.of(value.low), unit.of(value.high)
    return f"{unit.of(value.value):.3g} {unit.symbol} ({low:.3g}-{high:.3g})"


def _seconds(seconds: float) -> str:
    """``2.1 s``, ``3 min 10 s``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{round(seconds) // 60} min {round(seconds) % 60} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _clock(seconds: float, hours: bool) -> str:
    """``2:40`` (minutes:seconds), or ``1:50`` (hours:minutes) when ``hours``."""
    whole = round(seconds / 60) if hours else round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _duration(value: Interval) -> str:
    """``2.1 s (1.8-2.5)``, ``3 min 10 s (2:40-3:50)``, ``2 h 05 min (1:50-2:20)``."""
    if value.value < 60:
        return f"{value.value:.3g} s ({value.low:.3g}-{value.high:.3g})"
    hours = value.value >= 3600
    low, high = _clock(value.low, hours), _clock(value.high, hours)
    return f"{_seconds(value.value)} ({low}-{high})"


def prediction_line(prediction: Prediction) -> str:
    """``after epoch 1 of 5: predicted total 1.23 kJ (0.9-1.6), 3 min 10 s (2:40-3:50)``: the
    predicted energy and time of the whole training (the ``train`` phase) with their intervals."""
    p = prediction
    return (
        f"after epoch {p.after_epoch} of {p.epochs}: predicted total {_energy(p.energy)}, "
        f"{_duration(p.duration)}"
    )


def _with_error(text: str, error: float | None) -> str:
    return f"{text} ({error * 100:+.1f} %)" if error is not None else text


def outcome_line(record: Any) -> str | None:
    """``predicted after epoch 1: 1.23 kJ (-5.1 %), 3 min 10 s (-5.0 %); after epoch 2: ...``:
    each prediction a finished trial made, with its error against the measured ``train`` phase;
    ``None`` when it made none."""
    from wattwise.analysis.prediction import trial_prediction_errors

    parts = []
    for e in trial_prediction_errors(record):
        energy = "energy unknown"
        if e.predicted_energy_j is not None:
            energy = _with_error(format_energy(e.predicted_energy_j), e.energy_error)
        duration = _with_error(_seconds(e.predicted_duration_s), e.duration_error)
        parts.append(f"after epoch {e.after_epoch}: {energy}, {duration}")
    return "predicted " + "; ".join(parts) if parts else None


class StudyProgress:
    """A live bar with ETA for the study, a status line of the running trials, one printed line
    per finished trial and the summary table at the end.

    Use it as a context manager around :func:`~wattwise.experiment.sweep.run_study`, so that
    the live display stops however the study ends::

        with StudyProgress(console) as reporter:
            run_study(config, reporter=reporter)
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.running: dict[str, str] = {}
        #: The latest prediction of each running trial (trial id -> prediction).
        self.predictions: dict[str, Prediction] = {}
        self.status = _StatusLine(self.running, self.predictions)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task: TaskID | None = None
        self.live: Live | None = None

    def __enter__(self) -> StudyProgress:
        self.live = Live(
            Group(self.progress, self.status),
            console=self.console,
            refresh_per_second=4,
            transient=False,
        )
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops the live display (the bar stays on screen as it was last drawn)."""
        if self.live is not None:
            self.running.clear()
            self.predictions.clear()
            self.live.stop()
            self.live = None

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        self.task = self.progress.add_task(f"study {study}", total=total, completed=done)
        self.console.print(study_start_line(study, total, done, executor))

    def on_trial_start(self, spec: Any, done: int, total: int) -> None:
        from wattwise.experiment.summary import describe_trial

        self.running[spec.trial_id] = describe_trial(spec)

    def on_trial_prediction(self, trial_id: str, prediction: Prediction) -> None:
        """A running trial predicted its training's total (shown in the status line)."""
        self.predictions[trial_id] = prediction

    def on_trial_end(self, record: Any, done: int, total: int) -> None:
        self.running.pop(record.trial_id, None)
        self.predictions.pop(record.trial_id, None)
        self.on_progress(done, total)
        self.console.print(trial_line(record, done, total))
        outcome = outcome_line(record)
        if outcome is not None:
            self.console.print(f"       {outcome}", style="dim", markup=False, highlight=False)

    def on_progress(self, done: int, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=total)

    def on_recipe_candidate(self, candidate: Any, index: int, budget: int) -> None:
        """The study's recipe search (after its trials) measured a candidate: one line."""
        from wattwise.cli.render import candidate_line

        self.console.print(f"recipe search [{index}/{budget}] {candidate_line(candidate)}",
                           highlight=False, markup=False)  # fmt: skip

    def on_study_end(self, summary: Any) -> None:
        self.stop()  # the summary goes below the final bar
        self.console.print(study_summary_table(summary))


class _StatusLine:
    """``running: <first running trial> (+N more)``, dimmed, with that trial's latest prediction;
    empty when nothing runs."""

    def __init__(self, running: dict[str, str], predictions: dict[str, Prediction]) -> None:
        self.running = running
        self.predictions = predictions

    def __rich__(self) -> Text:
        if not self.running:
            return Text("")
        first, label = next(iter(self.running.items()))
        more = f" (+{len(self.running) - 1} more)" if len(self.running) > 1 else ""
        prediction = self.predictions.get(first)
        told = f" · {prediction_line(prediction)}" if prediction is not None else ""
        text = f"running: {label}{more}{told}"
        return Text(text, style="dim", overflow="ellipsis", no_wrap=True)


class TrainBar:
    """A transient bar per training epoch: batches done, latest loss, time left; and, told each
    finished epoch's record (:meth:`on_record`), the predicted total of the run after each of
    its first epochs (:func:`prediction_line`).

    Each epoch's bar disappears when the epoch ends, before its record is printed.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.predictor: RunPredictor | None = None

    def on_record(self, record: Any) -> Prediction | None:
        """Takes a finished epoch's record (an ``EpochRecord`` or its dict); after each of the
        first epochs prints the predicted total and returns it."""
        if self.predictor is None:
            return None
        prediction = self.predictor.add(record)
        if prediction is not None:
            console = self.console or Console()
            console.print(prediction_line(prediction), markup=False, highlight=False)
        return prediction

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if epoch == 1:  # a run begins: predict its total from its own epochs
            self.predictor = RunPredictor(epochs)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=batches, loss="-")
        self.progress.start()

    def on_batch(self, batch: int, loss: float) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=batch, loss=f"{loss:.4f}")

    def on_epoch_end(self, epoch: int) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.progress = self.task = None
