"""``train --profile`` and ``optimize --profile``: the top operators in the record and a compact
table that reads at 80 columns."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.cli.test_train import assert_one_line_error, run_cli
from wattwise.cli import main
from wattwise.energy import profiler
from wattwise.energy.profiler import ESTIMATED, OperatorProfile

TRAIN = ["train", "--dataset", "digits", "--model", "small_cnn", "--width", "0.25"]
TRAIN += ["--epochs", "1", "--batch-size", "64", "--inference-s", "0.2", "--threads", "1"]
TRAIN += ["--no-augment"]


def _table_lines(out: str) -> list[str]:
    """The lines of the operator tables: from each title to the end of its caption."""
    lines, inside = [], False
    for line in out.splitlines():
        inside = inside or "top operators of" in line
        if inside:
            lines.append(line)
            inside = not line.rstrip().endswith("the profiler's overhead.")
    return lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A profiled one-epoch run (``train --profile``) at 80 columns: its folder and output."""
    out_dir = tmp_path_factory.mktemp("profiled") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "80")
        patch.setattr(profiler, "INFERENCE_MIN_S", 0.05)  # a few batches suffice here
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([*TRAIN, "--profile", "--out", str(out_dir)])
    assert code == 0, stderr.getvalue()
    return out_dir, stdout.getvalue()


def test_train_profile_writes_the_operators_into_its_record(trained: tuple[Path, str]) -> None:
    out_dir, _ = trained
    record = json.loads((out_dir / "run.json").read_text())
    assert record["spec"]["measurement"]["profile"] is True
    profiles = [OperatorProfile.from_dict(p) for p in record["profiles"]]
    assert [(p.phase, p.variant) for p in profiles] == [("train", None), ("inference", "baseline")]
    assert profiles[0].steps == profiler.TRAIN_STEPS
    for p in profiles:
        assert 0 < len(p.operators) <= profiler.TOP_K
        assert p.energy_label == ESTIMATED
        assert all(op.self_cpu_time_s >= 0 and op.calls > 0 for op in p.operators)
        assert sum(op.energy_share or 0 for op in p.operators) <= 1 + 1e-9
    assert any(op.flops > 0 for op in profiles[1].operators)
    assert "profile/baseline" in record["phases"]


def test_train_profile_prints_a_table_that_reads_at_80_columns(trained: tuple[Path, str]) -> None:
    out_dir, out = trained
    lines = _table_lines(out)
    assert sum("top operators of" in line for line in lines) == 2
    assert all(cell_len(line) <= 80 for line in lines), "\n".join(lines)
    header = next(line for line in lines if "operator" in line and "calls" in line)
    for column in ("self CPU", "MFLOP", "memory", "energy"):
        assert column in header
    assert any(re.search(r"\d+\.\d%", line) for line in lines)  # estimated shares
    assert any(ESTIMATED in line for line in lines)  # the caption says they are estimates
    record = json.loads((out_dir / "run.json").read_text())
    top = OperatorProfile.from_dict(record["profiles"][1]).operators[0].name
    assert top[:20] in out


def test_optimize_profile_records_every_variant(
    trained: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(profiler, "INFERENCE_MIN_S", 0.05)
    out_dir, _ = trained
    argv = ["optimize", "--checkpoint", str(out_dir), "--recipe", "prune:structured:0.5"]
    argv += ["--finetune-epochs", "0", "--inference-s", "0.2", "--rounds", "2"]
    argv += ["--max-rounds", "2", "--threads", "1", "--profile", "--out", str(tmp_path / "opt")]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    recipe = json.loads((tmp_path / "opt" / "recipe.json").read_text())
    profiles = [OperatorProfile.from_dict(p) for p in recipe["profiles"]]
    assert [p.variant for p in profiles] == [v["step"] for v in recipe["variants"]]
    assert [p.variant for p in profiles] == ["baseline", "prune:structured:0.5"]
    assert all(p.operators and p.energy_label == ESTIMATED for p in profiles)
    lines = _table_lines(out)
    assert sum("top operators of" in line for line in lines) == 2
    assert all(cell_len(line) <= 80 for line in lines), "\n".join(lines)


def test_optimize_profile_with_search_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["optimize", "--checkpoint", str(tmp_path / "missing"), "--search", "--profile"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "--profile", "--search")
    assert list(tmp_path.iterdir()) == []
