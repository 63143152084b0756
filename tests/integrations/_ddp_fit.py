"""A two-process DDP fit on CPU with the EnergyCallback, run as a script by test_lightning_ddp.

    python tests/integrations/_ddp_fit.py OUT_DIR

Lightning's ``ddp`` strategy starts rank 1 by running this script again; each rank writes
``OUT_DIR/rank{N}.json``: what its loggers received, its ``callback_metrics``, its own windows
as measured (``callback.windows``) and what the callback holds after the fit.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from wattwise.energy.monitor import MonitorConfig
from wattwise.files import write_json_atomic
from wattwise.integrations.lightning import EnergyCallback

EPOCHS = 2


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Captured(Logger):
    """Keeps every ``log_metrics`` call and the hyperparameters (on every rank: no
    ``rank_zero_only``, so that the test sees what each rank would have written)."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict[str, float]] = []
        self.params: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return "captured"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.params.update(dict(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append({k: float(v) for k, v in metrics.items()})


def _loader(seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)


def _summary(m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "name": m.name,
        "energy_j": m.total_energy_j,
        "duration_s": m.duration_s,
        "peak_rss_bytes": m.peak_rss_bytes,
        "provenance": {c.component: c.provenance.to_dict() for c in m.components},
    }


def main(out: Path) -> None:
    torch.set_num_threads(1)
    logger = Captured()
    energy = EnergyCallback(
        config=MonitorConfig(meters=("cpu-estimate", "dram-estimate"), sample_hz=20)
    )
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=60)),
        logger=logger,
        callbacks=[energy],
        default_root_dir=out,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
    )
    trainer.fit(Tiny(), _loader(0), _loader(1))
    rank = trainer.global_rank
    own = energy.windows
    result = {
        "rank": rank,
        "world_size": trainer.world_size,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "logged": logger.metrics,
        "params": logger.params,
        "callback_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "own": {
            "epochs": [_summary(m) for m in own.epochs],
            "validations": [_summary(m) for m in own.validations],
            "fit": _summary(own.fit),
        },
        "callback": {
            "epochs": [_summary(m) for m in energy.epochs],
            "validations": [_summary(m) for m in energy.validations],
            "fit": _summary(energy.fit),
        },
    }
    write_json_atomic(out / f"rank{rank}.json", result)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
