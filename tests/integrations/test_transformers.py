"""EnergyCallback for Hugging Face Transformers: every train epoch, evaluation and the whole
training is a window whose figures go through ``Trainer.log`` (so every reporter, before or after
the callback, receives them), stay on the callback, and are closed when training fails.

A two-epoch training of a 5-parameter torch module (its forward returns a dict with ``loss``) on
random tensors, on CPU, with the CPU and DRAM estimates; nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from wattwise.energy.monitor import EnergyMonitor, MonitorConfig  # noqa: E402
from wattwise.errors import WattwiseError  # noqa: E402
from wattwise.integrations.transformers import EnergyCallback  # noqa: E402

ESTIMATES = MonitorConfig(meters=("cpu-estimate", "dram-estimate"), sample_hz=20)
EPOCHS = 2


class Tiny(nn.Module):
    """Linear regression; ``fail_at_step`` raises at that training step."""

    def __init__(self, fail_at_step: int | None = None):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.fail_at_step = fail_at_step
        self.steps = 0

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            self.steps += 1
            if self.steps == self.fail_at_step:
                raise RuntimeError("boom")
        out = self.layer(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, seed: int, n: int = 64):
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.x[i].sum(0, keepdim=True)}


class Recorder(TrainerCallback):
    """Keeps every ``logs`` dict, as a reporter (TensorBoard, MLflow...) receives it."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        self.logs.append(dict(logs or {}))

    def values(self, key: str) -> list[Any]:
        return [log[key] for log in self.logs if key in log]


def _trainer(tmp_path: Any, model: Tiny, recorder: Recorder, **args: Any) -> Trainer:
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path),
        "num_train_epochs": EPOCHS,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 16,
        "eval_strategy": "epoch",
        "logging_strategy": "epoch",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "learning_rate": 0.01,
        **args,
    }
    return Trainer(
        model=model,
        args=TrainingArguments(**settings),
        train_dataset=Pairs(0),
        eval_dataset=Pairs(1),
        callbacks=[recorder],  # before the energy callback, like report_to's reporters
    )


def test_every_epoch_evaluation_and_the_training_reach_the_reporters(tmp_path, capsys):
    recorder = Recorder()
    trainer = _trainer(tmp_path, Tiny(), recorder)
    with EnergyCallback(config=ESTIMATES).attach(trainer) as energy:
        trainer.train()

    train_j = recorder.values("energy/train_epoch_j")
    val_j = recorder.values("energy/validation_j")
    assert len(train_j) == EPOCHS and all(j > 0 for j in train_j)
    assert len(val_j) == EPOCHS and all(j > 0 for j in val_j)
    for key in ("duration_s", "mean_power_w", "peak_rss_bytes"):
        assert all(v > 0 for v in recorder.values(f"energy/train_epoch_{key}"))
    assert recorder.values("energy/train_epoch_measured_share") == [0.0] * EPOCHS
    assert recorder.values("energy/fit_j") == [pytest.approx(energy.fit.total_energy_j)]
    assert "estimated:tdp" in recorder.values("energy/provenance")[0]
    assert recorder.values("loss")  # the Trainer's own epoch logs still happen
    history = [log for log in trainer.state.log_history if "energy/train_epoch_j" in log]
    assert [log["energy/train_epoch_j"] for log in history] == pytest.approx(train_j)

    assert [m.name for m in energy.epochs] == ["train/epoch1", "train/epoch2"]
    assert [m.name for m in energy.validations] == ["validation/epoch1", "validation/epoch2"]
    assert energy.fit is not None and energy.fit.total_provenance == "estimated"
    assert energy.fit.duration_s >= sum(m.duration_s for m in [*energy.epochs, *energy.validations])
    assert energy.fit.total_energy_j >= sum(m.total_energy_j for m in energy.epochs)
    for train, val in zip(energy.epochs, energy.validations, strict=True):
        assert val.start_unix_s >= train.start_unix_s

    out = capsys.readouterr().out
    table = out[out.index("energy per window") :]  # the Trainer prints its logs before it
    assert "train/epoch2" in table and "validation/epoch2" in table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_step_evaluations_pause_the_epoch(tmp_path):
    recorder = Recorder()
    trainer = _trainer(tmp_path, Tiny(), recorder, eval_strategy="steps", eval_steps=2)
    with EnergyCallback(config=ESTIMATES, print_table=False).attach(trainer) as energy:
        trainer.train()
    assert len(energy.epochs) == EPOCHS
    assert [m.name for m in energy.validations][:3] == [
        "validation/epoch1",
        "validation/epoch1.2",
        "validation/epoch2",
    ]
    assert energy.fit.duration_s >= sum(m.duration_s for m in [*energy.epochs, *energy.validations])


def test_evaluation_figures_are_in_the_evaluate_metrics(tmp_path):
    seen: list[dict[str, float]] = []

    class Metrics(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen.append(dict(kwargs["metrics"]))

    trainer = _trainer(tmp_path, Tiny(), Recorder(), num_train_epochs=1)
    with EnergyCallback(config=ESTIMATES, print_table=False).attach(trainer):
        trainer.add_callback(Metrics())  # after the energy callback
        trainer.train()
    assert seen and seen[0]["energy/validation_j"] > 0 and "eval_loss" in seen[0]


def test_windows_are_closed_when_training_raises(tmp_path):
    with EnergyMonitor(ESTIMATES) as monitor:
        trainer = _trainer(tmp_path, Tiny(fail_at_step=6), Recorder())
        with (
            pytest.raises(RuntimeError, match="boom"),
            EnergyCallback(monitor=monitor, print_table=False).attach(trainer) as energy,
        ):
            trainer.train()
        for name in ("fit", "train/epoch2"):
            assert monitor.progress(name) is None
            monitor.begin_window(name)  # not open any more: no ValueError
            monitor.end_window(name)
        assert [m.name for m in energy.epochs] == ["train/epoch1", "train/epoch2"]
        assert energy.fit is not None


def test_a_callback_that_was_not_attached_says_how(tmp_path):
    trainer = _trainer(tmp_path, Tiny(), Recorder())
    trainer.add_callback(EnergyCallback(config=ESTIMATES))
    with pytest.raises(WattwiseError, match=r"attach\(trainer\)"):
        trainer.train()
