"""Command line of studies: ``wattwise sweep``, ``wattwise results`` and ``wattwise demo``.

A thin layer over :mod:`wattwise.experiment`: ``register(subparsers)`` adds ``sweep`` and
``results`` to the ``wattwise`` parser, ``register_demo(subparsers)`` adds ``demo``. Bad input
(a :class:`~wattwise.errors.WattwiseError`) is one line on stderr and exit code 2; Ctrl-C during
a sweep exits with 130 after what finished is committed. ``python -m wattwise.cli_experiment``
runs these commands on their own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXECUTORS = ("local", "local-gpus", "ray")
STATUSES = ("ok", "failed", "running")


def register(subparsers: Any) -> None:
    """Adds ``sweep`` and ``results`` to ``subparsers`` (from ``parser.add_subparsers()``)."""
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
        help="where trials run (default: the study's executor.kind, else local)",
    )
    p.add_argument("--address", help="Ray cluster address (with --executor ray)")
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


def register_demo(subparsers: Any) -> None:
    """Adds ``demo`` (the bundled study on scikit-learn digits) to ``subparsers``."""
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
    return config.model_copy(update={"executor": settings})


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.config import load_study_config
    from wattwise.experiment.sweep import StudyInterrupted, run_study

    config = _with_executor(load_study_config(args.study), args.executor, args.address)
    try:
        run_study(
            config,
            resume=not args.no_resume,
            retry_failed=args.retry_failed,
            study_dir=args.out,
            progress=True,
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
    from wattwise.experiment.sweep import STORE_FILE

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

    from wattwise.experiment import ResultsStore

    filters = {
        key: value
        for key in ("dataset", "model", "technique")
        if (value := getattr(args, key)) is not None
    }
    if "technique" in filters:
        from wattwise.config import format_recipe, parse_recipe

        filters["technique"] = format_recipe(parse_recipe(filters["technique"]))
    with ResultsStore(store_path_of(args.path)) as store:
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


def results_table(records: Sequence[Any], *, title: str = "trials") -> Any:
    """One row per trial: id, point of the grid, status (or reason), accuracy, training energy
    in joules with its provenance, and inference energy per image."""
    from rich.table import Table

    table = Table(title=f"{title} ({len(records)} trials)", title_justify="left")
    for name in ("id", "dataset", "model", "technique", "bs", "lr", "epochs", "seed"):
        table.add_column(name, no_wrap=name in ("id", "technique"))
    table.add_column("status / reason", overflow="fold", max_width=48)
    table.add_column("accuracy", justify="right")
    table.add_column("train energy J", justify="right")
    table.add_column("J/image", justify="right")
    for r in records:
        s = r.spec
        status = r.status if r.status != "failed" else f"[red]failed[/red]: {_escape(r.reason)}"
        if r.status == "running":
            status = "[yellow]running[/yellow] (interrupted? resumes)"
        energy = "-"
        if r.train_energy_j is not None:
            energy = f"{r.train_energy_j:.4g} ({r.train_energy_provenance})"
        per_image = "-"
        if r.inference_energy_per_image_j is not None:
            per_image = f"{r.inference_energy_per_image_j:.3g} ({r.inference_energy_provenance})"
        table.add_row(
            r.trial_id,
            str(s.get("dataset", "-")),
            str(s.get("model", "-")),
            _escape(str(s.get("technique", "-"))),
            str(s.get("batch_size", "-")),
            f"{float(s['lr']):g}" if s.get("lr") is not None else "-",
            str(s.get("epochs", "-")),
            str(s.get("seed", "-")),
            status,
            f"{r.accuracy:.2%}" if r.accuracy is not None else "-",
            energy,
            per_image,
        )
    return table


def _escape(text: str | None) -> str:
    from rich.markup import escape

    return escape(text or "")


# --- demo -----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.experiment.demo import DEFAULT_OUT, run_demo

    out = Path(args.out) if getattr(args, "out", None) else Path(DEFAULT_OUT)
    console = Console()
    console.print(
        "[bold]wattwise demo[/bold]: a small study on scikit-learn digits (offline, CPU): "
        "baseline, structured pruning, int8, distillation and a combined recipe, "
        "2 learning rates x 2 seeds"
    )
    try:
        result = run_demo(out, progress=True, console=console)
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


# --- standalone -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The ``wattwise`` command (these subcommands are registered in :mod:`wattwise.cli`)."""
    from wattwise.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
