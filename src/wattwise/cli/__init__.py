"""The ``wattwise`` command: a thin layer over the library (argument mapping and printing).

    wattwise devices | monitor | inspect      (wattwise.cli.measure)
    wattwise train                            (wattwise.cli.train)
    wattwise optimize                         (wattwise.cli.optimize)
    wattwise sweep | results | demo           (wattwise.cli.experiment)
    wattwise report                           (wattwise.cli.report)
    wattwise compare                          (wattwise.cli.compare)

Each command module registers its subcommands on the one :class:`~wattwise.cli._base.Parser`
and imports only :mod:`wattwise.cli._base` and the presentation modules
(:mod:`wattwise.cli.render`, :mod:`wattwise.cli.progress`); this module imports them all.
Every :class:`~wattwise.errors.WattwiseError` (and every bad flag) becomes one line on stderr
and exit code 2, with no traceback; Ctrl-C exits with 130. ``python -m wattwise`` runs it too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from wattwise import __version__
from wattwise.cli import compare, experiment, measure, optimize, report, train
from wattwise.cli._base import EXIT_INTERRUPTED, EXIT_USAGE, Parser
from wattwise.errors import WattwiseError

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]

#: The command modules, in the order their commands appear in ``wattwise --help``.
COMMAND_MODULES = (measure, train, optimize, experiment, report, compare)


def build_parser() -> Parser:
    """The ``wattwise`` parser with every command registered."""
    parser = Parser(
        prog="wattwise",
        description="Energy-aware optimization of neural networks: measure, compress, compare.",
    )
    parser.add_argument("--version", action="version", version=f"wattwise {__version__}")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``wattwise ARGV`` (default: ``sys.argv[1:]``) and returns its exit code.

    Bad flags exit through ``SystemExit`` (code 2) as argparse does; ``--help`` and
    ``--version`` exit with 0.
    """
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except WattwiseError as err:
        print(f"wattwise: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wattwise: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
