"""The shape of the command line: one entry point, ``python -m wattwise``, command modules that
import only the shared base and the presentation, and flags named after their config keys."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wattwise.cli as cli_package
from wattwise import __version__
from wattwise.cli import COMMAND_MODULES, EXIT_INTERRUPTED, EXIT_USAGE, build_parser, main
from wattwise.cli._base import Parser

CLI_DIR = Path(cli_package.__file__).parent
#: What a command module may import from the cli package: the base and the presentation.
SHARED = {"wattwise.cli._base", "wattwise.cli.render", "wattwise.cli.progress"}
SHARED |= {"wattwise.cli.render_profiles"}  # operator tables (train and optimize --profile)


def _cli_imports(path: Path) -> set[str]:
    """The ``wattwise.cli...`` modules ``path`` imports, at any depth (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "wattwise" and any(a.name == "cli" for a in node.names):
                names = ["wattwise.cli"]
            elif node.module == "wattwise.cli":
                names = [f"wattwise.cli.{a.name}" for a in node.names]
            else:
                names = [node.module]
        else:
            continue
        found.update(n for n in names if n == "wattwise.cli" or n.startswith("wattwise.cli."))
    return found


@pytest.mark.parametrize("module", COMMAND_MODULES, ids=lambda m: m.__name__)
def test_a_command_module_imports_only_the_base_and_the_presentation(module):
    path = Path(module.__file__)
    assert _cli_imports(path) <= SHARED, f"{module.__name__} imports another command module"


@pytest.mark.parametrize("name", ["_base", "render", "progress", "render_profiles"])
def test_shared_modules_import_no_command_module(name):
    allowed = {"wattwise.cli.render"} if name in ("progress", "render_profiles") else set()
    assert _cli_imports(CLI_DIR / f"{name}.py") <= allowed


def test_every_module_of_the_package_is_a_command_module_or_shared():
    names = {p.stem for p in CLI_DIR.glob("*.py")} - {"__init__", "__main__"}
    commands = {m.__name__.rsplit(".", 1)[1] for m in COMMAND_MODULES}
    assert names == commands | {s.rsplit(".", 1)[1] for s in SHARED}


def test_one_exit_code_constant_and_one_parser_class():
    assert (EXIT_USAGE, EXIT_INTERRUPTED) == (2, 130)
    for path in CLI_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        assigned = [
            t.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        ]
        if path.name != "_base.py":
            assert "EXIT_USAGE" not in assigned and "EXIT_INTERRUPTED" not in assigned, path
            assert not any(
                isinstance(n, ast.ClassDef)
                and any(getattr(b, "attr", None) == "ArgumentParser" for b in n.bases)
                for n in ast.walk(tree)
            ), f"{path.name} defines a parser class ({classes})"


def test_every_subparser_is_the_one_parser_class():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {
        "devices", "monitor", "inspect", "train", "optimize", "sweep", "results", "demo", "report",
        "compare",
    }  # fmt: skip
    assert all(isinstance(p, Parser) for p in sub.choices.values())


@pytest.mark.parametrize("module", ["wattwise", "wattwise.cli"])
def test_python_dash_m_runs_the_command(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wattwise {__version__}"
    helped = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0 and "sweep" in helped.stdout and "monitor" in helped.stdout


def test_the_console_script_points_at_main():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'wattwise = "wattwise.cli:main"' in text
    assert main is cli_package.main


# --- flags named after config keys ----------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize(
    ("new", "old", "dest", "value", "expected"),
    [
        ("--num-threads", "--threads", "num_threads", "2", 2),
        ("--early-stopping-patience", "--early-stopping", "early_stopping_patience", "3", 3),
        ("--inference-s", "--inference-seconds", "inference_s", "0.5", 0.5),
        ("--gpu-memory-gib", "--gpu-memory-gb", "gpu_memory_gib", "8", 8.0),
        (
            "--carbon-intensity-g-per-kwh",
            "--carbon-intensity",
            "carbon_intensity_g_per_kwh",
            "50",
            50.0,
        ),
    ],
)
def test_train_flags_named_after_keys_keep_their_old_spelling(new, old, dest, value, expected):
    assert getattr(_parse(["train", new, value]), dest) == expected
    assert getattr(_parse(["train", old, value]), dest) == expected


def test_boolean_train_flags_come_in_pairs():
    args = _parse(["train"])
    assert (args.augment, args.hflip) == (True, True)
    args = _parse(["train", "--no-augment", "--no-hflip"])
    assert (args.augment, args.hflip) == (False, False)
    assert _parse(["train", "--no-hflip", "--hflip"]).hflip is True


def test_optimize_inference_seconds_keeps_its_old_spelling():
    base = ["optimize", "--checkpoint", "c", "--recipe", "quantize:int8"]
    assert _parse([*base, "--inference-s", "1"]).inference_s == 1.0
    assert _parse([*base, "--inference-seconds", "1"]).inference_s == 1.0


def test_sample_hz_or_interval_sets_the_sampling_rate():
    from wattwise.cli._base import monitor_config_from_args

    config = monitor_config_from_args(_parse(["monitor", "--sample-hz", "50", "--", "true"]))
    assert config.sample_hz == pytest.approx(50)
    config = monitor_config_from_args(_parse(["monitor", "--interval", "0.5", "--", "true"]))
    assert config.sample_hz == pytest.approx(2)
    assert monitor_config_from_args(_parse(["monitor", "--", "true"])).sample_hz == 10


def test_sample_hz_and_interval_together_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["monitor", "--sample-hz", "5", "--interval", "0.2", "--", "true"])
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not allowed with" in err


def test_sample_hz_out_of_range_is_exit_2(capsys):
    assert main(["monitor", "--sample-hz", "5000", "--", "true"]) == EXIT_USAGE
    assert "--sample-hz must be between 0.1 and 1000" in capsys.readouterr().err
