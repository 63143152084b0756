"""``wattwise report STUDY``: a study's HTML + Markdown report, a thin layer over
:func:`wattwise.analysis.report.build_report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wattwise.cli._base import non_negative_float


def register(subparsers: Any) -> None:
    """Adds ``report`` to ``subparsers``."""
    p = subparsers.add_parser(
        "report",
        help="write a study's HTML + Markdown report with plots and statistics",
        description="Analyze a study's results store: efficiency metrics, Pareto front, "
        "recommendation, statistics and plots, written as one self-contained report.html, a "
        "report.md summary, plots/ (PNG + SVG) and tables/ (the variants, trials and paybacks "
        "as CSV and Parquet, every column the report shows; with --latex also as LaTeX).",
    )
    p.add_argument(
        "study", metavar="STUDY", help="a study folder holding results.sqlite, or the file"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default: STUDY/report)")
    p.add_argument(
        "--floor",
        type=non_negative_float("--floor"),
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
    p.add_argument(
        "--latex",
        action="store_true",
        help="also write the main tables (variants, trials) as LaTeX booktabs tables: "
        "tables/variants.tex, tables/trials.tex (\\usepackage{booktabs})",
    )
    p.add_argument("--open", action="store_true", help="open report.html in the web browser")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from wattwise.analysis.report import build_report

    paths = build_report(
        args.study, args.out, floor_points=args.floor, by=args.by, latex=args.latex
    )
    print(f"report: {paths.html}")
    print(f"summary: {paths.markdown}")
    print(f"plots: {paths.out_dir / 'plots'} ({len(paths.plots)} files)")
    print(f"tables: {paths.out_dir / 'tables'} ({len(paths.tables)} files: CSV, Parquet"
          + (", LaTeX)" if args.latex else ")"))  # fmt: skip
    if args.open:
        import webbrowser

        if not webbrowser.open(Path(paths.html).resolve().as_uri()):
            print("no web browser found; open the report file yourself", file=sys.stderr)
    return 0
