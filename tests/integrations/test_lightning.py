"""EnergyCallback for PyTorch Lightning: every epoch, validation and fit is a window whose
figures reach the trainer's loggers, stay on the callback, and are closed when training fails.

A two-epoch fit of a 5-parameter model on random tensors, on CPU, with the CPU and DRAM estimates
(so the provenance is known on every host) and a logger that keeps what it receives.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.loggers import Logger  # noqa: E402

from wattwise.energy.monitor import EnergyMonitor, MonitorConfig  # noqa: E402
from wattwise.integrations.lightning import EnergyCallback  # noqa: E402

ESTIMATES = MonitorConfig(meters=("cpu-estimate", "dram-estimate"), sample_hz=20)
EPOCHS = 2


class Tiny(pl.LightningModule):
    """Linear regression on 4 inputs; ``fail_at_epoch`` raises in that epoch's first step."""

    def __init__(self, fail_at_epoch: int | None = None):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.fail_at_epoch = fail_at_epoch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.fail_at_epoch:
            raise RuntimeError("boom")
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Captured(Logger):
    """A logger that keeps every ``log_metrics`` call and the hyperparameters."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.params: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return "captured"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.params.update(dict(params) if not isinstance(params, dict) else params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def values(self, key: str) -> list[float]:
        return [m[key] for m, _ in self.metrics if key in m]


def _loader(seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)


def _fit(callback: EnergyCallback, module: Tiny, tmp_path: Any) -> Captured:
    logger = Captured()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[callback],
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
    )
    trainer.fit(module, _loader(0), _loader(1))
    return logger


def test_every_epoch_validation_and_the_fit_reach_the_loggers(tmp_path, capsys):
    callback = EnergyCallback(config=ESTIMATES)
    logger = _fit(callback, Tiny(), tmp_path)

    train_j = logger.values("energy/train_epoch_j")
    val_j = logger.values("energy/validation_j")
    assert len(train_j) == EPOCHS and all(j > 0 for j in train_j)
    assert len(val_j) == EPOCHS and all(j > 0 for j in val_j)  # the sanity check is no window
    for key in ("duration_s", "mean_power_w", "peak_rss_bytes"):
        assert all(v > 0 for v in logger.values(f"energy/train_epoch_{key}"))
    assert logger.values("energy/train_epoch_measured_share") == [0.0] * EPOCHS
    assert logger.values("energy/fit_j") == [pytest.approx(callback.fit.total_energy_j)]
    assert "estimated:tdp" in logger.params["energy/provenance"]

    # The same figures, as Measurements, on the callback.
    assert [m.name for m in callback.epochs] == ["train/epoch1", "train/epoch2"]
    assert [m.name for m in callback.validations] == ["validation/epoch1", "validation/epoch2"]
    assert [m.total_energy_j for m in callback.epochs] == pytest.approx(train_j)
    assert callback.fit is not None and callback.fit.total_provenance == "estimated"
    assert callback.epochs[0].component("cpu").provenance.label == "estimated:tdp"

    # Training and validation are apart: each epoch's validation lies outside its training.
    for train, val in zip(callback.epochs, callback.validations, strict=True):
        assert val.start_unix_s >= train.start_unix_s
        assert train.duration_s + val.duration_s <= callback.fit.duration_s
    windows = [*callback.epochs, *callback.validations]
    assert callback.fit.duration_s >= sum(m.duration_s for m in windows)
    assert callback.fit.total_energy_j >= sum(m.total_energy_j for m in callback.epochs)

    out = capsys.readouterr().out
    table = out[out.index("energy per window") :]  # the Trainer prints its logs before it
    assert "train/epoch2" in table and "validation/epoch1" in table and "fit" in table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_a_monitor_passed_in_is_used_and_left_open(tmp_path):
    with EnergyMonitor(ESTIMATES) as monitor:
        callback = EnergyCallback(monitor=monitor, print_table=False)
        _fit(callback, Tiny(), tmp_path)
        names = [m.name for m in monitor.history]
        assert names.count("fit") == 1 and "train/epoch2" in names
        with monitor.window("after") as w:  # still usable
            pass
        assert w.measurement is not None


def test_windows_are_closed_when_training_raises(tmp_path):
    with EnergyMonitor(ESTIMATES) as monitor:
        callback = EnergyCallback(monitor=monitor, print_table=False)
        with pytest.raises(RuntimeError, match="boom"):
            _fit(callback, Tiny(fail_at_epoch=1), tmp_path)
        for name in ("fit", "train/epoch2", "validation/epoch2"):
            assert monitor.progress(name) is None
            monitor.begin_window(name)  # not open any more: no ValueError
            monitor.end_window(name)
        assert [m.name for m in callback.epochs] == ["train/epoch1", "train/epoch2"]
        assert callback.fit is not None  # what the fit cost until it failed


def test_monitor_and_settings_are_exclusive():
    with EnergyMonitor(ESTIMATES) as monitor, pytest.raises(ValueError, match="EnergyMonitor"):
        EnergyCallback(monitor=monitor, config=ESTIMATES)


def _samplers_alive() -> int:
    return sum(t.name == "wattwise-sampler" and t.is_alive() for t in threading.enumerate())


def test_its_own_monitor_is_closed_when_training_raises(tmp_path):
    before = _samplers_alive()
    callback = EnergyCallback(config=ESTIMATES, print_table=False)
    with pytest.raises(RuntimeError, match="boom"):
        _fit(callback, Tiny(fail_at_epoch=0), tmp_path)
    assert _samplers_alive() == before
    assert callback.fit is not None and callback.epochs[0].name == "train/epoch1"
