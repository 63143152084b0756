"""``wattwise sweep``, ``wattwise results`` and ``wattwise demo``: run a study (resuming where it
stopped), list and export its trials, run the bundled demo study.

Ctrl-C during a sweep or the demo exits with 130 after what finished is committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wattwise.cli._base import EXIT_INTERRUPTED
from wattwise.errors import ConfigError

EXECUTORS = ("local", "local-gpus", "ray")
STATUSES = ("ok", "failed", "running")


def register(subparsers: Any) -> None:
    """Adds ``sweep``, ``results`` and ``demo`` to ``subparsers``."""
    p = subparsers.add_parser(
        "sweep",
        help="run a study (grid or Optuna search); resumes where it stopped",
        description="Run every trial of a study YAML and keep each result in "
        "<output_dir>/<name>/results.sqlite. Finished trials are skipped (resume); "
        "Ctrl-C stops after committing what finished (exit code 130).",
    )
    p.add_argument("study", metavar="STUDY.yaml", help="the study configuration")
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
    p.add_argument("--address", help="the study's executor.address (with --executor ray)")
    p.add_argument("--out", metavar="DIR", help="study folder (default <output_dir>/<name>)")
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser(
        "results",
        help="list a study's trials; export them as CSV or Parquet",
        description="List the trials of a study folder (or its results.sqlite) in a table.",
    )
    p.add_argument("path", metavar="STUDY_DIR_OR_SQLITE")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--dataset")
    p.add_argument("--model")
    p.add_argument("--technique")
    p.add_argument("--csv", metavar="PATH", help="also write the (filtered) rows as CSV")
    p.add_argument("--parquet", metavar="PATH", help="also write them as Parquet")
    p.set_defaults(func=cmd_results)

    p = subparsers.add_parser(
        "demo",
        help="the offline demo study: baseline, pruning, int8, distillation on digits",
        description="Run the bundled demo study (scikit-learn digits, offline, CPU, a few "
        "minutes) and leave its results, resolved config and a CSV export in a folder.",
    )
    p.add_argument(
        "--out", metavar="DIR", default=None, help="results folder (default results/demo)"
    )
    p.set_defaults(func=cmd_demo)


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
    settings = ExecutorSettings(
        kind=kind,
        address=address if address is not None else (current.address if kind == "ray" else None),
        gpus=current.gpus if kind == "local-gpus" else None,
    )
    return replace(config, executor=settings)


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.progress import StudyProgress
    from wattwise.config import load_study_config
    from wattwise.experiment.sweep import StudyInterrupted, run_study

    config = _with_executor(load_study_config(args.study), args.executor, args.address)
    try:
        with StudyProgress() as reporter:
            run_study(
                config,
                resume=not args.no_resume,
                retry_failed=args.retry_failed,
                study_dir=args.out,
                reporter=reporter,
            )
    except StudyInterrupted as stop:
        s = stop.summary
        Console(stderr=True).print(
            f"wattwise: interrupted: {s.ok} ok and {s.failed} failed of {s.total} trials are "
            f"stored in {s.store_path}; trials in progress stay 'running' and run again when "
            f"you resume: wattwise sweep {args.study}" + (f" --out {args.out}" if args.out else ""),
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    return 0


# --- results --------------------------------------------------------------------------------


def store_path_of(path: str | Path) -> Path:
    """``results.sqlite`` of a study folder, or the file itself.

    Raises:
        ConfigError: Nothing there, or a folder without ``results.sqlite``.
    """
    from wattwise.experiment.store import STORE_FILE

    target = Path(path)
    if target.is_dir():
        target = target / STORE_FILE
        if not target.is_file():
            raise ConfigError(f"{path} holds no {STORE_FILE}: is it a study folder?")
    elif not target.is_file():
        raise ConfigError(f"no study folder or results store at {path}")
    return target


def cmd_results(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.render import results_table
    from wattwise.experiment import ResultsStore

    filters = {
        key: value
        for key in ("dataset", "model", "technique")
        if (value := getattr(args, key)) is not None
    }
    if "technique" in filters:
        from wattwise.optimize import canonical_recipe

        filters["technique"] = canonical_recipe(filters["technique"])
    with ResultsStore(store_path_of(args.path), read_only=True) as store:
        records = store.records(args.status, **filters)
        console = Console()
        console.print(results_table(records, title=f"{store.study or 'study'}: {store.path}"))
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
        "[bold]wattwise demo[/bold]: a small study on scikit-learn digits (offline, CPU): "
        "baseline, structured pruning, int8, distillation and a combined recipe, "
        "2 learning rates x 2 seeds"
    )
    try:
        with StudyProgress(console) as reporter:
            result = run_demo(out, reporter=reporter)
    except KeyboardInterrupt as stop:
        summary = getattr(stop, "summary", None)
        where = summary.store_path if summary is not None else out
        print(
            f"wattwise: interrupted; finished trials are in {where}; run the demo again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    for line in result.where():
        console.print(line, highlight=False, soft_wrap=True)
    return 0
