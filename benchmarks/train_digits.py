"""What training on digits costs on this CPU: accuracy, time and energy (with provenance).

Run: ``.venv/bin/python benchmarks/train_digits.py [--threads N] [--skip-32px] [--json out.json]``

Each row is one :func:`wattwise.experiment.runner.run_trial` (technique ``baseline``: what
``wattwise train`` runs, without the run folder) on scikit-learn's
digits (1797 8x8 grey images: 1295 train / 143 val / 359 test, seed 0):

- ``small_cnn`` at 8 px, fp32, the ``wattwise demo`` settings (8 epochs, batch 32, lr 0.05,
  SGD + Nesterov, cosine, crop augmentation without flips);
- ``small_cnn`` at 8 px with bf16 autocast (same settings);
- ``resnet18`` (small-input stem: 3x3 stride-1 conv, no max-pool) at 8 px, 5 epochs;
- ``resnet18`` at 32 px (digits upsampled bilinearly), 3 epochs (``--skip-32px`` leaves it out).

Reported per row: test accuracy, best validation accuracy, training time and energy (the ``fit``
window: training and validation passes) with its provenance and per-component split, accuracy
per kJ, inference J/image, images/s and latency p50/p95 (batch 64, 2 s window), peak RSS,
parameters and MACs. Each row is a single run, not interleaved: compare energies and times
between rows only roughly (timings on this shared VM drift up to 2.5x between runs). On a
machine without RAPL/NVML the CPU and DRAM energies are estimates (``estimated:tdp``,
``estimated:dram-rss``), never measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch

from wattwise.config import MeasurementSettings
from wattwise.experiment.runner import environment, run_trial
from wattwise.experiment.spec import TrialSpec
from wattwise.train import TrainConfig

DEMO = {"batch_size": 32, "lr": 0.05, "hflip": False}


def variants(skip_32px: bool, threads: int | None) -> list[tuple[str, TrialSpec]]:
    def spec(model: str, image_size: int | None = None, **kw: Any) -> TrialSpec:
        train = TrainConfig(**{**DEMO, "num_threads": threads, "device": "cpu", **kw})
        return TrialSpec(
            study="train_digits",
            dataset="digits",
            model=model,
            technique="baseline",
            train=train,
            measurement=MeasurementSettings(inference_s=2.0),
            image_size=image_size,
            width=1.0,
            weights=None,
            val_fraction=0.1,
        )

    rows = [
        ("small_cnn 8px fp32", spec("small_cnn", epochs=8)),
        ("small_cnn 8px bf16", spec("small_cnn", epochs=8, precision="bf16")),
        ("resnet18 8px fp32", spec("resnet18", epochs=5)),
    ]
    if not skip_32px:
        rows.append(("resnet18 32px fp32", spec("resnet18", image_size=32, epochs=3)))
    return rows


def run_one(name: str, spec: TrialSpec) -> dict[str, Any]:
    started = time.perf_counter()
    r = run_trial(spec)
    wall = time.perf_counter() - started
    fit, train = r.phases["train"], r.details["train"]
    inference = r.phases.get("inference")
    return {
        "run": name,
        "model": spec.model,
        "image_size": r.details["dataset"]["image_size"],
        "precision": spec.precision,
        "epochs": len(r.history),
        "status": r.status,
        "test_accuracy": r.accuracy,
        "best_val_accuracy": train["best_val_accuracy"],
        "train_duration_s": fit["duration_s"],
        "train_energy_j": fit["total_energy_j"],
        "train_energy_provenance": fit["total_provenance"],
        "train_components": {
            c["component"]: {"energy_j": c["energy_j"], "provenance": c["provenance"]["label"]}
            for c in fit["components"]
            if c.get("nested_in") is None
        },
        "energy_per_epoch_j": [round(e["energy_j"], 3) for e in r.history],
        "duration_per_epoch_s": [round(e["duration_s"], 3) for e in r.history],
        "accuracy_per_kj_train": r.accuracy_per_kj_train,
        "peak_rss_bytes": fit["peak_rss_bytes"],
        "params": r.params,
        "macs_per_image": r.macs,
        "inference_batch_size": spec.measurement.inference_batch_size,
        "inference_energy_per_image_j": r.inference_energy_per_image_j,
        "inference_images_per_s": r.images_per_s,
        "inference_latency_p50_ms": r.latency_p50_ms,
        "inference_latency_p95_ms": r.latency_p95_ms,
        "inference_energy_provenance": r.inference_energy_provenance,
        "inference_duration_s": inference["duration_s"] if inference else None,
        "threads": spec.train.num_threads or torch.get_num_threads(),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="PyTorch CPU threads (default: PyTorch's)")
    parser.add_argument("--skip-32px", action="store_true", help="leave out resnet18 at 32 px")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for name, spec in variants(args.skip_32px, args.threads):
        rows.append(run_one(name, spec))
        print(f"done: {name} ({rows[-1]['wall_s']:.0f} s)", flush=True)
    report = {
        "benchmark": "train_digits",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": args.threads or torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "environment": environment(),
        "results": rows,
    }
    header = (
        f"{'run':20} {'ep':>2} {'test acc':>8} {'train s':>8} {'train J':>8} {'source':>9} "
        f"{'acc/kJ':>7} {'inf mJ/img':>10} {'inf img/s':>9} {'peak RSS':>9}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['run']:20} {r['epochs']:>2} {100 * (r['test_accuracy'] or 0):7.1f}% "
            f"{r['train_duration_s']:8.1f} {r['train_energy_j']:8.1f} "
            f"{r['train_energy_provenance']:>9} {r['accuracy_per_kj_train'] or 0:7.1f} "
            f"{1e3 * (r['inference_energy_per_image_j'] or 0):10.3f} "
            f"{r['inference_images_per_s'] or 0:9,.0f} {r['peak_rss_bytes'] / 2**30:7.2f} GiB"
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
