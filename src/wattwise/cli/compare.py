"""``wattwise compare BASE NEW``: is NEW significantly worse than BASE? A thin layer over
:func:`wattwise.analysis.compare_records.compare_records`: a table that reads at 80 columns, the
verdict, and the exit code a CI step needs (1: regression, 0: not, 2: bad input)."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from wattwise.cli._base import check_writable, non_negative_float, write_json
from wattwise.errors import ConfigError

#: NEW is significantly worse than BASE by more than the tolerance.
EXIT_REGRESSION = 1
#: Columns the output reads at.
WIDTH = 79
#: The formats of ``--output``: the comparison's own JSON, or github-action-benchmark's.
FORMATS = ("wattwise", "github-benchmark")
_GAP = "  "
#: What two records of each kind are called in the title.
_TITLES = {
    "monitor": "monitor records",
    "train": "run records",
    "optimize": "optimize records",
    "study": "studies",
}


def register(subparsers: Any) -> None:
    """Adds ``compare`` to ``subparsers``."""
    from wattwise.analysis.compare_records import DEFAULT_TOLERANCE, METRICS

    p = subparsers.add_parser(
        "compare",
        help="compare two records; exit 1 when NEW is significantly worse (CI regression check)",
        description="Compare two records of one kind (wattwise monitor --json, a run's run.json, "
        "an optimize recipe.json, or two study folders) row by row: NEW / BASE with its 95 % "
        "interval where the records hold repeated measurements. Exit code 1 when NEW is "
        "significantly worse by more than the tolerance, 0 otherwise, 2 on bad input.",
    )
    p.add_argument("base", metavar="BASE", help="the reference record, or a study folder")
    p.add_argument("new", metavar="NEW", help="the record to check, of the same kind")
    p.add_argument(
        "--metric",
        choices=METRICS,
        help="what to compare (default: J/image for optimize records and studies, energy for "
        "monitor and run records)",
    )
    p.add_argument(
        "--tolerance",
        type=non_negative_float("--tolerance"),
        default=DEFAULT_TOLERANCE,
        metavar="FRACTION",
        help=f"how much worse NEW may be before it is a regression (default {DEFAULT_TOLERANCE:g}"
        " = 5 %%)",
    )
    p.add_argument(
        "--format",
        dest="output_format",
        choices=FORMATS,
        default="wattwise",
        help="format of --output: the comparison as JSON (default), or github-action-benchmark's "
        "customSmallerIsBetter list",
    )
    p.add_argument("--output", metavar="FILE", help="also write the comparison to FILE")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from wattwise.analysis.compare_records import compare_records

    if args.output_format != "wattwise" and not args.output:
        raise ConfigError(f"--format {args.output_format} needs --output FILE")
    if args.output:
        check_writable(args.output, "--output")
    result = compare_records(args.base, args.new, metric=args.metric, tolerance=args.tolerance)
    for line in comparison_lines(result):
        print(line)
    if args.output:
        github = args.output_format == "github-benchmark"
        write_json(args.output, result.github_benchmark() if github else result.to_dict())
        what = "github-action-benchmark entries" if github else "comparison"
        print(f"{what} written to {args.output}")
    print(f"verdict: {result.verdict}")
    return EXIT_REGRESSION if result.regression else 0


def comparison_lines(result: Any) -> list[str]:
    """The comparison as text: what was compared, the table, where each number came from, how
    the intervals were made, the notes, and the line that decided the verdict."""
    from wattwise.analysis.compare_records import ROW_NOUNS

    what = result.metric if result.metric == "J/image" else f"{result.metric} ({result.unit})"
    title = f"compare {what} of two {_TITLES[result.kind]}, tolerance {result.tolerance * 100:g} %"
    lines = [title]
    for side, path, description in (
        ("base", result.base, result.base_description),
        ("new", result.new, result.new_description),
    ):
        lines += _wrap(f"{side + ':':5} {path} ({description})")
    lines += ["", *_table(result, ROW_NOUNS[result.kind]), ""]
    if result.metric != "time":
        lines.append(
            "numbers marked * are estimated (a model, not a meter), the others measured"
            if result.estimated
            else "every number is measured"
        )
    lines += _provenance_lines(result)
    for method in dict.fromkeys(row.method for row in result.rows):
        lines += _wrap(f"interval: {method}")
    for note in result.notes:
        lines += _wrap(f"note: {note}")
    for side, names in (("base", result.only_base), ("new", result.only_new)):
        if names:
            lines += _wrap(f"only in {side} (not compared): {', '.join(names)}")
    lines += _wrap(result.summary)
    return lines


def _provenance_lines(result: Any) -> list[str]:
    lines = []
    for side in ("base", "new"):
        texts = dict.fromkeys(getattr(row, side).provenance_text for row in result.rows)
        lines += _wrap(f"{side} numbers: {'; '.join(texts)}")
    return lines


def _table(result: Any, row_noun: str) -> list[str]:
    """Name, base, new, new/base with its interval, verdict; a name too long for its column is
    printed on its own line, the numbers on the next."""
    header = (row_noun, "base", "new", f"new/base ({result.confidence * 100:g} % CI)", "verdict")
    cells = [
        (
            row.name,
            _number(row.base),
            _number(row.new),
            _ratio(row),
            row.verdict,
        )
        for row in result.rows
    ]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(1, 4)]
    room = WIDTH - sum(widths) - len(_GAP) * 4 - max(len(r[4]) for r in [header, *cells])
    fitting = [len(r[0]) for r in cells if len(r[0]) <= room]
    name_width = max([len(row_noun), *fitting])
    lines = []
    for name, *rest in [header, *cells]:
        if len(name) > name_width:
            lines.append(name)
            name = ""
        values = [value.ljust(width) for value, width in zip(rest[:3], widths, strict=True)]
        lines.append(_GAP.join([name.ljust(name_width), *values, rest[3]]).rstrip())
    return lines


def _number(sample: Any) -> str:
    return f"{sample.value:.4g}{'*' if sample.estimated else ''}"


def _ratio(row: Any) -> str:
    if row.low is None or row.high is None:
        return f"{row.ratio:.2f}"
    return f"{row.ratio:.2f} ({row.low:.2f}–{row.high:.2f})"


def _wrap(text: str) -> list[str]:
    """``text`` in lines of :data:`WIDTH` columns, never broken inside a word, a path or
    before a ``%``."""
    lines = textwrap.wrap(
        text.replace(" %", "\u00a0%"),
        WIDTH,
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace("\u00a0", " ") for line in lines]
