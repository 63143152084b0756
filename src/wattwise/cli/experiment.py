"""``wattwise sweep``, ``wattwise results`` and ``wattwise demo``: run a study (resuming where it
stopped), list and export its trials, run the bundled demo study.

Ctrl-C (SIGINT) during a sweep or the demo exits with 130, SIGTERM with 143 (128 + the signal,
as a shell reports a process the signal ended), both after what finished is committed and with
one ``interrupted`` line. A signal that comes once the command is done, while Python shuts down,
is ignored: it cannot change the outcome, and Python would otherwise die of it (it restores the
default handlers before tearing its modules down).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wattwise.cli._base import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    non_negative_int,
    third_party_log,
)
from wattwise.errors import ConfigError

EXECUTORS = ("local", "local-gpus", "ray", "slurm")
STATUSES = ("ok", "failed", "running")


def register(subparsers: Any) -> None:
    """Adds ``sweep``, ``results`` and ``demo`` to ``subparsers``."""
    p = subparsers.add_parser(
        "sweep",
        help="run a study (grid or Optuna search); resumes where it stopped",
        description="Run every trial of a study YAML and keep each result in "
        "<output_dir>/<name>/results.sqlite (a relative output_dir is relative to the study "
        "file). Finished trials are skipped (resume); Ctrl-C stops after committing what "
        "finished (exit code 130; SIGTERM: 143). One sweep at a time per study: a second one "
        "is refused, or waits with --wait.",
    )
    p.add_argument("study", metavar="STUDY.yaml", help="the study configuration (YAML)")
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="run every trial again, replacing stored results",
    )
    p.add_argument("--retry-failed", action="store_true", help="also rerun failed trials")
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="where trials run: the study's executor.kind (default: the study's, else local)",
    )
    p.add_argument(
        "--address",
        help="with --executor ray: the cluster, ray://host:10001 or auto (default: the "
        "study's executor.address, else a new local Ray instance)",
    )
    p.add_argument("--out", metavar="DIR", help="study folder (default <output_dir>/<name>)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="when another sweep runs this study, wait for it to end instead of refusing",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (trials, trainings after reuse, teachers, an estimate) and check "
        "data and checkpoints; run nothing (exit 2 when a check fails)",
    )
    p.add_argument(
        "--mlflow",
        nargs="?",
        const=True,  # the flag alone (not a string: type= is not applied to it)
        type=_mlflow_uri,
        metavar="URI",
        help="also log each finished trial as an MLflow run, nested under a run of the study, "
        "to URI (default: the study's tracking.mlflow.uri, else sqlite:///<study folder>/"
        "mlflow.db); put it after STUDY.yaml; needs pip install 'wattwise[mlflow]'",
    )
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser(
        "results",
        help="list a study's trials; export them as CSV or Parquet",
        description="List the trials of a study folder (or its results.sqlite) in a table.",
    )
    p.add_argument(
        "path",
        metavar="STUDY_DIR_OR_SQLITE",
        help="a study folder (holding results.sqlite, or whose study.yaml names a PostgreSQL "
        "store), the results.sqlite file, or a postgresql:// URL",
    )
    p.add_argument("--status", choices=STATUSES, help="only trials with this status (default: all)")
    p.add_argument(
        "--dataset", metavar="NAME", help="only trials on this dataset, as the study names it"
    )
    p.add_argument("--model", metavar="NAME", help="only trials of this model")
    p.add_argument(
        "--technique",
        metavar="RECIPE",
        help="only trials of this technique, e.g. quantize:int8 (any spelling the study "
        "accepts: it is compared in its canonical form)",
    )
    p.add_argument(
        "--columns",
        type=_columns,
        metavar="NAMES",
        help="comma-separated columns, in the order given, from those listed below (default: "
        "those listed below as the default, while the terminal has room)",
    )
    p.add_argument("--csv", metavar="PATH", help="also write the (filtered) rows as CSV")
    p.add_argument("--parquet", metavar="PATH", help="also write them as Parquet")
    p.add_help_note("columns (--columns)", _column_names)
    p.add_help_note("default", _default_columns)
    p.set_defaults(func=cmd_results)

    p = subparsers.add_parser(
        "demo",
        help="the offline demo study: ResNet-18 compressed five ways on digits, a report",
        description="Run the bundled demo study (ResNet-18 at quarter width on scikit-learn "
        "digits at 32 px, offline, CPU, about 10 minutes) and a short recipe search, and leave "
        "the results, resolved config, CSV export and report in a folder.",
    )
    p.add_argument(
        "--out", metavar="DIR", default=None, help="results folder (default results/demo)"
    )
    p.add_argument(
        "--search-budget",
        type=non_negative_int("--search-budget"),
        default=None,
        metavar="N",
        help="candidates of the recipe search after the study (default: the study's, 2; "
        "0: no search)",
    )
    p.set_defaults(func=cmd_demo)


def _columns(text: str) -> tuple[str, ...]:
    """``--columns``: checked names; a bad one is a one-line usage error (exit 2)."""
    from wattwise.cli.render import parse_results_columns

    try:
        return parse_results_columns(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _mlflow_uri(text: str) -> str:
    """``--mlflow URI``: checked as ``tracking.mlflow.uri`` is (a bad one: exit 2)."""
    from wattwise.integrations.mlflow import checked_uri

    try:
        return checked_uri(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _column_names() -> str:
    from wattwise.cli.render import RESULTS_COLUMNS

    return ", ".join(
        c.name if c.header == c.name else f"{c.name} ({c.header})" for c in RESULTS_COLUMNS
    )


def _default_columns() -> str:
    from wattwise.cli.render import RESULTS_CORE, RESULTS_OPTIONAL

    return (
        f"{', '.join(RESULTS_CORE)} (train_energy when no trial measured inference); then, while "
        f"the terminal has room, those of {', '.join(RESULTS_OPTIONAL)} whose values differ "
        "between trials, and those whose value is the same in every trial when they all fit "
        "(else their value is named under the table)"
    )


# --- sweep ----------------------------------------------------------------------------------


def _with_executor(config: Any, kind: str | None, address: str | None) -> Any:
    from dataclasses import replace

    from wattwise.config import ExecutorSettings

    if kind is None and address is None:
        return config
    current = config.executor
    kind = kind or current.kind
    if address is not None and kind != "ray":
        raise ConfigError(f"--address is for the ray executor, not {kind!r}")
    if kind == "slurm":  # the study's slurm settings stay; another kind's do not apply
        slurm = current if current.kind == "slurm" else ExecutorSettings(kind="slurm")
        return replace(config, executor=slurm)
    settings = ExecutorSettings(
        kind=kind,
        address=address if address is not None else (current.address if kind == "ray" else None),
        gpus=current.gpus if kind == "local-gpus" else None,
    )
    return replace(config, executor=settings)


class _Announced:
    """A :class:`~wattwise.cli.progress.StudyProgress` that also names the store it resumes."""

    def __init__(self, progress: Any, store_path: Path | str, *, resume: bool) -> None:
        self.progress = progress
        self.store_path = store_path
        self.resume = resume

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        self.progress.on_study_start(study, total, done, executor)
        if not self.resume:
            line = f"running all {total} trials again into {self.store_path} (--no-resume)"
        elif done:
            line = f"resumed {self.store_path}: {done} of {total} trials already done"
        else:
            line = f"starting {self.store_path}: none of {total} trials done yet"
        self.progress.console.print(line, highlight=False, soft_wrap=True, markup=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.progress, name)


class _FanOut:
    """Two or more reporters told the same things (an optional method goes to those that have
    it, and exists only when one has it: the sweep looks optional ones up)."""

    def __init__(self, *reporters: Any) -> None:
        self.reporters = reporters

    def __getattr__(self, name: str) -> Any:
        targets = [getattr(r, name) for r in self.reporters if hasattr(r, name)]
        if not name.startswith("on_") or not targets:
            raise AttributeError(name)

        def tell(*args: Any, **kwargs: Any) -> None:
            for target in targets:
                target(*args, **kwargs)

        return tell


def cmd_sweep(args: argparse.Namespace) -> int:
    from wattwise.data import download_hint

    with download_hint("set download: true in the study"):  # the study's own vocabulary
        return _sweep(args)


def _sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.progress import StudyProgress
    from wattwise.cli.render import failed_lines
    from wattwise.config import load_study_config
    from wattwise.experiment.store import shown
    from wattwise.experiment.sweep import (
        StudyInterrupted,
        StudyLocked,
        run_study,
        store_location,
        study_dir_of,
    )

    config = _with_executor(load_study_config(args.study), args.executor, args.address)
    folder = Path(args.out) if args.out else study_dir_of(config)
    location = store_location(config, folder)  # results.sqlite, or the study's PostgreSQL URL
    tracker = None
    if args.mlflow is not None or config.tracking.mlflow is not None:
        from wattwise.integrations.mlflow import study_tracker, with_mlflow

        uri = args.mlflow if isinstance(args.mlflow, str) else None  # True: the flag alone
        config = with_mlflow(config, uri)  # without mlflow installed: refused here
        tracker = study_tracker(config, folder)
    if args.dry_run:
        return _dry_run(config, location)
    if config.executor.kind == "slurm":  # no submitit, no sbatch: refused before any file
        from wattwise.experiment.executor_slurm import check_slurm

        check_slurm(config.executor)
    with _stop_signals() as received, third_party_log(folder):
        try:
            with StudyProgress() as progress, tracker or contextlib.nullcontext():
                reporter = _Announced(progress, shown(location), resume=not args.no_resume)
                if tracker is not None:
                    reporter = _FanOut(reporter, tracker)
                sweep = functools.partial(
                    run_study,
                    config,
                    resume=not args.no_resume,
                    retry_failed=args.retry_failed,
                    study_dir=args.out,
                    reporter=reporter,
                )
                try:
                    summary = sweep()
                except StudyLocked as locked:
                    if not args.wait:
                        raise
                    progress.console.print(
                        f"waiting for the sweep of study {config.name} "
                        f"({locked.holder.describe()}) to end; Ctrl-C stops waiting",
                        highlight=False,
                        soft_wrap=True,
                        markup=False,
                    )
                    summary = sweep(wait=True)
                retry = f"wattwise sweep {args.study} --retry-failed" + (
                    f" --out {args.out}" if args.out else ""
                )
                for line in failed_lines(summary, retry):
                    progress.console.print(line, highlight=False, soft_wrap=True)
                for line in tracker.lines() if tracker is not None else ():
                    progress.console.print(line, highlight=False, soft_wrap=True, markup=False)
        except StudyInterrupted as stop:
            s = stop.summary
            how = f" by {received[0].name}" if received else ""
            Console(stderr=True).print(
                f"wattwise: interrupted{how}: {s.ok} ok and {s.failed} failed of {s.total} "
                f"trials are stored in {s.store_path}; trials in progress stay 'running' and run "
                f"again when you resume: wattwise sweep {args.study}"
                + (f" --out {args.out}" if args.out else ""),
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
            return _interrupted_code(received)
        except KeyboardInterrupt:  # before the study ran (e.g. during --wait) or after it ended
            how = f" by {received[0].name}" if received else ""
            print(f"wattwise: interrupted{how}", file=sys.stderr)
            return _interrupted_code(received)
    return 0


def _dry_run(config: Any, location: Path | str) -> int:
    """``sweep --dry-run``: the plan against what the store (read-only) already holds."""
    from wattwise.experiment.plan import plan_study
    from wattwise.experiment.store import open_store, store_exists

    records = []
    if store_exists(location):
        with open_store(location, read_only=True) as store:
            records = store.records()
    plan = plan_study(config, records)
    for line in plan.lines():
        print(line)
    if plan.problems:
        print(f"wattwise: error: {len(plan.problems)} problem(s), see above", file=sys.stderr)
        return EXIT_USAGE
    return 0


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[signal.Signals]]:
    """While a study runs, SIGTERM stops it as Ctrl-C does: it raises ``KeyboardInterrupt`` in
    the main thread, so that the sweep commits what finished and reports. The list that is
    yielded receives the signal (empty: Ctrl-C). Once the command is done, a late SIGINT or
    SIGTERM is ignored while Python shuts down (:func:`_ignore_stop_signals`, at exit).

    Outside the main thread (no signal handlers there) nothing changes.
    """
    received: list[signal.Signals] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_term(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum))
        raise KeyboardInterrupt

    atexit.unregister(_ignore_stop_signals)  # registered once, however many sweeps ran
    atexit.register(_ignore_stop_signals)
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ignore_stop_signals() -> None:
    """At exit: SIGINT and SIGTERM are ignored from here on. Python resets its handlers to the
    defaults before it tears its modules down (which takes a while with torch loaded), and a
    Ctrl-C then would end a finished sweep "by the signal" instead of with its exit code."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_IGN)


