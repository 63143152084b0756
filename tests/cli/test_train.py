"""`wattwise train` and `wattwise inspect`: output on success, one clean line on bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from wattwise.cli import main
from wattwise.train import load_checkpoint


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``wattwise ARGV`` (argparse errors exit via SystemExit)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wattwise: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_train_prints_epochs_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    out_dir = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--model", "small_cnn", "--epochs", "2"]
    argv += ["--out", str(out_dir), "--inference-seconds", "0.2", "--threads", "1"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert "small_cnn on digits, 2 epochs" in out
    # The per-epoch table: a header and one row per epoch with loss, accuracies, energy, source.
    assert re.search(r"epoch\s+loss\s+acc\s+val acc", out)
    for epoch in (1, 2):
        row = (
            rf"^\s*{epoch}\s+\d+\.\d{{4}}\s+\d+\.\d+%\s+\d+\.\d+%"
            r".*\d [mk]?J\s+(estimated|measured|mixed)"
        )
        assert re.search(row, out, re.MULTILINE), out
    # The summary.
    assert "test accuracy" in out
    assert re.search(r"[\d.]+ accuracy per kJ", out)
    assert "mJ/image" in out
    assert f"run saved to {out_dir}" in out
    record = json.loads((out_dir / "run.json").read_text())  # the trial record of the pipeline
    assert record["status"] == "ok" and record["spec"]["technique"] == "baseline"
    assert [v["step"] for v in record["variants"]] == ["baseline"]
    assert load_checkpoint(out_dir).model_spec["name"] == "small_cnn"


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--dataset", "nope"], ["unknown dataset 'nope'", "digits"]),
        (["--model", "nope"], ["unknown model 'nope'", "small_cnn"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--lr", "abc"], ["--lr", "abc"]),
        (["--lr", "-1"], ["--lr"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--label-smoothing", "1"], ["label_smoothing"]),
        (["--optimizer", "rmsprop"], ["--optimizer"]),
        (["--precision", "fp8"], ["--precision"]),
        (["--device", "tpu"], ["device"]),
        (["--inference-seconds", "-1"], ["--inference-s", "must be >= 0"]),
    ],
)
def test_train_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragments: list[str]
) -> None:
    argv = ["train", "--epochs", "1", "--out", str(tmp_path / "run"), *extra]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_cuda_without_gpu_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--epochs", "1", "--device", "cuda", "--out", str(tmp_path / "run")]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "no CUDA GPU")


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled")
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_fp16_on_cpu_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--epochs", "1", "--precision", "fp16", "--device", "cpu"]
    code, _, err = run_cli([*argv, "--threads", "1", "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "fp16", "bf16")


def test_train_malformed_cuda_device_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--epochs", "1", "--device", "cudax", "--out", str(tmp_path / "run")]
    try:
        code, _, err = run_cli(argv, capsys)
    except RuntimeError as exc:  # what happens today: the error escapes main()
        pytest.fail(f"escaped main(): {exc}")
    assert_one_line_error(code, err, "device")


def test_inspect_resnet18_macs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["inspect", "resnet18", "--input", "3x224x224"], capsys)
    assert code == 0, err
    assert "(1.814 G)" in out  # MACs, as torchvision's "GFLOPS"
    assert "(3.628 G)" in out  # FLOPs = 2 x MACs
    assert "(11.69 M)" in out


@pytest.mark.parametrize("shape", ["3x224", "3x224x225", "axbxc", "0x8x8"])
def test_inspect_bad_input_is_exit_2(shape: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["inspect", "resnet18", "--input", shape], capsys)
    assert_one_line_error(code, err, shape)


def test_inspect_unknown_model_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["inspect", "resnet19"], capsys)
    assert_one_line_error(code, err, "resnet19")
