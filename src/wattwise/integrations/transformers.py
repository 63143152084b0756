"""Energy of a Hugging Face ``Trainer.train``: a TrainerCallback that opens wattwise windows.

    from wattwise.integrations.transformers import EnergyCallback

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
    with EnergyCallback().attach(trainer) as energy:  # or EnergyCallback(monitor=...)
        trainer.train()
    energy.epochs[0].total_energy_j, energy.fit.total_provenance

Windows: ``fit`` (``on_train_begin`` to ``on_train_end``), ``train/epoch{N}`` (the epoch's
training; an evaluation inside the epoch pauses it) and ``validation/epoch{N}`` (each evaluation
during training): see :mod:`wattwise.integrations._windows`. The Trainer has no event before an
evaluation, but it decides one in ``control.should_evaluate`` (set by its DefaultFlowCallback,
which runs before every other callback) at the ``on_step_end`` or ``on_epoch_end`` that precedes
it: the validation window opens there and closes at ``on_evaluate``. A ``trainer.evaluate()``
called outside ``train()`` is therefore not measured.

Why ``attach(trainer)``: the figures go through ``Trainer.log``, so that they reach every
reporter (``report_to``: TensorBoard, MLflow, W&B...), the console and ``state.log_history``.
Adding them to ``logs`` in ``on_log`` would not do: the Trainer puts the reporters of
``report_to`` before the callbacks you pass, so they would have read ``logs`` already. The
evaluation figures are also added to the metrics that ``on_evaluate`` hands to the callbacks
after this one (and that ``Trainer.evaluate`` returns). The Trainer has no exception event
either: ``with ... attach(trainer)`` (or :meth:`EnergyCallback.close`) closes the windows when
training raises.

Under ``torchrun`` (DDP, or any run over ``torch.distributed``: the Trainer calls every callback
on every process) each rank measures its own process tree; at the end of each window (the
``on_epoch_end``, ``on_evaluate`` during training and ``on_train_end`` that every rank reaches
alike) the ranks exchange their Measurements in one ``all_gather_object`` and every rank logs the
*whole job's* figures, merged as :mod:`wattwise.integrations._ranks` says: energy summed (each
process and each machine's device counted once), time the longest rank's. The reporters of
``report_to`` write them once (they report on the main process only); ``state.log_history`` and
the evaluation metrics hold them on every rank, so that callbacks such as EarlyStopping decide
alike. ``epochs``, ``validations`` and ``fit`` then hold the job's Measurements, ``rank`` this
process's own; world process zero prints the table. ``energy/processes`` (in the training's
last record) says how many processes the figures cover.

``pip install 'wattwise[transformers]'`` (the Trainer also needs ``accelerate``).
"""

from __future__ import annotations

from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "wattwise.integrations.transformers needs transformers and accelerate: "
        "pip install 'wattwise[transformers]'"
    ) from err

import torch

from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.errors import WattwiseError
from wattwise.integrations._ranks import RanksCallback
from wattwise.integrations._windows import (
    FIT,
    PROCESSES_KEY,
    PROVENANCE_KEY,
    TRAIN_EPOCH,
    VALIDATION,
    WindowRecord,
    provenance_text,
    window_metrics,
)


class EnergyCallback(RanksCallback, TrainerCallback):
    """Measures every train epoch, evaluation and the whole training; logs them through the
    Trainer.

    Args:
        monitor: An EnergyMonitor to measure with (left open: close it yourself).
        config: Settings of the monitor the callback creates for each training instead (closed
            when it ends or fails); default ``MonitorConfig()``.
        print_table: Print the table of every window when training ends (world process zero
            only).

    Attributes:
        epochs / validations / fit: The Measurements (see
            :class:`~wattwise.integrations._windows.FitWindows`); under DDP the whole job's.
        job: The whole job's Measurements, window by window (one process: its own).
    """

    def __init__(
        self,
        monitor: EnergyMonitor | None = None,
        config: MonitorConfig | None = None,
        *,
        print_table: bool = True,
    ):
        super().__init__(monitor, config, print_table=print_table)
        self._trainer: Any = None
        self._epoch = 0
        self._training = False  # inside train(): every rank's evaluations are in it alike

    def attach(self, trainer: Any) -> EnergyCallback:
        """Add this callback to ``trainer`` (once) and log through it; returns the callback."""
        self._trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def __enter__(self) -> EnergyCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Trainer events -------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._trainer is None:
            raise WattwiseError(
                "EnergyCallback logs through its Trainer: add it with "
                "EnergyCallback(...).attach(trainer) instead of callbacks=[...]"
            )
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self._world_size = torch.distributed.get_world_size() if distributed else 1
        self._rank_index = torch.distributed.get_rank() if distributed else 0
        self._ranks_here = 1
        self.job = WindowRecord()
        self.windows.begin_fit()
        self._training = True
        self._epoch = 0
        if getattr(args, "eval_on_start", False):  # transformers >= 4.41
            self.windows.begin_validation(0)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch = int(state.epoch or 0) + 1
        self.windows.begin_epoch(self._epoch)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.windows.cancel_validation()  # announced, but another callback called it off

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_evaluate:
            self.windows.begin_validation(self._epoch)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.windows.cancel_validation()
        tree = self._tree_pids()
        measurement = self._merge(self.windows.end_epoch(), tree)
        if measurement is not None:
            self.job.epochs.append(measurement)
            self._log(window_metrics(TRAIN_EPOCH, measurement), control)
        if control.should_evaluate:
            self.windows.begin_validation(self._epoch)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        if not self._training:  # an evaluation outside train(): no window on any rank
            return
        tree = self._tree_pids()
        measurement = self._merge(self.windows.end_validation(), tree)
        if measurement is None:  # one that no rank announced: no window
            return
        self.job.validations.append(measurement)
        figures = window_metrics(VALIDATION, measurement)
        if metrics is not None:
            metrics.update(figures)
        self._log(figures, control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.windows.cancel_validation()
        self._training = False
        tree = self._tree_pids()
        fit = self._merge(self.windows.end_fit(), tree)
        assert fit is not None  # every rank ended its training
        self.job.fit = fit
        figures = {**window_metrics(FIT, fit), PROVENANCE_KEY: provenance_text(fit)}
        self._log({**figures, PROCESSES_KEY: self._world_size}, control)
        if self.print_table and state.is_world_process_zero:
            self._print_table()

    def close(self) -> None:
        """Close every window still open, without an exchange (the other ranks may be gone)."""
        self._training = False
        super().close()

    def _log(self, figures: dict[str, Any], control: Any) -> None:
        """One ``Trainer.log`` record; its ``on_log`` event clears ``control.should_log``, which
        is restored so that the Trainer's own log at this step still happens."""
        should_log = control.should_log
        self._trainer.log(dict(figures))
        control.should_log = should_log
