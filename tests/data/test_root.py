"""The data root: argument, then ``$WATTWISE_DATA``, then ``~/.cache/wattwise/data``."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.data import load_dataset, resolve_data_root
from wattwise.errors import DatasetError


def test_data_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "wattwise" / "data"
    monkeypatch.setenv("WATTWISE_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root("~/x") == tmp_path / "home" / "x"


def test_env_var_is_used_for_loading(
    tmp_path: Path, write_cifar, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cifar(tmp_path / "env-root")
    monkeypatch.setenv("WATTWISE_DATA", str(tmp_path / "env-root"))
    splits = load_dataset("cifar10")
    assert len(splits.test) == 30
    assert str(tmp_path / "env-root") in splits.info.source
    assert (tmp_path / "env-root" / ".wattwise-cache").is_dir()
    with pytest.raises(DatasetError, match=str(tmp_path / "elsewhere")):
        load_dataset("cifar10", tmp_path / "elsewhere")  # the argument wins over the variable
