"""Command line of the analysis: ``wattwise report STUDY``.

A thin layer over :func:`wattwise.analysis.report.build_report`: ``register(subparsers)`` adds
``report`` to the ``wattwise`` parser. A missing or invalid store (a
:class:`~wattwise.errors.WattwiseError`) is one line on stderr and exit code 2.
``python -m wattwise.cli_analysis report STUDY`` runs the command on its own.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from wattwise.errors import WattwiseError

EXIT_USAGE = 2


def _floor_points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--floor must be a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"--floor must be a number >= 0, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    """Adds ``report`` to ``subparsers`` (from ``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "report",
        help="write a study's HTML + Markdown report with plots and statistics",
        description="Analyze a study's results store: efficiency metrics, Pareto front, "
        "recommendation, statistics and plots, written as one self-contained report.html, a "
        "report.md summary and plots/ (PNG + SVG).",
    )
    p.add_argument(
        "study", metavar="STUDY", help="a study folder holding results.sqlite, or the file"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default: STUDY/report)")
    p.add_argument(
        "--floor",
        type=_floor_points,
        default=1.0,
        metavar="POINTS",
        help="accuracy points a recommended variant may lose against the baseline (default 1)",
    )
    p.add_argument(
        "--by",
        choices=("inference", "train"),
        default="inference",
        help="rank the recommendation by inference J/image or training energy (default inference)",
    )
    p.add_argument("--open", action="store_true", help="open report.html in the web browser")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from wattwise.analysis.report import build_report

    paths = build_report(args.study, args.out, floor_points=args.floor, by=args.by)
    print(f"report: {paths.html}")
    print(f"summary: {paths.markdown}")
    print(f"plots: {paths.out_dir / 'plots'} ({len(paths.plots)} files)")
    if args.open:
        import webbrowser

        if not webbrowser.open(Path(paths.html).resolve().as_uri()):
            print("no web browser found; open the report file yourself", file=sys.stderr)
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"wattwise: error: {message} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``wattwise report`` on its own (the main CLI registers the same command)."""
    parser = _Parser(prog="wattwise")
    register(parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except WattwiseError as err:
        print(f"wattwise: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
