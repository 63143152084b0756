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

from wattwise.energy.monitor import EnergyMonitor, MonitorConfig
from wattwise.errors import WattwiseError
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


class EnergyCallback(WindowsCallback, TrainerCallback):
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
            :class:`~wattwise.integrations._windows.FitWindows`).
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
        self.windows.begin_fit()
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
        measurement = self.windows.end_epoch()
        if measurement is not None:
            self._log(window_metrics(TRAIN_EPOCH, measurement), control)
        if control.should_evaluate:
            self.windows.begin_validation(self._epoch)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        measurement = self.windows.end_validation()
        if measurement is None:  # an evaluation outside train(): no window
            return
        figures = window_metrics(VALIDATION, measurement)
        if metrics is not None:
            metrics.update(figures)
        self._log(figures, control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.windows.cancel_validation()
        fit = self.windows.end_fit()
        self._log({**window_metrics(FIT, fit), PROVENANCE_KEY: provenance_text(fit)}, control)
        if self.print_table and state.is_world_process_zero:
            print_energy_table(self.windows)

    def _log(self, figures: dict[str, Any], control: Any) -> None:
        """One ``Trainer.log`` record; its ``on_log`` event clears ``control.should_log``, which
        is restored so that the Trainer's own log at this step still happens."""
        should_log = control.should_log
        self._trainer.log(dict(figures))
        control.should_log = should_log
