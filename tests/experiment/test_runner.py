"""run_trial: one TrialRecord per trial, filled from real measurements; failures are records."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from wattwise.config import StudyConfig
from wattwise.experiment import METRICS, ResultsStore
from wattwise.experiment import runner as runner_module
from wattwise.experiment.runner import TrialFailure, failure_reason, run_trial
from wattwise.experiment.spec import TrialSpec, expand_grid


def specs(**changes: Any) -> list[TrialSpec]:
    """Tiny digits trials: 8 px, quarter-width small_cnn, 1 epoch, 0.1 s inference."""
    values: dict[str, Any] = {
        "name": "runner",
        "width": 0.5,
        "techniques": ["baseline"],
        "batch_sizes": [64],
        "learning_rates": [0.05],
        "epochs": [1],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0.1, "inference_batch_size": 32},
    }
    values.update(changes)
    return expand_grid(StudyConfig(**values))


def test_baseline_trial_fills_the_record():
    (spec,) = specs(epochs=[2])
    record = run_trial(spec)
    assert record.status == "ok" and record.reason is None
    assert record.trial_id == spec.trial_id and record.spec == spec.to_dict()
    assert 0.1 < record.accuracy <= 1.0  # far above chance after two epochs
    assert record.train_energy_j > 0
    assert record.train_energy_provenance in ("measured", "estimated", "mixed")
    assert record.accuracy_per_kj_train == pytest.approx(
        record.accuracy / (record.train_energy_j / 1e3)
    )
    assert record.inference_energy_per_image_j > 0
    assert record.accuracy_per_j_per_image == pytest.approx(
        record.accuracy / record.inference_energy_per_image_j
    )
    assert record.latency_p95_ms >= record.latency_p50_ms > 0
    assert record.images_per_s > 0
    assert record.params > 0 and record.macs > 0 and record.model_bytes > 0
    assert record.peak_rss_bytes > 0 and record.duration_s > 0
    assert set(record.phases) == {"train", "test", "inference"}
    assert record.threads == 1 and record.comparison["threads"] == 1  # recorded
    assert not record.noisy or record.noise  # a noisy flag always says why
    for phase in record.phases.values():  # energy by component, each with its provenance
        assert phase["components"] and all(c["provenance"]["label"] for c in phase["components"])
    assert [h["epoch"] for h in record.history] == [1, 2]
    assert record.memory_cap is not None and record.memory_cap.gpu_memory_gib is None
    assert [v.step for v in record.variants] == ["baseline"]
    (variant,) = record.variants  # the final variant's numbers are the record's
    assert variant.inference_energy_per_image_j == record.inference_energy_per_image_j
    assert variant.images_per_s == record.images_per_s
    assert record.details["train"]["status"] == "ok"
    recorded = {"torch", "python", "device", "device_id", "energy_components"}
    assert recorded <= set(record.environment)
    derived = {"accuracy_per_kj_train", "accuracy_per_j_per_image"}  # properties, not stored
    assert set(METRICS) - derived <= set(record.to_dict()) and not derived & set(record.to_dict())
    assert record.metrics()["accuracy_per_kj_train"] == record.accuracy_per_kj_train
    json.dumps(record.to_dict(), allow_nan=False)


def _stored_run(store: ResultsStore, spec: TrialSpec, **kwargs: Any) -> Any:
    """What a sweep does around run_trial: mark it running, run it, store the record."""
    store.begin_trial(spec.trial_id, spec, rerun=True)
    return store.finish_trial(run_trial(spec, **kwargs))


def test_store_counts_attempts_and_keeps_the_record(tmp_path):
    (spec,) = specs()
    with ResultsStore(tmp_path / "results.sqlite", study="runner") as store:
        first = _stored_run(store, spec)
        assert store.get(spec.trial_id) == first and first.attempts == 1
        again = _stored_run(store, spec)  # an explicit call runs it again
        assert again.attempts == 2 and store.status(spec.trial_id) == "ok"


def test_distill_trains_the_teacher_once_and_recipe_steps_follow(tmp_path):
    distill_prune, distill = specs(
        techniques=["distill:small_cnn:2:0.5,prune:structured:0.5", "distill:small_cnn:2:0.5"]
    )
    cache: dict[Any, Any] = {}
    teachers = tmp_path / "teachers"
    first = run_trial(distill_prune, data_cache=cache, teacher_dir=teachers)
    assert first.status == "ok", first.reason
    assert list(first.phases) == [
        "teacher",
        "teacher_logits",
        "train",
        "test",
        "recipe/prune:structured:0.5",
        "inference",  # the benchmark of every variant, side by side
    ]
    teacher = first.details["teacher"]
    assert teacher["trained_here"] and teacher["train_energy_j"] > 0
    assert (
        first.details["distill"]["temperature"] == 2.0 and first.details["distill"]["alpha"] == 0.5
    )
    base, pruned = first.variants
    assert pruned.params < base.params and first.params == pruned.params
    assert first.accuracy == pruned.accuracy
    assert pruned.step_energy_j == first.phases["recipe/prune:structured:0.5"]["total_energy_j"]
    # every joule in exactly one place: the student's own training is training energy; the
    # teacher's pass and training and the pruning step are technique energy; the benchmark is
    # measurement energy
    assert first.train_energy_j == pytest.approx(first.phases["train"]["total_energy_j"])
    technique = sum(
        first.phases[name]["total_energy_j"]
        for name in ("teacher_logits", "recipe/prune:structured:0.5")
    )
    assert first.technique_energy_j == pytest.approx(technique)
    assert first.measurement_energy_j == pytest.approx(first.phases["inference"]["total_energy_j"])
    phases = sum(m["total_energy_j"] for m in first.phases.values())
    assert first.teacher_energy_j == pytest.approx(first.phases["teacher"]["total_energy_j"])
    assert first.total_energy_j == pytest.approx(phases)  # the sum of the phases, exactly
    assert len(list(teachers.glob("small_cnn-*.pt"))) == 1

    second = run_trial(distill, data_cache=cache, teacher_dir=teachers)
    assert second.status == "ok" and "teacher" not in second.phases
    assert not second.details["teacher"]["trained_here"]
    assert second.details["teacher"]["train_energy_j"] == teacher["train_energy_j"]
    # a new process (empty cache) finds it on disk
    third = run_trial(distill, data_cache={}, teacher_dir=teachers)
    assert not third.details["teacher"]["trained_here"]
    assert third.details["teacher"]["key"] == teacher["key"]


def test_missing_dataset_is_a_failed_record(tmp_path):
    (spec,) = specs(datasets=["fashion_mnist"], data_root=str(tmp_path / "empty"))
    with ResultsStore(tmp_path / "results.sqlite") as store:
        record = _stored_run(store, spec)
        assert record.status == "failed"
        assert record.reason.startswith("DatasetError: ") and "\n" not in record.reason
        assert store.get(spec.trial_id).reason == record.reason


def test_divergence_fails_with_the_loop_reason():
    (spec,) = specs(learning_rates=[1e12])
    record = run_trial(spec)
    assert record.status == "failed"
    assert record.reason.startswith("diverged: loss became")
    assert "train" in record.phases  # what was measured before is kept


def test_out_of_memory_under_a_cap_says_it_does_not_fit(monkeypatch):
    (spec,) = specs(gpu_memory_gib=[4])

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner_module, "fit", out_of_memory)
    record = run_trial(spec)
    assert (record.status, record.reason) == ("failed", "does not fit in 4 GiB")
    assert "OutOfMemoryError" in record.details["error"]


def test_any_exception_becomes_a_one_line_reason(monkeypatch):
    (spec,) = specs()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runner_module, "create_model", broken)
    record = run_trial(spec)
    assert record.reason == "RuntimeError: boom second line"


def test_interrupt_is_not_caught_and_leaves_the_trial_running(tmp_path, monkeypatch):
    (spec,) = specs()

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "fit", interrupted)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            _stored_run(store, spec)
        assert store.status(spec.trial_id) == "running"
        assert store.pending([spec]) == [spec]  # resumed later


def test_data_is_loaded_once_per_dataset_and_seed(monkeypatch):
    calls: list[tuple[Any, ...]] = []
    real = runner_module.load_dataset

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((name, kwargs["seed"]))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(runner_module, "load_dataset", counting)
    monkeypatch.setattr(runner_module, "_apply_recipe", lambda *a, **k: None)  # training only
    cache: dict[Any, Any] = {}
    for spec in specs(learning_rates=[0.05, 0.1], seeds=[0, 1]):
        assert run_trial(spec, data_cache=cache).status == "ok"
    assert sorted(calls) == [("digits", 0), ("digits", 1)]


def test_inference_seconds_zero_reports_no_inference_numbers():
    (spec,) = specs(measurement={"inference_s": 0})
    record = run_trial(spec)
    assert record.status == "ok" and record.accuracy is not None
    assert record.inference_energy_per_image_j is None and record.latency_p50_ms is None
    assert "inference" not in record.phases
    assert any("inference_s is 0" in note for note in record.details["notes"])


def test_trial_spec_that_cannot_run_here_is_refused_before_anything_runs(tmp_path):
    import dataclasses

    from wattwise.errors import ConfigError
    from wattwise.experiment.runner import check_trial, train_and_save

    (spec,) = specs()
    fp16 = dataclasses.replace(spec, train=dataclasses.replace(spec.train, precision="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16"):
            check_trial(fp16)
        with pytest.raises(ConfigError, match="fp16"):
            train_and_save(fp16, tmp_path / "run")
        assert not (tmp_path / "run").exists()  # nothing half-written


def test_train_and_save_is_the_one_trial_pipeline_plus_the_run(tmp_path):
    from wattwise.experiment.record import TrialRecord
    from wattwise.experiment.runner import train_and_save
    from wattwise.train import load_checkpoint

    (spec,) = specs()
    record = train_and_save(spec, tmp_path / "run")
    assert record.status == "ok" and [v.step for v in record.variants] == ["baseline"]
    saved = TrialRecord.from_dict(json.loads((tmp_path / "run" / "run.json").read_text()))
    assert saved.trial_id == spec.trial_id and saved.accuracy == record.accuracy
    assert TrialSpec.from_dict(json.loads((tmp_path / "run" / "config.json").read_text())) == spec
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.model_spec["name"] == "small_cnn" and checkpoint.result["status"] == "ok"


def test_failure_reasons():
    (spec,) = specs(gpu_memory_gib=[8])
    assert failure_reason(TrialFailure("diverged: x"), spec) == "diverged: x"
    assert failure_reason(MemoryError(), spec) == "does not fit in 8 GiB"
    assert failure_reason(RuntimeError("CUDA out of memory"), None).startswith("out of memory")
    assert failure_reason(ValueError("")) == "ValueError"
    assert len(failure_reason(ValueError("x" * 5000))) == runner_module.MAX_REASON


def test_trials_that_share_a_training_train_once_and_compress_the_same_weights(tmp_path):
    """Train once, compress many: baseline and pruning trials with the same dataset, model,
    training settings and seed share one training; another seed, learning rate or a distill
    step trains anew. The weights are reused from the cache, and from disk by a new process."""
    base, pruned = specs(techniques=["baseline", "prune:structured:0.5"])
    (other_seed,) = specs(seeds=[1])
    (other_lr,) = specs(learning_rates=[0.02])
    cache: dict[Any, Any] = {}
    teachers = tmp_path / "teachers"
    first = run_trial(base, data_cache=cache, teacher_dir=teachers)
    assert first.status == "ok" and {"train", "test"} <= set(first.phases)
    trained = first.details["baseline"]
    assert trained["trained_here"] and trained["trained_by_trial"] == first.trial_id
    assert trained["training_energy_j"] == pytest.approx(
        first.phases["train"]["total_energy_j"] + first.phases["test"]["total_energy_j"]
    )
    (saved,) = (tmp_path / "baselines").glob("*.pt")
    assert saved.stem == trained["key"]

    second = run_trial(pruned, data_cache=cache, teacher_dir=teachers)
    assert second.status == "ok", second.reason
    assert "train" not in second.phases and "test" not in second.phases  # its joules: once
    assert second.training_energy_j == 0
    reused = second.details["baseline"]
    assert not reused["trained_here"] and reused["key"] == trained["key"]
    assert reused["trained_by_trial"] == first.trial_id
    assert second.history == first.history and second.train_energy_j == first.train_energy_j
    assert second.details["train"]["reused"] is True
    # the same weights: the pruned trial's baseline variant is the first trial's model
    assert second.variants[0].accuracy == first.variants[0].accuracy
    assert {"recipe/prune:structured:0.5", "inference"} <= set(second.phases)

    from_disk = run_trial(pruned, data_cache={}, teacher_dir=teachers)
    assert not from_disk.details["baseline"]["trained_here"]
    assert from_disk.variants[0].accuracy == first.variants[0].accuracy
    for spec in (other_seed, other_lr):
        fresh = run_trial(spec, data_cache=cache, teacher_dir=teachers)
        assert fresh.details["baseline"]["trained_here"] and "train" in fresh.phases
        assert fresh.details["baseline"]["key"] != trained["key"]
    alone = run_trial(pruned)  # no cache, no study folder: nothing to reuse from
    assert alone.details["baseline"]["trained_here"] and "train" in alone.phases
