"""The data root: the folder under which every dataset and the decoded-dataset cache live."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the data root when no ``root`` argument is given.
DATA_ROOT_ENV = "WATTWISE_DATA"


def default_data_root() -> Path:
    """``~/.cache/wattwise/data``: the data root when neither argument nor variable names one."""
    return Path.home() / ".cache" / "wattwise" / "data"


def resolve_data_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else ``$WATTWISE_DATA``, else :func:`default_data_root`."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_root()
