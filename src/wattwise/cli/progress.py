"""Live terminal displays: the progress of a study and of a training run.

:class:`StudyProgress` implements :class:`~wattwise.experiment.sweep.StudyReporter` and
:class:`TrainBar` implements :class:`~wattwise.train.loop.TrainProgress`; the library calls
them, they draw with ``rich``.
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
            Group(self.progress, _StatusLine(self.running)),
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
            self.live.stop()
            self.live = None

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        self.task = self.progress.add_task(f"study {study}", total=total, completed=done)
        self.console.print(study_start_line(study, total, done, executor))

    def on_trial_start(self, spec: Any, done: int, total: int) -> None:
        from wattwise.experiment.sweep import describe_trial

        self.running[spec.trial_id] = describe_trial(spec)

    def on_trial_end(self, record: Any, done: int, total: int) -> None:
        self.running.pop(record.trial_id, None)
        self.on_progress(done, total)
        self.console.print(trial_line(record, done, total))

    def on_progress(self, done: int, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=total)

    def on_study_end(self, summary: Any) -> None:
        self.stop()  # the summary goes below the final bar
        self.console.print(study_summary_table(summary))


class _StatusLine:
    """``running: <first running trial> (+N more)``, dimmed; empty when nothing runs."""

    def __init__(self, running: dict[str, str]) -> None:
        self.running = running

    def __rich__(self) -> Text:
        running = list(self.running.values())
        if not running:
            return Text("")
        more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
        return Text(f"running: {running[0]}{more}", style="dim", overflow="ellipsis", no_wrap=True)


class TrainBar:
    """A transient bar per training epoch: batches done, latest loss, time left.

    Each epoch's bar disappears when the epoch ends, before its record is printed.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
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
