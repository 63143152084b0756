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

from wattwise.integrations._windows import (
    FIT,
    PROVENANCE_KEY,
    TRAIN_EPOCH,
    VALIDATION,
    WindowsCallback,
    print_energy_table,
    provenance_text,
    window_metrics,
)


class EnergyCallback(WindowsCallback, pl.Callback):
    """Measures every train epoch, validation and the whole fit; logs them through Lightning.

    Args:
        monitor: An EnergyMonitor to measure with (left open: close it yourself).
        config: Settings of the monitor the callback creates for each fit instead (closed when
            the fit ends or fails); default ``MonitorConfig()``.
        print_table: Print the table of every window when the fit ends (global rank 0 only).

    Attributes:
        epochs / validations / fit: The Measurements (see
            :class:`~wattwise.integrations._windows.FitWindows`).
    """

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.windows.begin_fit()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.windows.begin_epoch(trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        measurement = self.windows.end_epoch()
        if measurement is not None:
            pl_module.log_dict(window_metrics(TRAIN_EPOCH, measurement), on_epoch=True)

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.windows.begin_validation(trainer.current_epoch + 1)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        measurement = self.windows.end_validation()
        if measurement is not None:
            pl_module.log_dict(window_metrics(VALIDATION, measurement), on_epoch=True)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        fit = self.windows.end_fit()
        metrics = window_metrics(FIT, fit)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            logger.log_hyperparams({PROVENANCE_KEY: provenance_text(fit)})
        if self.print_table and trainer.is_global_zero:
            print_energy_table(self.windows)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.windows.abort()
