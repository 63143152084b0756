"""Dataset registry: readers register under a name and are created by name with options.

A reader is a :class:`DatasetReader` subclass registered with :func:`register_dataset`::

    @register_dataset("cifar10")
    class Cifar10Reader(DatasetReader):
        folder = "cifar-10-batches-py"
        ...

Names may carry a variant after a colon (``medmnist:pathmnist``); the part before the colon
selects the reader, the part after is passed to it as ``variant``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from wattwise.errors import ConfigError, DatasetError

from .types import RawDataset

_R = TypeVar("_R", bound=type["DatasetReader"])


class DatasetReader:
    """Base class of dataset readers: how to find, download and decode one dataset.

    Class attributes set by subclasses:
        name: Registry name (set by :func:`register_dataset`).
        folder: Folder under the data root that holds the files as published; ``None`` for
            datasets that need no files (embedded or generated).
        cacheable: Whether decoded tensors are worth caching on disk. A cacheable reader's output
            must depend only on its files, ``image_size`` and its options (never on ``seed``).
        native_size: Image side in pixels as published (``None``: the reader decides).
        variants: Allowed variants (``medmnist:<subset>``); empty for names without a variant.
        option_defaults: Reader-specific options and their defaults; anything else passed to
            :func:`wattwise.data.load_dataset` is refused.
        summary: One line for listings and errors.
    """

    name: ClassVar[str] = ""
    folder: ClassVar[str | None] = None
    cacheable: ClassVar[bool] = True
    native_size: ClassVar[int | None] = None
    variants: ClassVar[tuple[str, ...]] = ()
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    summary: ClassVar[str] = ""

    def __init__(self, variant: str | None = None, **options: Any) -> None:
        self.variant = self.check_variant(variant)
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(sorted(self.option_defaults)) or "none"
            raise ConfigError(
                f"dataset {self.full_name!r} has no option(s) {', '.join(unknown)}; "
                f"its options are: {known}"
            )
        merged = dict(self.option_defaults)
        for key, value in options.items():
            default = merged[key]
            if default is not None and not _same_kind(value, default):
                raise ConfigError(
                    f"option {key}={value!r} of dataset {self.full_name!r} must be "
                    f"{type(default).__name__}"
                )
            merged[key] = value
        self.options: dict[str, Any] = merged
        self.validate_options()

    # -- hooks for subclasses -------------------------------------------------------------

    @classmethod
    def check_variant(cls, variant: str | None) -> str | None:
        """Validates the part of the name after the colon; returns it normalized."""
        if variant is not None:
            raise DatasetError(f"dataset {cls.name!r} takes no ':<variant>' (got {variant!r})")
        return None

    def validate_options(self) -> None:
        """Checks option values; raises :class:`ConfigError`. Types are already checked."""

    def locate(self, root: Path) -> Path:
        """The dataset's folder under the data root ``root`` (default ``root / folder``)."""
        if self.folder is None:
            raise ValueError(f"dataset {self.full_name!r} has no folder")
        return root / self.folder

    def source_files(self, folder: Path, image_size: int | None) -> list[Path]:
        """The files that :meth:`read` decodes; raises :class:`DatasetError` if any is missing.

        Their sizes and modification times key the disk cache.
        """
        return []

    def download(self, folder: Path, image_size: int | None) -> None:
        """Fetches the published files into ``folder`` and verifies their checksums."""
        raise DatasetError(f"dataset {self.full_name!r} cannot be downloaded automatically")

    def read(self, folder: Path | None, *, image_size: int | None, seed: int) -> RawDataset:
        """Decodes the dataset into uint8 tensors (at ``image_size`` if the reader resizes)."""
        raise NotImplementedError

    def cache_options(self) -> dict[str, Any]:
        """Options that change decoded content, for the cache key (all but ``verify``)."""
        return {k: v for k, v in self.options.items() if k != "verify"}

    # -- derived ----------------------------------------------------------------------------

    @property
    def full_name(self) -> str:
        """Registry name including the variant, e.g. ``medmnist:pathmnist``."""
        return f"{self.name}:{self.variant}" if self.variant else self.name

    @classmethod
    def listed_names(cls) -> list[str]:
        """Names this reader answers to in :func:`wattwise.data.list_datasets`."""
        if cls.variants:
            return [f"{cls.name}:{v}" for v in cls.variants]
        return [cls.name]


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


class DatasetRegistry:
    """Maps dataset names to reader classes; an object, so tests can build their own."""

    def __init__(self) -> None:
        self._readers: dict[str, type[DatasetReader]] = {}

    def register(self, name: str, reader: type[DatasetReader]) -> type[DatasetReader]:
        """Adds ``reader`` under ``name``; a duplicate name is a :class:`ValueError`."""
        key = name.strip().lower()
        if not key or ":" in key:
            raise ValueError(f"invalid dataset name {name!r}")
        if key in self._readers:
            raise ValueError(f"dataset {key!r} is already registered")
        reader.name = key
        self._readers[key] = reader
        return reader

    def names(self, pattern: str | None = None) -> list[str]:
        """All loadable names (variants expanded), sorted; filtered by a glob ``pattern``."""
        names = sorted(n for cls in self._readers.values() for n in cls.listed_names())
        if pattern is not None:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern.lower())]
        return names

    def reader_class(self, name: str) -> tuple[type[DatasetReader], str | None]:
        """Splits ``name`` into its reader class and variant; unknown names raise."""
        base, _, variant = name.strip().lower().partition(":")
        cls = self._readers.get(base)
        if cls is None:
            raise DatasetError(
                f"unknown dataset {name!r}; known datasets: {', '.join(self._short_names())}"
            )
        return cls, variant or None

    def create(self, name: str, **options: Any) -> DatasetReader:
        """Builds the reader for ``name`` with validated ``options``."""
        cls, variant = self.reader_class(name)
        return cls(variant, **options)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower().partition(":")[0] in self._readers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._readers))

    def _short_names(self) -> list[str]:
        return sorted(
            f"{key}:<{'|'.join(cls.variants)}>" if cls.variants else key
            for key, cls in self._readers.items()
        )


#: The registry that :func:`wattwise.data.load_dataset` uses.
DATASETS = DatasetRegistry()


def register_dataset(name: str, *, registry: DatasetRegistry | None = None) -> Callable[[_R], _R]:
    """Class decorator: registers a :class:`DatasetReader` subclass under ``name``.

    Args:
        name: Registry name (lower case, no colon).
        registry: Registry to add to; defaults to :data:`DATASETS`.
    """

    def decorator(cls: _R) -> _R:
        (registry or DATASETS).register(name, cls)
        return cls

    return decorator
