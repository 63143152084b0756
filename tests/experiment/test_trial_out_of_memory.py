"""Out of memory outside the training loop's own handling (moving the model, a recipe step, the
inference measurement, loading the data): a failed trial whose one-line reason says where, a
``gpu_memory_gib`` cap's failure still reading ``does not fit in <cap> GiB``, and the sweep goes
on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import wattwise.optimize.recipe as recipe_module
from wattwise.config import StudyConfig
from wattwise.experiment import ResultsStore
from wattwise.experiment import runner as runner_module
from wattwise.experiment.runner import run_trial
from wattwise.experiment.spec import TrialSpec, expand_grid
from wattwise.experiment.sweep import run_study

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"
TINY: dict[str, Any] = {
    "width": 0.25,
    "batch_sizes": [64],
    "learning_rates": [0.05],
    "epochs": [1],
    "train": {"hflip": False, "augment": False, "num_threads": 1},
    "measurement": {"inference_s": 0.05, "inference_batch_size": 32},
}


def trial(**changes: Any) -> TrialSpec:
    (spec,) = expand_grid(
        StudyConfig(**{"name": "oom", "techniques": ["prune:structured:0.5"], **TINY, **changes})
    )
    return spec


def raising(err: BaseException) -> Any:
    def raise_it(*args: Any, **kwargs: Any) -> Any:
        raise err

    return raise_it


def test_out_of_memory_in_the_inference_measurement_names_it(monkeypatch):
    monkeypatch.setattr(
        recipe_module, "measure_variants", raising(torch.OutOfMemoryError(CUDA_OOM))
    )
    record = run_trial(trial())
    assert record.status == "failed"
    assert record.reason == (
        f"out of memory while measuring 2 variants side by side: OutOfMemoryError: {CUDA_OOM}"
    )
    assert {"train", "test"} <= set(record.phases)  # what was measured before is kept


def test_under_a_cap_it_does_not_fit_and_says_where(monkeypatch):
    """The cap's reading (``does not fit in 4 GiB``, as an OOM in training says) comes first."""
    error = RuntimeError("CUDA out of memory (plain RuntimeError)\n  more text")
    monkeypatch.setattr(recipe_module, "measure_variants", raising(error))
    record = run_trial(trial(gpu_memory_gib=[4]))
    assert record.reason == (
        "does not fit in 4 GiB: out of memory while measuring 2 variants side by side "
        "(RuntimeError: CUDA out of memory (plain RuntimeError) more text)"
    )
    assert record.memory_cap is not None and record.memory_cap.gpu_memory_gib == 4


def test_out_of_memory_in_a_recipe_step_names_the_step(monkeypatch):
    monkeypatch.setattr(
        recipe_module, "apply_technique", raising(torch.cuda.OutOfMemoryError(CUDA_OOM))
    )
    record = run_trial(trial())
    assert record.reason == (
        f"out of memory while applying prune:structured:0.5 (step 1 of 1): "
        f"OutOfMemoryError: {CUDA_OOM}"
    )


def fine_tune_with(monkeypatch, step: Any) -> list[Any]:
    """The recipe's fine-tuning runs ``step`` for its batches; returns the configs it got."""
    real, configs = recipe_module.fit, []

    def fit(module: Any, data: Any, config: Any, **kwargs: Any) -> Any:
        configs.append(config)
        return real(module, data, config, step_fn=step, **kwargs)

    monkeypatch.setattr(recipe_module, "fit", fit)
    return configs


def test_a_fine_tuning_that_does_not_fit_under_the_cap_fails_the_trial(monkeypatch):
    """The fine-tuning after pruning runs under the trial's GPU memory cap; out of memory there
    is no pruned-but-not-fine-tuned result: the trial fails with the cap's reading."""
    configs = fine_tune_with(monkeypatch, raising(torch.OutOfMemoryError(CUDA_OOM)))
    record = run_trial(trial(gpu_memory_gib=[4]))
    assert [c.gpu_memory_gib for c in configs] == [4]
    assert (record.status, record.reason) == (
        "failed",
        "does not fit in 4 GiB: out of memory while fine-tuning after prune:structured:0.5",
    )
    assert {"train", "test"} <= set(record.phases)  # the training's measurement is kept
    assert run_trial(trial()).reason == (
        f"out of memory while fine-tuning after prune:structured:0.5: OutOfMemoryError: {CUDA_OOM}"
    )


def test_a_fine_tuning_that_diverges_fails_the_trial(monkeypatch):
    def nan_loss(model: Any, x: Any, y: Any, idx: Any) -> Any:
        logits = model(x)
        return logits.sum() * float("nan"), logits

    fine_tune_with(monkeypatch, nan_loss)
    record = run_trial(trial())
    assert record.status == "failed"
    assert record.reason.startswith(
        "diverged while fine-tuning after prune:structured:0.5: loss became nan at epoch 1"
    )


def test_memory_error_while_loading_the_data_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(runner_module, "load_dataset", raising(MemoryError()))
    record = run_trial(trial())
    assert (record.status, record.reason) == (
        "failed",
        "out of memory while loading the data: MemoryError",
    )


def test_moving_the_model_to_the_device_is_part_of_training(monkeypatch):
    """``fit`` moves the model before its own handling: such an OOM reads as fit's own."""
    real = runner_module.create_model

    def create_model(**kwargs: Any) -> torch.nn.Module:
        model = real(**kwargs)
        model.to = raising(torch.OutOfMemoryError(CUDA_OOM))  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(runner_module, "create_model", create_model)
    assert run_trial(trial()).reason == f"out of memory: OutOfMemoryError: {CUDA_OOM}"
    assert run_trial(trial(gpu_memory_gib=[4])).reason == "does not fit in 4 GiB"


def test_the_gpu_cache_is_emptied_after_an_out_of_memory(monkeypatch):
    """So that the worker's next trial gets the memory back."""
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    monkeypatch.setattr(
        recipe_module, "measure_variants", raising(torch.OutOfMemoryError(CUDA_OOM))
    )
    assert run_trial(trial()).status == "failed"
    assert emptied


def test_a_sweep_records_the_out_of_memory_and_goes_on(tmp_path: Path, monkeypatch):
    real = recipe_module.measure_variants

    def measure(candidates: Any, *args: Any, **kwargs: Any) -> Any:
        if any(c.step.startswith("prune") for c in candidates):
            raise torch.OutOfMemoryError(CUDA_OOM)
        return real(candidates, *args, **kwargs)

    monkeypatch.setattr(recipe_module, "measure_variants", measure)
    study = StudyConfig(
        **{
            **TINY,
            "name": "oom-sweep",
            "output_dir": str(tmp_path),
            "techniques": ["prune:structured:0.5", "baseline"],
        }
    )
    summary = run_study(study)
    assert (summary.ok, summary.failed) == (1, 1)
    with ResultsStore(summary.store_path) as store:
        (failed,) = store.records("failed")
        assert failed.spec["technique"] == "prune:structured:0.5"
        assert failed.reason.startswith("out of memory while measuring 2 variants side by side")
        assert store.records("ok")[0].spec["technique"] == "baseline"


def test_a_reason_other_than_out_of_memory_does_not_change_with_the_stage():
    stage = "measuring 2 variants side by side"
    assert runner_module.failure_reason(ValueError("bad"), None, stage) == "ValueError: bad"
    caught = runner_module.TrialFailure("does not fit in 4 GiB")  # fit's own, passed on
    assert runner_module.failure_reason(caught, None, stage) == "does not fit in 4 GiB"
