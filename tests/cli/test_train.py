"""`wattwise train` and `wattwise inspect`: output on success, one clean line on bad input."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from wattwise.cli import main
from wattwise.data import load_dataset
from wattwise.errors import ModelError
from wattwise.models import create_model
from wattwise.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from wattwise.train.checkpoint import FORMAT


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


# --- wattwise optimize: checkpoints and teachers ------------------------------------------------
DIGITS_SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}


def _payload(**changes: Any) -> dict[str, Any]:
    """What save_checkpoint writes for a small_cnn on digits, with ``changes`` applied."""
    model = create_model(**DIGITS_SPEC)
    payload = {
        "format": FORMAT,
        "model": dict(DIGITS_SPEC),
        "state_dict": model.state_dict(),
        "train_config": {"seed": 0},
        "dataset": {"name": "digits", "info": {"image_size": 8}},
        "result": {"status": "ok"},
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose checkpoint.pt holds small_cnn trained on digits for 3 epochs."""
    torch.manual_seed(0)
    model = create_model(**DIGITS_SPEC)
    config = TrainConfig(epochs=3, lr=0.05, batch_size=32, hflip=False, num_threads=1)
    result = fit(model, load_dataset("digits"), config)
    assert result.test_accuracy is not None and result.test_accuracy > 0.85
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(
        run / "checkpoint.pt",
        model,
        model_spec=dict(DIGITS_SPEC),
        train_config=config.to_dict(),
        dataset={"name": "digits", "info": {"image_size": 8}},
        result={"status": "ok", "test_accuracy": result.test_accuracy},
    )
    return run


def test_optimize_distill_trains_the_named_teacher_first(
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    argv = ["optimize", "--checkpoint", str(trained_run), "--recipe", "distill:small_cnn"]
    argv += ["--distill-epochs", "2", "--inference-s", "0.2", "--rounds", "2", "--threads", "1"]
    code, out, err = run_cli([*argv, "--out", str(tmp_path / "opt")], capsys)
    assert code == 0, err
    assert "note: teacher small_cnn: trained first for 2 epochs on digits" in out
    record = json.loads((tmp_path / "opt" / "recipe.json").read_text())
    distilled = record["variants"][1]
    assert distilled["step"] == "distill:small_cnn"
    # an untrained small_cnn tests at about 10 % (chance); this teacher learned digits first
    assert distilled["details"]["teacher_test_accuracy"] > 0.3


def test_optimize_distill_self_teaches_with_the_checkpoint(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["optimize", "--checkpoint", str(trained_run), "--recipe", "distill:self"]
    argv += ["--distill-epochs", "1", "--inference-s", "0.2", "--rounds", "2", "--threads", "1"]
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "opt")], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "opt" / "recipe.json").read_text())
    baseline, distilled = record["variants"]
    assert distilled["details"]["teacher_test_accuracy"] == pytest.approx(baseline["accuracy"])


def _write_bad_checkpoint(case: str, run: Path) -> Path:
    """A run folder with a malformed checkpoint.pt of the given kind."""
    path = run / "checkpoint.pt"
    run.mkdir()
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        torch.save(_payload(), path)
        path.write_bytes(path.read_bytes()[:2000])
    elif case == "folder":
        path.mkdir()
    elif case == "pickled objects":
        torch.save(_payload(result={"finished": datetime.datetime(2024, 1, 1)}), path)
    elif case == "missing keys":
        torch.save(_payload(state_dict=None, result=None), path)
    elif case == "model spec without num_classes":
        torch.save(_payload(model={"name": "small_cnn"}), path)
    elif case == "model spec not a mapping":
        torch.save(_payload(model="small_cnn"), path)
    elif case == "state_dict of another width":
        other = create_model(**DIGITS_SPEC, width=2.0).state_dict()
        torch.save(_payload(state_dict=other), path)
    elif case == "no dataset name":
        torch.save(_payload(dataset={}), path)
    return path


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("empty", "empty"),
        ("truncated", "truncated"),
        ("folder", "folder"),
        ("pickled objects", "weights_only=True and refuses it"),
        ("missing keys", "state_dict, result"),
        ("model spec without num_classes", "num_classes"),
        ("model spec not a mapping", "model spec"),
        ("state_dict of another width", "another shape"),
        ("no dataset name", "dataset"),
    ],
)
def test_optimize_malformed_checkpoint_is_one_model_error_line(
    case: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_bad_checkpoint(case, tmp_path / "run")
    argv = ["optimize", "--checkpoint", str(tmp_path / "run"), "--recipe", "bf16"]
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "opt")], capsys)
    assert_one_line_error(code, err, fragment, str(path))
    assert "weights_only=False" not in err and "\x1b" not in err  # no PyTorch advice
    if case != "no dataset name":
        with pytest.raises(ModelError):
            load_checkpoint(path).build_model()


def test_inspect_refuses_a_huge_input_before_allocating(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(["inspect", "small_cnn", "--input", "3x200000x200000"], capsys)
    assert_one_line_error(code, err, "3x200000x200000", "elements")


def test_train_with_missing_data_says_pass_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    argv = ["train", "--dataset", "fashion_mnist", "--data-root", str(tmp_path / "data")]
    argv += ["--epochs", "1", "--out", str(tmp_path / "run")]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1  # refused before anything runs, one line
    assert "or pass --download" in err and "download=True" not in out + err
    assert not (tmp_path / "run").exists()  # nothing written


def test_optimize_with_missing_data_says_pass_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 28}
    run = tmp_path / "run"
    run.mkdir()
    payload = _payload(
        model=spec,
        state_dict=create_model(**spec).state_dict(),
        dataset={"name": "fashion_mnist", "info": {"image_size": 28}},
    )
    torch.save(payload, run / "checkpoint.pt")
    argv = ["optimize", "--checkpoint", str(run), "--recipe", "bf16"]
    code, _, err = run_cli([*argv, "--data-root", str(tmp_path / "data")], capsys)
    assert_one_line_error(code, err, "Fashion-MNIST", "or pass --download")
    assert "download=True" not in err
