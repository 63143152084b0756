"""Every option of every command says what it does, its default and its choices, and building
the parser stays cheap (no torch)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from wattwise.cli import build_parser

COMMANDS = ("train", "optimize", "sweep", "results", "demo", "report", "compare")
COMMANDS += ("devices", "monitor", "inspect")


def test_the_list_is_every_command() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)


def _command(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_and_argument_has_help(command: str) -> None:
    actions = _command(command)._actions
    missing = [_name(a) for a in actions if not (isinstance(a.help, str) and a.help.strip())]
    assert not missing, f"{command}: no help for {missing}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_with_a_default_names_it(command: str) -> None:
    actions = _command(command)._actions
    silent = [
        _name(a)
        for a in actions
        if a.option_strings
        and a.default not in (None, False, argparse.SUPPRESS)
        and "default" not in a.help
    ]
    assert not silent, f"{command}: the help does not name the default of {silent}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_fixed_choice_is_listed(command: str) -> None:
    parser = _command(command)
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        for choice in action.choices or ():
            assert str(choice) in text, f"{command} {_name(action)}: {choice} not listed"


def test_train_lists_the_registered_datasets_and_models() -> None:
    from wattwise.data import list_datasets
    from wattwise.models import list_models

    text = " ".join(_command("train").format_help().split())
    for name in (*list_datasets(), *list_models()):
        assert name in text, name


def test_optimize_lists_the_technique_steps() -> None:
    from wattwise.optimize import list_techniques

    text = " ".join(_command("optimize").format_help().split())
    for step in list_techniques():
        assert step in text, step


def test_results_lists_its_columns() -> None:
    from wattwise.cli.render import RESULTS_COLUMNS

    text = " ".join(_command("results").format_help().split())
    for column in RESULTS_COLUMNS:
        assert column.name in text, column.name


def test_building_the_parser_imports_no_torch() -> None:
    """The registries that the help lists import torch: they are read when help is shown."""
    code = (
        "import sys; from wattwise.cli import build_parser; build_parser(); "
        "build_parser().parse_args(['results', 'x']); "
        "sys.exit(sorted(m for m in ('torch', 'wattwise.data', 'wattwise.models') "
        "if m in sys.modules) or None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
