"""Third-party noise goes to ``third_party.log`` in the command's folder: the terminal keeps
wattwise's own lines (its errors included) and one line saying where the rest went."""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from wattwise.cli import main
from wattwise.errors import ConfigError
from wattwise.logs import THIRD_PARTY_LOG, route_third_party

#: A library outside wattwise: a UserWarning raised in its code and a torch logger warning.
NOISY_LIBRARY = """
import logging
import warnings


def make_noise():
    warnings.warn("To copy construct from a tensor, use sourceTensor.detach()", UserWarning)
    logging.getLogger("torch.utils._pytree").warning(
        "<enum 'KernelPreference'> is an Enum subclass and is now natively supported"
    )
"""


@pytest.fixture
def make_noise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The noisy library's ``make_noise``, imported from a folder outside the package."""
    lib = tmp_path / "lib" / "noisylib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text(NOISY_LIBRARY)
    monkeypatch.syspath_prepend(str(lib.parent))
    monkeypatch.delitem(sys.modules, "noisylib", raising=False)
    return importlib.import_module("noisylib").make_noise


def _noisy_training(monkeypatch: pytest.MonkeyPatch, make_noise: Any, error: str | None) -> None:
    """``train_and_save`` makes the library's noise first, then trains or fails with ``error``."""
    import wattwise.experiment.runner as runner

    real = runner.train_and_save

    def noisy(*args: Any, **kwargs: Any) -> Any:
        make_noise()
        if error is not None:
            raise ConfigError(error)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_and_save", noisy)


def _train(out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    argv = ["train", "--epochs", "1", "--inference-s", "0", "--num-threads", "1"]
    try:
        code = main([*argv, "--out", str(out), *extra])
    except SystemExit as exc:  # a bad flag: argparse exits
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def test_train_sends_third_party_warnings_to_the_run_folder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make_noise: Any,
) -> None:
    _noisy_training(monkeypatch, make_noise, error=None)
    out = tmp_path / "run"
    code, err = _train(out, capsys)
    assert code == 0, err
    log = (out / THIRD_PARTY_LOG).read_text()
    assert "To copy construct from a tensor" in log and "UserWarning" in log
    assert "torch.utils._pytree" in log and "is an Enum subclass" in log
    assert "copy construct" not in err and "Enum subclass" not in err
    lines = log.count("\n")
    assert err.strip().splitlines() == [
        f"third-party warnings: {lines} line(s) in {out / THIRD_PARTY_LOG}"
    ]


def test_wattwise_errors_stay_on_the_terminal(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make_noise: Any,
) -> None:
    _noisy_training(monkeypatch, make_noise, error="the data is gone")
    out = tmp_path / "run"
    code, err = _train(out, capsys)
    assert code == 2
    assert "wattwise: error: the data is gone" in err
    assert f"third-party warnings: 3 line(s) in {out / THIRD_PARTY_LOG}" in err
    assert "Enum subclass" not in err
    code, err = _train(tmp_path / "other", capsys, "--lr", "-1")
    assert code == 2 and "--lr must be a positive number" in err
    assert "third-party" not in err and not (tmp_path / "other").exists()


def test_routing_restores_loggers_and_warnings_afterwards(tmp_path: Path) -> None:
    torch_logger = logging.getLogger("torch")
    before = list(torch_logger.handlers)
    show = warnings.showwarning
    added = logging.NullHandler()
    with route_third_party(tmp_path / THIRD_PARTY_LOG) as log:
        torch_logger.addHandler(added)  # as a library that configures itself when imported
        logging.getLogger("optuna.samplers").warning("The parameter 'x' is sampled independently")
        logging.getLogger("wattwise.data").warning("wattwise's own line")
    assert torch_logger.handlers == [*before, added]
    torch_logger.removeHandler(added)
    assert warnings.showwarning is show
    text = log.path.read_text()
    assert "sampled independently" in text and "wattwise's own line" not in text
    assert log.lines == 1


def test_an_unwritable_log_sends_the_lines_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # ray.init(logging_level=...) in an earlier test leaves the "ray" logger's level raised
    monkeypatch.setattr(logging.getLogger("ray"), "level", logging.NOTSET)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with route_third_party(blocker / THIRD_PARTY_LOG) as log:
        logging.getLogger("ray").warning("Started a local Ray instance")
    assert log.lines == 0
    assert "Started a local Ray instance" in capsys.readouterr().err
