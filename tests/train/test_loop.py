"""fit(): it learns, measures every epoch, and ends bad runs with a status instead of raising."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from wattwise.data import DatasetSplits
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.train import TrainConfig, evaluate, fit
from wattwise.train import loop as loop_module
from wattwise.train.device import apply_memory_cap, is_out_of_memory

PROVENANCE_KINDS = {"measured", "estimated", "mixed"}
CHANCE = 0.1  # digits has 10 balanced classes

MakeCnn = Callable[..., nn.Module]
FastConfig = Callable[..., TrainConfig]


def _frozen_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
    """A step that learns nothing: constant logits, no gradient reaches the model (and the model
    is not even run, so BatchNorm statistics stay put): validation accuracy is exactly flat."""
    logits = torch.zeros(x.shape[0], 10, requires_grad=True)
    return nn.functional.cross_entropy(logits, y), logits


def _test_accuracy(model: nn.Module, data: DatasetSplits) -> float:
    return evaluate(model, data.test, mean=data.info.mean, std=data.info.std)[1]


# --- learning and measuring --------------------------------------------------------------------
def test_small_cnn_learns_digits_and_every_epoch_is_measured(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig, monitor: EnergyMonitor
) -> None:
    model = make_cnn()
    before = _test_accuracy(model, digits)
    seen: list[int] = []
    config = fast_config(epochs=3)
    result = fit(
        model,
        digits,
        config,
        monitor=monitor,
        on_epoch=lambda r: seen.append(r.epoch),
    )

    assert result.status == "ok" and result.reason is None
    assert result.device == "cpu"
    assert before < 0.3  # an untrained model is near chance...
    assert result.test_accuracy is not None and result.test_accuracy >= 0.8  # ...a trained one not
    assert result.test_loss is not None and result.test_loss < math.log(10)
    assert _test_accuracy(model, digits) == pytest.approx(result.test_accuracy)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert seen == [1, 2, 3]
    assert result.best_epoch in (1, 2, 3)
    assert result.best_val_accuracy == max(r.val_accuracy for r in result.history)

    for epoch, record in enumerate(result.history, start=1):
        assert record.epoch == epoch
        assert math.isfinite(record.train_loss) and 0.0 <= record.train_accuracy <= 1.0
        assert record.val_loss is not None and record.val_accuracy is not None
        assert record.images == len(digits.train)
        assert record.duration_s > 0
        assert record.energy_j > 0
        assert record.energy_provenance in PROVENANCE_KINDS
        assert record.peak_rss_bytes is not None and record.peak_rss_bytes > 0
        assert record.peak_cuda_allocated_bytes is None  # CPU run
        summed = 0.0
        for name, component in record.components.items():
            label = component["provenance"]
            assert label == "unavailable" or label.split(":")[0] in ("measured", "estimated"), name
            if component["energy_j"] is not None:
                summed += component["energy_j"]
        assert summed == pytest.approx(record.energy_j)

    # The monitor recorded one window per epoch, the whole fit and the test evaluation.
    names = [m.name for m in monitor.history]
    assert names == ["train/epoch1", "train/epoch2", "train/epoch3", "fit", "test"]
    assert result.fit is not None and result.test is not None
    assert result.fit.name == "fit" and result.test.name == "test"
    assert result.fit.total_energy_j >= sum(r.energy_j for r in result.history) * 0.99
    assert result.fit.duration_s >= sum(r.duration_s for r in result.history)
    assert result.train_energy_j == result.fit.total_energy_j
    assert result.accuracy_per_kj == pytest.approx(
        result.test_accuracy / (result.fit.total_energy_j / 1e3)
    )
    json.dumps(result.to_dict())  # everything recorded is plain data


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sgd_and_adam_both_train(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig, optimizer: str
) -> None:
    lr = 0.05 if optimizer == "sgd" else 5e-3
    result = fit(make_cnn(), digits, fast_config(optimizer=optimizer, lr=lr))
    assert result.status == "ok"
    assert result.test_accuracy is not None and result.test_accuracy > 3 * CHANCE


def test_cosine_schedule_anneals_to_zero_and_none_keeps_lr(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    cosine = fit(make_cnn(), digits, fast_config(epochs=2, schedule="cosine"))
    assert 0 < cosine.history[0].lr < 0.05
    assert cosine.history[-1].lr == pytest.approx(0.0, abs=1e-9)
    flat = fit(make_cnn(), digits, fast_config(epochs=2, schedule="none"))
    assert [r.lr for r in flat.history] == [0.05, 0.05]


def test_label_smoothing_runs_and_raises_the_loss_floor(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    result = fit(make_cnn(), digits, fast_config(label_smoothing=0.3))
    assert result.status == "ok"
    assert result.test_accuracy is not None and result.test_accuracy > 3 * CHANCE
    # With smoothing 0.3 over 10 classes the training loss cannot fall below the entropy of the
    # smoothed target (about 1.2 nats).
    assert result.history[-1].train_loss > 1.0


def test_bf16_on_cpu_runs_and_learns(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    # bf16 autocast of this tiny model is 10-20x slower than fp32 on this CPU: train on a subset.
    subset = dataclasses.replace(digits, train=digits.train.subset(torch.arange(480)))
    result = fit(make_cnn(), subset, fast_config(epochs=3, precision="bf16"))
    assert result.status == "ok"
    assert result.test_accuracy is not None and result.test_accuracy >= 0.7


def test_channels_last_runs(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    model = make_cnn()
    result = fit(model, digits, fast_config(channels_last=True))
    assert result.status == "ok"
    assert result.test_accuracy is not None and result.test_accuracy > 3 * CHANCE
    conv = model.features[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled")
def test_fp16_on_cpu_is_a_config_error(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    with pytest.raises(ConfigError, match="fp16"):
        fit(make_cnn(), digits, fast_config(epochs=1, precision="fp16"))


# --- runs that stop early ----------------------------------------------------------------------
def test_absurd_lr_diverges_without_raising(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig, monitor: EnergyMonitor
) -> None:
    config = fast_config(epochs=3, lr=1e6, weight_decay=0.0, schedule="none")
    result = fit(make_cnn(), digits, config, monitor=monitor)
    assert result.status == "diverged"
    assert result.reason is not None
    assert "epoch 1" in result.reason and "batch" in result.reason
    assert result.history == []  # it never finished an epoch
    assert result.fit is not None and result.fit.duration_s > 0  # but its cost was measured
    assert result.test is None and result.test_accuracy is None
    assert [m.name for m in monitor.history] == ["train/epoch1", "fit"]


def test_nan_loss_reports_the_epoch_and_batch(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    calls = {"n": 0}
    per_epoch = -(-len(digits.train) // 32)

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        calls["n"] += 1
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        if calls["n"] == per_epoch + 3:  # epoch 2, batch 3
            loss = loss * math.nan
        return loss, logits

    result = fit(make_cnn(), digits, fast_config(epochs=3), step_fn=step)
    assert result.status == "diverged"
    assert "epoch 2, batch 3" in result.reason
    assert "nan" in result.reason
    assert [r.epoch for r in result.history] == [1]
    assert result.fit is not None and result.fit.total_energy_j > 0
    assert result.to_dict()["status"] == "diverged"


@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping_when_validation_accuracy_is_flat(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig, patience: int
) -> None:
    config = fast_config(epochs=5, early_stopping_patience=patience)
    result = fit(make_cnn(), digits, config, step_fn=_frozen_step)
    assert result.status == "ok"
    assert len(result.history) == 1 + patience < config.epochs
    assert len({r.val_accuracy for r in result.history}) == 1  # flat, as constructed
    assert result.best_epoch == 1
    assert result.reason is not None and result.reason.startswith("early stopping")
    assert f"{patience} epochs" in result.reason
    assert result.test_accuracy is not None  # a stopped run is still tested


def test_no_early_stopping_without_patience(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    result = fit(make_cnn(), digits, fast_config(epochs=3), step_fn=_frozen_step)
    assert len(result.history) == 3 and result.reason is None


# --- memory ------------------------------------------------------------------------------------
def test_gpu_memory_cap_is_recorded_but_not_enforceable_on_cpu(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    result = fit(make_cnn(), digits, fast_config(epochs=1, gpu_memory_gib=4))
    assert result.status == "ok"
    assert result.memory_cap.gpu_memory_gib == 4
    assert result.memory_cap.enforced is False
    assert "not enforceable" in result.memory_cap.note
    assert result.to_dict()["memory_cap"]["enforced"] is False
    assert result.fit is not None and result.fit.peak_rss_bytes > 0  # the peak is recorded


def test_apply_memory_cap_on_cpu() -> None:
    cap = apply_memory_cap(torch.device("cpu"), 8)
    assert (cap.gpu_memory_gib, cap.enforced) == (8, False)
    assert "not enforceable" in cap.note
    none = apply_memory_cap(torch.device("cpu"), None)
    assert (none.gpu_memory_gib, none.enforced, none.note) == (None, False, "no cap")


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def _oom_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_oom_inside_a_step_ends_the_run_with_status_oom(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig, monitor: EnergyMonitor
) -> None:
    config = fast_config(gpu_memory_gib=4)
    result = fit(make_cnn(), digits, config, monitor=monitor, step_fn=_oom_step)
    assert result.status == "oom"
    assert result.reason == "does not fit in 4 GiB"
    assert result.history == [] and result.test is None
    assert result.fit is not None  # measured up to the failure
    assert [m.name for m in monitor.history] == ["train/epoch1", "fit"]


def test_oom_without_a_cap_keeps_the_error_text(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    result = fit(make_cnn(), digits, fast_config(), step_fn=step)
    assert result.status == "oom"
    assert result.reason.startswith("out of memory:") and "2.00 GiB" in result.reason


def test_other_errors_in_a_step_propagate(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig, monitor: EnergyMonitor
) -> None:
    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        fit(make_cnn(), digits, fast_config(), monitor=monitor, step_fn=step)
    # The windows were closed on the way out: the monitor is usable again.
    assert [m.name for m in monitor.history] == ["train/epoch1", "fit"]
    with monitor.window("after"):
        pass


def test_step_fn_receives_the_rows_of_the_batch(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    labels = digits.train.labels
    seen: list[torch.Tensor] = []

    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        assert torch.equal(labels[idx], y)
        seen.append(idx)
        return _frozen_step(model, x, y, idx)

    fit(make_cnn(), digits, fast_config(epochs=1), step_fn=step)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(len(labels)))


# --- reporting ---------------------------------------------------------------------------------
class _Progress:
    """A TrainProgress that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self.calls.append(("start", epoch, epochs, batches))

    def on_batch(self, batch: int, loss: float) -> None:
        self.calls.append(("batch", batch, loss))

    def on_epoch_end(self, epoch: int) -> None:
        self.calls.append(("end", epoch))


