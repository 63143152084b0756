"""What every executor is: the :class:`Executor` protocol, its callbacks, and the record of a
trial whose worker could not report one. The executors live in :mod:`.executors` (this process,
local worker processes), :mod:`.executor_ray` and :mod:`.executor_slurm`; this module imports
none of them, so each can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec

#: Told a trial is about to run; ``False`` means "do not run it" (another sweep holds it):
#: the executor skips it and reports nothing for it.
OnStart = Callable[[TrialSpec], "bool | None"]
OnDone = Callable[[TrialRecord], None]
#: Told each finished epoch of a running trial's own training: ``(spec, epoch record)``.
OnEpoch = Callable[[TrialSpec, "EpochRecord"], None]

if TYPE_CHECKING:
    from wattwise.train.loop import EpochRecord


class Executor(Protocol):
    """Runs trials and reports each one to the driver.

    Attributes:
        name: ``local``, ``local-gpus`` or ``ray``.
        slots: How many trials run at once.
    """

    name: str
    slots: int

    def run(
        self,
        specs: Sequence[TrialSpec],
        *,
        on_start: OnStart,
        on_done: OnDone,
        teacher_dir: str | Path | None = None,
        on_epoch: OnEpoch | None = None,
    ) -> None:
        """Runs every spec whose ``on_start`` does not return ``False``; returns when all are
        done. ``KeyboardInterrupt`` propagates (after
        the executor stopped its workers); trials in flight are not reported. ``on_epoch`` is
        told each training epoch of a running trial, where the executor can (see the module)."""
        ...

    def close(self) -> None:
        """Releases workers and caches."""
        ...


class Closing:
    """``with executor:`` closes it."""

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def failed_record(spec: TrialSpec, reason: str) -> TrialRecord:
    """The record of a trial whose worker could not report one."""
    return TrialRecord(
        trial_id=spec.trial_id,
        study=spec.study,
        spec=spec.to_dict(),
        status="failed",
        reason=reason,
    )
