"""A two-process Hugging Face ``Trainer.train`` on CPU (gloo) with the EnergyCallback, run by
test_transformers_ddp under ``torch.distributed.run``:

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/integrations/_ddp_train.py OUT_DIR

Each rank writes ``OUT_DIR/rank{N}.json``: the energy records of its ``state.log_history`` (what
``Trainer.log`` received on that rank), the evaluation metrics a callback after the energy one
saw, its own windows as measured (``callback.windows``) and what the callback holds after
training.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from wattwise.energy.monitor import MonitorConfig
from wattwise.files import write_json_atomic
from wattwise.integrations.transformers import EnergyCallback

EPOCHS = 2


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.layer(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, seed: int, n: int = 64):
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.x[i].sum(0, keepdim=True)}


class EvalMetrics(TrainerCallback):
    """Keeps the metrics of every ``on_evaluate`` (added after the energy callback)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, float]] = []

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seen.append({k: v for k, v in kwargs["metrics"].items() if k.startswith("energy/")})


def _summary(m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "name": m.name,
        "energy_j": m.total_energy_j,
        "duration_s": m.duration_s,
        "peak_rss_bytes": m.peak_rss_bytes,
        "shared": [c.provenance.shared for c in m.components],
    }


def _record(r: Any) -> dict[str, Any]:
    return {
        "epochs": [_summary(m) for m in r.epochs],
        "validations": [_summary(m) for m in r.validations],
        "fit": _summary(r.fit),
    }


def main(out: Path) -> None:
    torch.set_num_threads(1)
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo",
        ddp_timeout=60,
        disable_tqdm=True,
        dataloader_num_workers=0,
        learning_rate=0.01,
    )
    trainer = Trainer(model=Tiny(), args=args, train_dataset=Pairs(0), eval_dataset=Pairs(1))
    evals = EvalMetrics()
    energy = EnergyCallback(
        config=MonitorConfig(meters=("cpu-estimate", "dram-estimate"), sample_hz=20)
    )
    with energy.attach(trainer):
        trainer.add_callback(evals)
        trainer.train()
    rank = args.process_index
    result = {
        "rank": rank,
        "world_size": args.world_size,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "logged": [
            {k: v for k, v in log.items() if k.startswith("energy/")}
            for log in trainer.state.log_history
            if any(k.startswith("energy/") for k in log)
        ],
        "evaluate_metrics": evals.seen,
        "own": _record(energy.windows),
        "rank_record": _record(energy.rank),
        "callback": _record(energy),
    }
    write_json_atomic(out / f"rank{rank}.json", result)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
