"""``wattwise compare BASE NEW``: the exit code is the verdict (1: regression), the table reads at
80 columns, bad inputs are one line and exit code 2, and the github-action-benchmark file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.analysis.test_compare_records import (
    WOBBLE2,
    monitor_record,
    optimize_record,
    rounds,
    study,
    write_json,
)
from wattwise.analysis.compare_records import NO_INTERVAL
from wattwise.cli import main

WIDTH = 80


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WATTWISE_POWERCAP_ROOT", "WATTWISE_CPU_TDP_W", "WATTWISE_CPU_THREADS"):
        monkeypatch.delenv(name, raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit code, stdout, stderr); argparse exits are caught."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_fits(out: str, tmp_path: Path) -> None:
    """Every line but those naming a (long) temporary path reads at 80 columns."""
    for line in out.splitlines():
        if str(tmp_path) not in line:
            assert len(line) <= WIDTH, f"{len(line)} columns: {line!r}"


def recipes(tmp_path: Path, factor: float, baseline: float = 1.0) -> tuple[Path, Path]:
    """Two recipe.json records; in NEW, the pruned variant's J/image is ``factor`` times BASE's
    and the baseline's ``baseline`` times."""
    base = optimize_record({"baseline": rounds(1e-3), "prune:structured:0.5": rounds(5e-4)})
    new = optimize_record({"baseline": rounds(1e-3 * baseline, WOBBLE2),
                           "prune:structured:0.5": rounds(5e-4 * factor, WOBBLE2)})  # fmt: skip
    return write_json(tmp_path / "base.json", base), write_json(tmp_path / "new.json", new)


def test_two_real_monitor_runs_compare_without_an_interval(tmp_path, capsys):
    paths = []
    for name in ("base", "new"):
        path = tmp_path / f"{name}.json"
        code, _, err = run(["monitor", "--json", path, "--", sys.executable, "-c", "pass"], capsys)
        assert code == 0, err
        paths.append(path)
    code, out, err = run(["compare", *paths, "--tolerance", "1000"], capsys)
    assert code == 0, err
    assert NO_INTERVAL in " ".join(out.split())  # said, not an invented interval
    assert "energy (J)" in out and "monitor" in out
    assert "measured" in out or "estimated" in out  # which one depends on this machine's meters
    assert_fits(out, tmp_path)


def test_a_clear_regression_exits_1(tmp_path, capsys):
    base, new = recipes(tmp_path, 1.5)
    code, out, err = run(["compare", base, new], capsys)
    assert code == 1, err
    assert err == ""
    lines = [line for line in out.splitlines() if "regression" in line]
    assert lines and out.rstrip().splitlines()[-1].startswith("verdict: regression")
    assert "prune:structured:0.5" in out and "no significant change" in out
    assert "95 %" in out and "measured" in out
    assert_fits(out, tmp_path)


@pytest.mark.parametrize(
    ("factor", "baseline", "verdict"),
    [(0.6, 0.6, "improved"), (0.6, 1.0, "no significant change"),
     (1.0, 1.0, "no significant change")],
)  # fmt: skip
def test_no_regression_exits_0_with_the_worst_rows_verdict(
    tmp_path, capsys, factor, baseline, verdict
):
    base, new = recipes(tmp_path, factor, baseline)
    code, out, err = run(["compare", base, new], capsys)
    assert code == 0, err
    assert out.rstrip().splitlines()[-1].startswith(f"verdict: {verdict}")
    assert_fits(out, tmp_path)


def test_worse_within_tolerance_exits_0(tmp_path, capsys):
    base = write_json(tmp_path / "base.json", monitor_record(10.0))
    new = write_json(tmp_path / "new.json", monitor_record(10.4))
    code, out, _ = run(["compare", base, new, "--tolerance", "0.05"], capsys)
    assert code == 0
    assert out.rstrip().splitlines()[-1].startswith("verdict: worse within tolerance")
    code, out, _ = run(["compare", base, new, "--tolerance", "0.02"], capsys)
    assert code == 1 and "verdict: regression" in out


def test_estimated_numbers_are_marked(tmp_path, capsys):
    base = write_json(tmp_path / "base.json", monitor_record(10.0))
    new = write_json(tmp_path / "new.json", monitor_record(10.0, measured=False))
    code, out, _ = run(["compare", base, new], capsys)
    assert code == 0
    assert "10*" in out  # the estimated number carries the mark
    assert "estimated:tdp" in out and "measured:rapl" in out


def test_metric_selects_time(tmp_path, capsys):
    base = write_json(tmp_path / "base.json", monitor_record(10.0, duration_s=1.0))
    new = write_json(tmp_path / "new.json", monitor_record(10.0, duration_s=2.0))
    code, out, _ = run(["compare", base, new, "--metric", "time"], capsys)
    assert code == 1 and "time (s)" in out


def test_a_long_variant_name_gets_its_own_line(tmp_path, capsys):
    name = "prune:structured:0.5:importance=taylor:steps=3+quantize:int8"
    base = write_json(tmp_path / "base.json", optimize_record({name: rounds(1e-3)}))
    new = write_json(tmp_path / "new.json", optimize_record({name: rounds(1e-3, WOBBLE2)}))
    code, out, _ = run(["compare", base, new], capsys)
    assert code == 0 and name in out.splitlines()
    assert_fits(out.replace(name, ""), tmp_path)


@pytest.mark.parametrize(
    "bad",
    [
        "missing.json",
        "garbage.json",
        "kinds",
    ],
)
def test_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys, bad):
    good = write_json(tmp_path / "good.json", monitor_record(10.0))
    (tmp_path / "garbage.json").write_text("\x00\x01 not json")
    other = study(tmp_path / "study") if bad == "kinds" else tmp_path / bad
    code, out, err = run(["compare", good, other], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("wattwise: error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--tolerance", "-1"],
        ["--tolerance", "nan"],
        ["--metric", "joules"],
        ["--format", "github-benchmark"],  # where to?
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, argv):
    good = write_json(tmp_path / "good.json", monitor_record(10.0))
    code, _, err = run(["compare", good, good, *argv], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_github_benchmark_output(tmp_path, capsys):
    base, new = recipes(tmp_path, 1.5)
    target = tmp_path / "out" / "bench.json"
    argv = ["compare", base, new, "--format", "github-benchmark", "--output", target]
    code, out, _ = run(argv, capsys)
    assert code == 1  # the file is written and the verdict still fails the step
    entries = json.loads(target.read_text())
    assert isinstance(entries, list) and len(entries) == 2
    for entry in entries:
        assert set(entry) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(entry["name"], str) and isinstance(entry["value"], float)
        assert entry["unit"] == "J/image"
    assert str(target) in out
    assert not list(target.parent.glob(".*.tmp"))  # written atomically: no temporary left


def test_output_writes_the_comparison_itself_by_default(tmp_path, capsys):
    base, new = recipes(tmp_path, 1.0)
    target = tmp_path / "comparison.json"
    code, _, _ = run(["compare", base, new, "--output", target], capsys)
    data = json.loads(target.read_text())
    assert code == 0 and data["verdict"] == "no significant change"
    assert [row["name"] for row in data["rows"]] == ["baseline", "prune:structured:0.5"]
