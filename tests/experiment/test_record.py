"""TrialRecord: validation, JSON safety, the dict round trip, typed variants and memory cap,
ratios as properties, and reading records of the previous version."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wattwise.energy.base import ComponentEnergy, Measurement, Provenance
from wattwise.experiment import METRICS, MemoryCap, TrialRecord, VariantRecord, json_safe
from wattwise.experiment.record import phase_category


def measurement(name: str = "train", energy_j: float = 120.0) -> Measurement:
    return Measurement(
        name=name,
        start_unix_s=1_700_000_000.0,
        duration_s=4.0,
        components=(
            ComponentEnergy("cpu:0", energy_j, Provenance.measured("rapl")),
            ComponentEnergy("gpu", None, Provenance.unavailable("no NVIDIA GPU")),
        ),
        peak_rss_bytes=123_456_789,
    )


def variant(step: str = "baseline", **changes: Any) -> VariantRecord:
    values: dict[str, Any] = {
        "step": step,
        "applied": step,
        "accuracy": 0.95,
        "params": 11_689_512,
        "macs": 1_814_083_944,
        "model_bytes": 46_830_571,
        "model_bytes_note": "bytes on disk (shapes + state_dict)",
        "latency_p50_ms": 3.1,
        "latency_p95_ms": 4.2,
        "images_per_s": 20_000.0,
        "inference_energy_per_image_j": 0.002,
        "inference_energy_provenance": "estimated",
        "peak_rss_bytes": 500_000_000,
        "step_energy_j": 0.0,
        "step_duration_s": 0.0,
        "optimization_energy_j": 0.0,
        "payback_inferences": 0.0,
    }
    return VariantRecord(**(values | changes))


QUANTIZED = {
    "accuracy": 0.94,
    "model_bytes": 11_000_000,
    "model_bytes_note": "tensors the int8 graph uses",
    "inference_energy_per_image_j": 0.001,
    "step_energy_j": 50.0,
    "step_duration_s": 4.0,
    "optimization_energy_j": 50.0,
    "payback_inferences": 50_000.0,
    "notes": ("int8 via PT2E",),
    "details": {"backend": "x86_inductor"},
}


def full_record(**changes: Any) -> TrialRecord:
    values: dict[str, Any] = {
        "trial_id": "0123456789abcdef",
        "study": "demo",
        "spec": {"dataset": "digits", "model": "small_cnn", "technique": "baseline", "lr": 0.01},
        "accuracy": 0.95,
        "train_energy_j": 120.0,
        "train_energy_provenance": "measured",
        "inference_energy_per_image_j": 0.002,
        "inference_energy_provenance": "estimated",
        "duration_s": 12.5,
        "peak_rss_bytes": 500_000_000,
        "params": 11_689_512,
        "macs": 1_814_083_944,
        "model_bytes": 46_830_571,
        "latency_p50_ms": 3.1,
        "latency_p95_ms": 4.2,
        "images_per_s": 20_000.0,
        "phases": {"train": measurement(), "inference": measurement("inference", 2.0)},
        "variants": (variant(), variant("quantize:int8", **QUANTIZED)),
        "memory_cap": MemoryCap(None, False, "no cap"),
        "history": [{"epoch": 1, "train_loss": 0.7, "val_accuracy": 0.9}],
        "details": {"sparsity": 0.5},
        "environment": {"python": "3.11", "torch": "2.11"},
        "started_unix_s": 1_700_000_000.0,
        "finished_unix_s": 1_700_000_012.5,
        "attempts": 2,
    }
    values.update(changes)
    return TrialRecord(**values)


def test_round_trip_through_json() -> None:
    record = full_record()
    text = json.dumps(record.to_dict(), allow_nan=False)
    again = TrialRecord.from_dict(json.loads(text))
    assert again == record
    assert again.phases["train"]["components"][0]["provenance"]["label"] == "measured:rapl"
    assert again.phases["train"]["components"][1]["provenance"]["kind"] == "unavailable"
    assert again.phase_energy_j() == {"train": 120.0, "inference": 2.0}
    assert Measurement.from_dict(again.phases["train"]).total_energy_j == 120.0
    assert set(record.metrics()) == set(METRICS)
    assert again.variants[1] == variant("quantize:int8", **QUANTIZED)
    assert again.variants[1].notes == ("int8 via PT2E",)
    assert again.memory_cap == MemoryCap(None, False, "no cap")


def test_ratios_are_computed_from_the_primitives_not_stored() -> None:
    record = full_record(accuracy=0.9, train_energy_j=1800.0, inference_energy_per_image_j=0.003)
    assert record.accuracy_per_kj_train == pytest.approx(0.5)  # 0.9 / 1.8 kJ
    assert record.accuracy_per_j_per_image == pytest.approx(300.0)  # 0.9 / 0.003 J per image
    assert record.metrics()["accuracy_per_kj_train"] == pytest.approx(0.5)
    data = record.to_dict()
    assert "accuracy_per_kj_train" not in data and "accuracy_per_j_per_image" not in data
    for changes in ({"train_energy_j": 0.0}, {"train_energy_j": None}, {"accuracy": None}):
        assert full_record(**changes).accuracy_per_kj_train is None
    assert full_record(inference_energy_per_image_j=0.0).accuracy_per_j_per_image is None
    with pytest.raises(TypeError):
        full_record(accuracy_per_kj_train=1.0)  # not a field: it cannot disagree with the inputs


def test_a_record_of_the_previous_version_is_migrated() -> None:
    """What the previous version's ``to_dict()`` wrote: throughput under its old name, stored
    ratios, variants and memory cap as untyped dicts in ``details`` with the old variant keys,
    and the cap as ``gpu_memory_gb`` (in the spec and the memory cap)."""
    old_variant = {
        "step": "quantize:int8", "technique": "quantize", "accuracy": 0.94, "params": 11_689_512,
        "macs": 1_814_083_944, "size_bytes": 11_000_000,
        "size_note": "tensors the int8 graph uses", "latency_p50_ms": 3.1, "latency_p95_ms": 4.2,
        "images_per_s": 20_000.0, "energy_per_image_j": 0.001, "energy_provenance": "estimated",
        "peak_rss_bytes": 500_000_000, "step_energy_j": 50.0, "step_duration_s": 4.0,
        "optimization_energy_j": 50.0, "payback_inferences": 50_000.0,
        "notes": ["int8 via PT2E"], "details": {"backend": "x86_inductor"},
    }  # fmt: skip
    new = full_record().to_dict()
    old = {k: v for k, v in new.items() if k not in ("images_per_s", "variants", "memory_cap")}
    old |= {
        "spec": {**new["spec"], "gpu_memory_gb": 8.0},
        "throughput_images_per_s": 20_000.0,
        "accuracy_per_kj_train": 123.0,  # stored copies are ignored, never trusted
        "accuracy_per_j_per_image": 456.0,
        "details": {
            "sparsity": 0.5,
            "variants": [variant().to_dict() | {"technique": "baseline"}, old_variant],
            "memory_cap": {"gpu_memory_gb": 8.0, "enforced": False, "note": "not on CPU"},
        },
    }
    for key in ("model_bytes", "model_bytes_note", "inference_energy_per_image_j",
                "inference_energy_provenance", "applied"):  # fmt: skip
        del old["details"]["variants"][0][key]
    old["details"]["variants"][0] |= {
        "size_bytes": 46_830_571, "size_note": "bytes on disk (shapes + state_dict)",
        "energy_per_image_j": 0.002, "energy_provenance": "estimated",
    }  # fmt: skip
    migrated = TrialRecord.from_dict(old)
    expected = full_record(variants=(variant(applied="baseline"), variant(
        "quantize:int8", applied="quantize", **QUANTIZED)),
        spec={**new["spec"], "gpu_memory_gib": 8.0},
        memory_cap=MemoryCap(8.0, False, "not on CPU"))  # fmt: skip
    assert migrated == expected
    assert "gpu_memory_gb" not in migrated.spec and migrated.memory_cap.gpu_memory_gib == 8.0
    assert migrated.images_per_s == 20_000.0
    assert migrated.details == {"sparsity": 0.5}  # variants and cap moved to typed fields
    assert migrated.accuracy_per_kj_train == pytest.approx(0.95 / 0.12)


def test_typed_sub_records() -> None:
    stored = {"gpu_memory_gib": 8, "enforced": True, "note": "allocator fraction 0.5"}
    record = full_record(memory_cap=stored, variants=[variant().to_dict()])
    assert record.memory_cap == MemoryCap(8.0, True, "allocator fraction 0.5")
    assert record.memory_cap is not None and record.memory_cap.gpu_memory_gib == 8.0
    assert full_record(memory_cap=MemoryCap(None, False, "no cap")).memory_cap == MemoryCap(
        None, False, "no cap"
    )
    assert record.variants == (variant(),)
    assert variant(params=np.int64(7), macs=1e3).params == 7
    with pytest.raises(ValueError, match="variant record lacks applied"):
        VariantRecord.from_dict({k: v for k, v in variant().to_dict().items() if k != "applied"})
    with pytest.raises(ValueError, match="memory_cap must be"):
        full_record(memory_cap="8 GiB")
    with pytest.raises(ValueError, match="enforced must be true or false"):
        MemoryCap(8.0, "yes", "")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.variants[0].accuracy = 1.0  # type: ignore[misc]


def test_non_finite_numbers_become_null() -> None:
    record = full_record(
        accuracy=math.nan,
        train_energy_j=math.inf,
        history=({"epoch": 1, "val_loss": math.nan},),
        details={"ratio": -math.inf, "nested": [1.0, math.nan]},
    )
    assert record.accuracy is None and record.train_energy_j is None
    data = record.to_dict()
    json.dumps(data, allow_nan=False)  # no NaN tokens
    assert data["history"][0]["val_loss"] is None
    assert data["details"] == {"ratio": None, "nested": [1.0, None]}
    assert TrialRecord.from_dict(data) == record


def test_plain_types_from_numpy_paths_and_tuples() -> None:
    assert json_safe({1: (np.float32(0.5), np.int64(3)), "p": Path("/x")}) == {
        "1": [0.5, 3],
        "p": "/x",
    }
    assert json_safe(np.array([1.0, np.nan])) == [1.0, None]
    record = full_record(params=np.int64(7), accuracy=np.float64(0.5), macs=1e3)
    assert record.params == 7 and type(record.params) is int
    assert record.macs == 1000 and type(record.macs) is int
    assert record.accuracy == 0.5 and type(record.accuracy) is float


def test_spec_objects_are_stored_as_dicts() -> None:
    class Spec:
        def to_dict(self) -> dict[str, Any]:
            return {"dataset": "digits", "batch_size": 32}

    record = TrialRecord.running("abc", Spec(), study="s", started_unix_s=5.0)
    assert record.spec == {"dataset": "digits", "batch_size": 32}
    assert (record.status, record.attempts, record.finished) == ("running", 1, False)


def test_failed_record_keeps_its_reason_on_one_line() -> None:
    record = full_record().failed("CUDA out of memory:\n  tried to allocate 2 GiB")
    assert record.status == "failed" and record.finished
    assert record.reason == "CUDA out of memory: tried to allocate 2 GiB"
    assert record.accuracy == 0.95  # what was measured is kept
    assert record.finished_unix_s is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "done"}, "status must be one of ok, failed, running"),
        ({"trial_id": ""}, "trial_id must be a non-empty string"),
        ({"status": "failed", "reason": None}, "a failed trial needs a reason"),
        ({"attempts": -1}, "attempts must be an integer >= 0"),
        ({"accuracy": "high"}, "expected a number"),
        ({"params": 1.5}, "expected a whole number"),
    ],
)
def test_invalid_records(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        full_record(**changes)


def test_from_dict_ignores_unknown_keys_and_record_is_frozen() -> None:
    data = full_record().to_dict() | {"added_by_a_newer_version": 1}
    record = TrialRecord.from_dict(data)
    assert record == full_record()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.accuracy = 1.0  # type: ignore[misc]


def test_only_the_training_phase_keeps_its_timeline_thinned_to_600_samples():
    from wattwise.energy.base import PowerSample

    samples = tuple(PowerSample(i * 0.1, {"cpu": float(i % 7)}) for i in range(1500))
    train = dataclasses.replace(measurement("train"), timeline=samples)
    test = dataclasses.replace(measurement("test"), timeline=samples)
    record = TrialRecord(
        trial_id="t1", study="s", spec={}, status="ok", phases={"train": train, "test": test}
    )
    kept = record.phases["train"]["timeline"]
    assert 500 <= len(kept) <= 600
    assert kept[0]["t_s"] == 0.0 and kept[1]["t_s"] == pytest.approx(0.3)
    assert record.phases["test"]["timeline"] is None
    assert json.loads(json.dumps(record.to_dict()))["phases"]["train"]["timeline"][0]["t_s"] == 0.0


COMPARED = {
    "saving": 2.31, "saving_low": 2.10, "saving_high": 2.54, "saving_significant": True,
    "saving_vs_best_fp32": 1.4, "saving_vs_best_fp32_low": 1.2, "saving_vs_best_fp32_high": 1.6,
    "best_fp32": "fp32 compiled", "verdict": "2.31x less J/image (2.10 to 2.54, 95 %)",
    "cv_j_per_image": 0.03, "noisy": True, "noise": ("external CPU 35 % of a core",),
    "payback_low": 40_000.0, "payback_high": 60_000.0,
}  # fmt: skip


def test_comparison_fields_round_trip_and_default_for_old_records() -> None:
    reference = variant("fp32 compiled", reference=True, saving=1.6, saving_low=1.5,
                        saving_high=1.7, saving_significant=True)  # fmt: skip
    record = full_record(
        variants=(variant(), reference, variant("quantize:int8", **QUANTIZED | COMPARED)),
        comparison={"method": "t on log ratios", "rounds": 5, "threads": 4},
        noisy=True, noise=["external CPU 35 % of a core"], threads=4,
    )  # fmt: skip
    again = TrialRecord.from_dict(json.loads(json.dumps(record.to_dict(), allow_nan=False)))
    assert again == record and again.noise == ("external CPU 35 % of a core",)
    assert again.variants[2].saving_significant is True and again.variants[2].noisy
    assert again.final_variant == again.variants[2]  # references are not the final variant
    assert again.comparison["rounds"] == 5 and again.threads == 4
    old = full_record()  # written before comparisons: every new field at its default
    assert (old.noisy, old.noise, old.threads, dict(old.comparison)) == (False, (), None, {})
    assert old.variants[1].saving is None and old.variants[1].saving_significant is None
    assert not old.variants[1].reference and old.variants[1].noise == ()
    with pytest.raises(ValueError, match="noisy must be true or false"):
        variant(noisy="yes")


@pytest.mark.parametrize(
    ("name", "category"),
    [("train", "training"), ("test", "training"), ("recipe/quantize:int8", "technique"),
     ("teacher_logits", "technique"), ("teacher", "technique"), ("inference", "measurement"),
     ("inference/baseline", "measurement"), ("compare/baseline/round0", "measurement")],
)  # fmt: skip
def test_phase_categories(name: str, category: str) -> None:
    assert phase_category(name) == category


def test_a_phase_without_a_category_is_refused() -> None:
    with pytest.raises(ValueError, match="phase 'warmup' has no category"):
        full_record(phases={"warmup": measurement("warmup")})


def test_the_phase_accounting_adds_up_exactly() -> None:
    """Every joule in exactly one place: the sum of all phases is the total."""
    energies = {"teacher": 3000.0, "teacher_logits": 55.5, "train": 1234.25, "test": 12.5,
                "recipe/prune:structured:0.5": 98.0, "recipe/quantize:int8": 40.75,
                "inference/prune:structured:0.5": 7.0, "inference": 3.5,
                "compare/baseline/round0": 2.25, "compare/quantize:int8/round0": 1.5}  # fmt: skip
    record = full_record(phases={n: measurement(n, e) for n, e in energies.items()})
    assert record.total_energy_j == sum(energies.values())
    assert record.training_energy_j == 1234.25 + 12.5
    assert record.technique_energy_j == 55.5 + 98.0 + 40.75  # the teacher's training apart
    assert record.teacher_energy_j == 3000.0
    assert record.measurement_energy_j == 7.0 + 3.5 + 2.25 + 1.5
    assert (
        record.training_energy_j + record.technique_energy_j + record.teacher_energy_j
        + record.measurement_energy_j == record.total_energy_j
    )  # fmt: skip
    assert TrialRecord.from_dict(record.to_dict()).total_energy_j == record.total_energy_j
    assert "total_energy_j" not in record.to_dict()  # computed, never stored