def _interrupted_code(received: list[signal.Signals]) -> int:
    return EXIT_TERMINATED if received and received[0] == signal.SIGTERM else EXIT_INTERRUPTED


# --- results --------------------------------------------------------------------------------


def store_path_of(path: str | Path) -> Path | str:
    """``results.sqlite`` of a study folder (or the PostgreSQL URL its ``study.yaml`` names), the
    file itself, or a ``postgresql://`` URL as it is.

    Raises:
        ConfigError: Nothing there, or a folder without ``results.sqlite`` or a store URL.
    """
    from wattwise.experiment.store import STORE_FILE, is_postgres_url, study_store

    if is_postgres_url(path):
        return str(path)
    target = Path(path)
    if target.is_dir():
        url = study_store(target) if not (target / STORE_FILE).is_file() else None
        if url is not None:
            return url
        target = target / STORE_FILE
        if not target.is_file():
            raise ConfigError(f"{path} holds no {STORE_FILE}: is it a study folder?")
    elif not target.is_file():
        raise ConfigError(f"no study folder or results store at {path}")
    return target


def cmd_results(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.render import results_table
    from wattwise.experiment import open_store

    filters = {
        key: value
        for key in ("dataset", "model", "technique")
        if (value := getattr(args, key)) is not None
    }
    if "technique" in filters:
        from wattwise.optimize import canonical_recipe

        filters["technique"] = canonical_recipe(filters["technique"])
    with open_store(store_path_of(args.path), read_only=True) as store:
        records = store.records(args.status, **filters)
        console = Console()
        view = results_table(
            records,
            title=f"{store.study or 'study'}: {store.location}",
            width=console.width,
            columns=args.columns,
        )
        console.print(view.table)
        for line in view.legend:  # whole lines: a recipe or a reason is copied in one piece
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        if args.csv:
            rows = store.export_csv(args.csv, args.status, **filters)
            console.print(f"{rows} rows written to {args.csv}")
        if args.parquet:
            rows = store.export_parquet(args.parquet, args.status, **filters)
            console.print(f"{rows} rows written to {args.parquet}")
    return 0


# --- demo -----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.progress import StudyProgress
    from wattwise.experiment.demo import DEFAULT_OUT, run_demo

    out = Path(args.out) if args.out else Path(DEFAULT_OUT)
    console = Console()
    console.print(
        "[bold]wattwise demo[/bold]: ResNet-18 (quarter width) on scikit-learn digits at 32 "
        "px (offline, CPU), 2 seeds, each baseline trained once and compressed by fp32 "
        "compile, structured pruning, int8, pruning + int8 and pruning distilled from the "
        "baseline; then a short recipe search (about 10 minutes)"
    )
    with _stop_signals() as received, third_party_log(out):
        try:
            with StudyProgress(console) as reporter:
                budget = {} if args.search_budget is None else {"search_budget": args.search_budget}
                result = run_demo(out, reporter=reporter, **budget)
        except KeyboardInterrupt as stop:
            summary = getattr(stop, "summary", None)
            where = summary.store_path if summary is not None else out
            how = f" by {received[0].name}" if received else ""
            print(
                f"wattwise: interrupted{how}; finished trials are in {where}; run the demo "
                "again to resume",
                file=sys.stderr,
            )
            return _interrupted_code(received)
    for line in result.where():
        console.print(line, highlight=False, soft_wrap=True)
    return 0
