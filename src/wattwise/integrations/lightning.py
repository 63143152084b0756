"""Energy of a PyTorch Lightning fit: a Callback that opens wattwise windows at Lightning's hooks.

    from wattwise.integrations.lightning import EnergyCallback

    energy = EnergyCallback()                 # or EnergyCallback(monitor=...), (config=...)
    trainer = Trainer(max_epochs=5, callbacks=[energy])
    trainer.fit(model, train_loader, val_loader)
    energy.epochs[0].total_energy_j, energy.fit.total_provenance

Windows: ``fit`` (``on_fit_start`` to ``on_fit_end``), ``train/epoch{N}`` (the epoch's
training; a validation inside the epoch pauses it) and ``validation/epoch{N}`` (each validation
loop; the sanity check is not one): see :mod:`wattwise.integrations._windows`. The figures of
each epoch and validation go through ``pl_module.log_dict`` at the end of the epoch (so they also
reach ``trainer.callback_metrics``, where ModelCheckpoint or EarlyStopping can read them); the
fit's go to every logger's ``log_metrics`` when the fit ends, with the provenance of each
component as the hyperparameter ``energy/provenance``. ``on_exception`` closes every window.

Under DDP (any strategy over ``torch.distributed``, e.g. ``strategy="ddp"`` or ``"ddp_spawn"``)
every rank measures its own process tree; at the end of each window the ranks exchange their
Measurements (one ``all_gather_object``, on every rank at the same hook) and every rank logs the
*whole job's* figures, merged as :mod:`wattwise.integrations._ranks` says: energy summed (each
process and each machine's device counted once), time the longest rank's. ``epochs``,
``validations`` and ``fit`` then hold the job's Measurements, ``rank`` this process's own; rank 0
prints the table. ``energy/processes`` (a hyperparameter) says how many processes the figures
cover.

Lightning is imported from ``lightning.pytorch``, else from ``pytorch_lightning``
(``pip install 'wattwise[lightning]'``).
"""

from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the older package name
    try:
        import pytorch_lightning as pl
    except ImportError as err:
        raise ImportError(
            "wattwise.integrations.lightning needs PyTorch Lightning: "
            "pip install 'wattwise[lightning]'"
        ) from err

import torch

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


class EnergyCallback(RanksCallback, pl.Callback):
    """Measures every train epoch, validation and the whole fit; logs them through Lightning.

    Args:
        monitor: An EnergyMonitor to measure with (left open: close it yourself).
        config: Settings of the monitor the callback creates for each fit instead (closed when
            the fit ends or fails); default ``MonitorConfig()``.
        print_table: Print the table of every window when the fit ends (global rank 0 only).

    Attributes:
        epochs / validations / fit: The Measurements (see
            :class:`~wattwise.integrations._windows.FitWindows`); under DDP the whole job's.
        job: The whole job's Measurements, window by window (one process: its own).
    """

    # --- Lightning hooks ------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # After the strategy set up the process group, before any window: fit and validate.
        self._world_size = trainer.world_size if _distributed(trainer) else 1
        self._rank_index = trainer.global_rank
        self._ranks_here = trainer.num_devices if self._world_size > 1 else 1

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.job = WindowRecord()
        self.windows.begin_fit()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.windows.begin_epoch(trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        tree = self._tree_pids()
        job = self._merge(self.windows.end_epoch(), tree)
        if job is not None:
            self.job.epochs.append(job)
            self._log(pl_module, window_metrics(TRAIN_EPOCH, job))

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.windows.begin_validation(trainer.current_epoch + 1)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:  # the same on every rank: none of them exchanges
            return
        tree = self._tree_pids()
        job = self._merge(self.windows.end_validation(), tree)
        if job is not None:
            self.job.validations.append(job)
            self._log(pl_module, window_metrics(VALIDATION, job))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        tree = self._tree_pids()
        fit = self._merge(self.windows.end_fit(), tree)
        assert fit is not None  # every rank ended its fit
        self.job.fit = fit
        metrics = window_metrics(FIT, fit)
        params = {PROVENANCE_KEY: provenance_text(fit), PROCESSES_KEY: self._world_size}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            logger.log_hyperparams(params)
        if self.print_table and trainer.is_global_zero:
            self._print_table()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.windows.abort()  # no exchange: the other ranks may be gone or stuck

    def _log(self, pl_module: Any, metrics: dict[str, float]) -> None:
        # The figures are the job's and alike on every rank: ``sync_dist`` (a mean of equal
        # values) only spares the user Lightning's warning about unsynchronized epoch metrics.
        pl_module.log_dict(metrics, on_epoch=True, sync_dist=self._world_size > 1)


def _distributed(trainer: Any) -> bool:
    return (
        trainer.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )
