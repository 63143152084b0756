"""Hand-made TrialRecords and results stores with known numbers (no training, no torch).

A module with a unique name (not conftest) so that tests import it without clashing with the
conftest.py of other test folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattwise.energy.base import CarbonEstimate, ComponentEnergy, Measurement, Provenance
from wattwise.experiment import MemoryCap, ResultsStore, TrialRecord, VariantRecord

TDP_DETAIL = (
    "TDP 65 W (table) / 8 threads = 8.12 W per busy CPU, for 'Test CPU', x CPU seconds of the "
    "process tree"
)
DRAM_DETAIL = "0.375 W per GiB x resident memory of the process tree, integrated over time"


def measurement(name: str, energy_j: float, *, measured: bool = False) -> Measurement:
    """A phase measurement: CPU + DRAM (estimated, or RAPL-measured), GPU unavailable."""
    if measured:
        cpu = Provenance.measured("rapl", "intel-rapl:0 (package-0)")
        dram = Provenance.measured("rapl", "intel-rapl:0:0 (dram)")
    else:
        cpu = Provenance.estimated("tdp", TDP_DETAIL)
        dram = Provenance.estimated("dram-rss", DRAM_DETAIL)
    return Measurement(
        name=name,
        start_unix_s=1.7e9,
        duration_s=10.0,
        components=(
            ComponentEnergy("cpu", energy_j * 0.9, cpu),
            ComponentEnergy("dram", energy_j * 0.1, dram),
            ComponentEnergy("gpu", None, Provenance.unavailable("NVML: no NVIDIA driver")),
        ),
        peak_rss_bytes=300 * 2**20,
        carbon=CarbonEstimate(energy_j / 3.6e6 * 380, 380, 1.0, "country DEU"),
    )


def variant(
    step: str,
    accuracy: float,
    j_per_image: float,
    *,
    applied: str | None = None,
    optimization_energy_j: float = 0.0,
    payback_inferences: float | None = 0.0,
) -> VariantRecord:
    """A measured variant: ``step`` applied on top of the baseline (``applied`` defaults to it)."""
    return VariantRecord(
        step=step,
        applied=applied or step,
        accuracy=accuracy,
        params=20_000,
        macs=150_000,
        model_bytes=80_000,
        model_bytes_note="bytes on disk (shapes + state_dict)",
        latency_p50_ms=1.5,
        latency_p95_ms=2.0,
        images_per_s=5000.0,
        inference_energy_per_image_j=j_per_image,
        inference_energy_provenance="estimated",
        peak_rss_bytes=300 * 2**20,
        step_energy_j=optimization_energy_j,
        step_duration_s=4.0 if step != "baseline" else 0.0,
        optimization_energy_j=optimization_energy_j,
        payback_inferences=payback_inferences,
    )


def make_record(
    trial_id: str,
    *,
    technique: str = "baseline",
    accuracy: float = 0.9,
    train_energy_j: float = 1000.0,
    j_per_image: float | None = 0.002,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 0.01,
    epochs: int = 3,
    dataset: str = "digits",
    model: str = "small_cnn",
    num_classes: int = 10,
    measured: bool = False,
    variants: tuple[VariantRecord, ...] = (),
    study: str = "analysis-test",
    **changes: Any,
) -> TrialRecord:
    """An ``ok`` record with consistent phases, history, details and environment."""
    spec = {
        "study": study, "dataset": dataset, "model": model, "technique": technique,
        "batch_size": batch_size, "lr": lr, "epochs": epochs, "seed": seed,
        "gpu_memory_gib": None,
    }  # fmt: skip
    prov = "measured" if measured else "estimated"
    per_epoch = train_energy_j / epochs
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_accuracy": accuracy * e / epochs,
            "val_loss": 1.1 / e,
            "val_accuracy": accuracy * (0.8 + 0.2 * e / epochs),
            "energy_j": per_epoch,
            "energy_provenance": prov,
        }
        for e in range(1, epochs + 1)
    ]
    phases = {"train": measurement("train", train_energy_j, measured=measured)}
    for v in variants:  # what each step cost: a technique phase
        if v.step_energy_j:
            phases[f"recipe/{v.step}"] = measurement(
                f"recipe/{v.step}", v.step_energy_j, measured=measured
            )
    if j_per_image is not None:
        phases["inference"] = measurement("inference", j_per_image * 5000, measured=measured)
    values: dict[str, Any] = {
        "trial_id": trial_id,
        "study": study,
        "spec": spec,
        "status": "ok",
        "accuracy": accuracy,
        "train_energy_j": train_energy_j,
        "train_energy_provenance": prov,
        "inference_energy_per_image_j": j_per_image,
        "inference_energy_provenance": prov if j_per_image is not None else None,
        "duration_s": 12.0,
        "peak_rss_bytes": 300 * 2**20,
        "params": 20_000,
        "model_bytes": 80_000,
        "phases": phases,
        "history": tuple(history),
        "variants": variants,
        "memory_cap": MemoryCap(None, False, "no cap"),
        "details": {"dataset": {"name": dataset, "num_classes": num_classes, "test_images": 360}},
        "environment": {
            "python": "3.11.9",
            "torch": "2.11.0",
            "device": "cpu",
            "cpu_model": "Test CPU",
            "energy_components": ["cpu", "dram"],
        },
    }
    return TrialRecord(**(values | changes))


def grid_records(*, measured: bool = False) -> list[TrialRecord]:
    """3 techniques x 2 batch sizes x 2 learning rates x 3 seeds on one dataset × model."""
    effects = {  # technique -> (accuracy, training J, J/image)
        "baseline": (0.95, 1000.0, 0.0020),
        "prune:structured:0.5": (0.945, 1100.0, 0.0012),
        "quantize:int8": (0.90, 1050.0, 0.0008),
    }
    records = []
    for technique, (acc, energy, per_image) in effects.items():
        for batch_size in (32, 64):
            for lr in (0.01, 0.1):
                for seed in range(3):
                    wobble = 0.004 * (seed - 1) + (0.002 if lr == 0.1 else 0.0)
                    variants: tuple[VariantRecord, ...] = ()
                    if technique != "baseline":
                        variants = (
                            variant("baseline", 0.95, 0.002),
                            variant(technique, acc, per_image, optimization_energy_j=40.0,
                                    payback_inferences=40.0 / (0.002 - per_image)),
                        )  # fmt: skip
                    records.append(
                        make_record(
                            f"{technique[:5]}-{batch_size}-{lr}-{seed}",
                            technique=technique,
                            accuracy=acc + wobble,
                            train_energy_j=energy * (64 / batch_size) ** 0.5 * (1 + 0.01 * seed),
                            j_per_image=per_image * (1 + 0.02 * seed),
                            seed=seed,
                            batch_size=batch_size,
                            lr=lr,
                            measured=measured,
                            variants=variants,
                        )
                    )
    return records


def write_store(path: Path, records: list[TrialRecord], *, study: str = "analysis-test") -> Path:
    with ResultsStore(path, study=study, config_yaml=f"name: {study}\n") as store:
        for record in records:
            store.finish_trial(record)
    return path


#: A study name that would run script if it were not escaped.
XSS_STUDY = "xss<script>alert('study')</script>"
XSS_REASON = "<script>alert('reason')</script> diverged at epoch 2"


def write_study(
    folder: Path, records: list[TrialRecord], *, study: str, study_yaml: str | None = None
) -> Path:
    """A study folder whose store holds ``records`` plus two failed trials (and ``study.yaml``
    with ``study_yaml`` when given)."""
    path = write_store(folder / "results.sqlite", records, study=study)
    if study_yaml is not None:
        (folder / "study.yaml").write_text(study_yaml, encoding="utf-8")
    with ResultsStore(path) as store:
        spec = {"dataset": "digits", "model": "small_cnn", "technique": "baseline"}
        store.fail_trial("oom-1", "out of memory at batch 512", spec=spec | {"batch_size": 512})
        store.fail_trial("xss-1", XSS_REASON, spec=spec | {"technique": "<b>evil</b>"})
    return folder
