"""The one exception family for problems a user can fix.

The CLI turns every :class:`WattwiseError` into one clear line on stderr and exit code 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class WattwiseError(Exception):
    """Base class for errors a user can fix (bad input, missing hardware asked for by name...)."""


class ConfigError(WattwiseError, ValueError):
    """An option, flag or configuration value is invalid."""


class MeterError(WattwiseError):
    """A meter that was asked for by name cannot measure."""


class MeterPermissionError(MeterError, PermissionError):
    """A meter's counters exist but cannot be read by this user."""


class DatasetError(WattwiseError):
    """A dataset is unknown, missing or corrupt."""


class ModelError(WattwiseError):
    """A model is unknown or cannot be built or loaded."""


class QuantizationError(WattwiseError):
    """A quantization path is unavailable for this model or environment (the message says why)."""


class PruningError(WattwiseError):
    """A pruned model cannot be pruned, saved or loaded as asked (the message says why)."""


class TechniqueError(WattwiseError):
    """A technique step could not do what it was asked: its fine-tuning diverged or did not fit
    in memory (the message says which step and why)."""