def test_progress_hears_each_epoch_and_its_batches_and_nothing_is_printed(
    digits: DatasetSplits,
    make_cnn: MakeCnn,
    fast_config: FastConfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(loop_module, "PROGRESS_INTERVAL_S", 0.0)  # report every batch
    progress = _Progress()
    order: list[str] = []
    config = fast_config(epochs=2)
    fit(
        make_cnn(),
        digits,
        config,
        progress=progress,
        on_epoch=lambda r: order.append(f"record {r.epoch}"),
    )
    batches = math.ceil(len(digits.train) / config.batch_size)
    for epoch in (1, 2):
        start = progress.calls.index(("start", epoch, 2, batches))
        end = progress.calls.index(("end", epoch))
        done = [c for c in progress.calls[start:end] if c[0] == "batch"]
        assert [c[1] for c in done] == list(range(1, batches + 1))
        assert all(math.isfinite(c[2]) for c in done)
    assert order == ["record 1", "record 2"]
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # fit prints nothing, with or without a progress


def test_an_epoch_that_fails_still_ends_its_progress(
    digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        raise RuntimeError("shapes cannot be multiplied")

    progress = _Progress()
    with pytest.raises(RuntimeError):
        fit(make_cnn(), digits, fast_config(), progress=progress, step_fn=step)
    assert [c[0] for c in progress.calls] == ["start", "end"]
