"""ONNX Runtime beside PyTorch: J/image and latency of the same variants in both runtimes.

Run (results: docs/benchmarks.md):

    taskset -c 0 .venv/bin/python benchmarks/onnx_runtime.py --json docs/results/onnx_runtime.json

A ``small_cnn`` is trained on digits (3 epochs, seed 0), then each variant — fp32 eager,
``prune:structured:0.5`` (fine-tuned 1 epoch) and ``quantize:int8`` (PT2E, inductor) — is exported
with ``wattwise.optimize.onnx_export.export_onnx`` and measured beside its PyTorch self by the
comparison protocol (interleaved rounds, one thread each: ``CompareSettings(threads=1)``, ONNX
Runtime with ``intra_op_num_threads=1``), the same code ``wattwise optimize --onnx`` runs. Reported
per variant: top-1 agreement of the two runtimes, the ratio PyTorch J/image / ONNX Runtime J/image
with its 95 % interval, both latencies (median over rounds of the per-batch p50), and the noise
flags of the comparison.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wattwise.data import load_dataset
from wattwise.energy.monitor import EnergyMonitor
from wattwise.files import write_json_atomic
from wattwise.models import create_model
from wattwise.optimize.comparison import CompareSettings
from wattwise.optimize.onnx_export import ONNXRUNTIME, PYTORCH, export_onnx, onnx_beside_pytorch
from wattwise.optimize.recipe import RecipeSettings, run_recipe
from wattwise.train import TrainConfig
from wattwise.train.inference import inference_batch
from wattwise.train.loop import fit

SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}
RECIPES = ("baseline", "prune:structured:0.5", "quantize:int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = create_model(**SPEC)
    fit(model, data, TrainConfig(epochs=3, lr=0.05, batch_size=32, hflip=False, seed=0))
    settings = RecipeSettings(finetune_epochs=1, finetune_lr=0.02, inference_s=0, batch_size=32)
    compare = CompareSettings(threads=1, rounds=args.rounds, max_rounds=args.rounds)
    batch = inference_batch(data, args.batch_size)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, EnergyMonitor() as monitor:
        for recipe in RECIPES:
            started = time.perf_counter()
            result = run_recipe(model, data, recipe, settings=settings, model_spec=SPEC)
            final = result.final
            export = export_onnx(final, Path(tmp) / f"{len(rows)}.onnx", batch)
            compared = onnx_beside_pytorch(final, export, batch, settings=compare, monitor=monitor)
            stats = compared.comparison.variants
            ratio = compared.saving()
            row = {
                "variant": recipe,
                "accuracy": result.variants[-1].accuracy,
                "onnx_precision": export.precision,
                "top1_agreement": compared.top1_agreement,
                "max_abs_diff": compared.max_abs_diff,
                "pytorch_mj_per_image": stats[PYTORCH].j_per_image * 1e3,
                "onnxruntime_mj_per_image": stats[ONNXRUNTIME].j_per_image * 1e3,
                "pytorch_latency_p50_ms": stats[PYTORCH].latency_p50_ms,
                "onnxruntime_latency_p50_ms": stats[ONNXRUNTIME].latency_p50_ms,
                "saving": ratio.saving,
                "saving_low": ratio.low,
                "saving_high": ratio.high,
                "verdict": ratio.verdict,
                "noisy": compared.comparison.noisy,
                "noise": list(compared.comparison.noise),
                "provenance": stats[PYTORCH].energy_provenance,
                "seconds": time.perf_counter() - started,
            }
            rows.append(row)
            print(
                f"{recipe:<22} agree {row['top1_agreement']:.1%}  PyTorch "
                f"{row['pytorch_mj_per_image']:.4f} mJ/img {row['pytorch_latency_p50_ms']:.3f} ms"
                f"  ORT {row['onnxruntime_mj_per_image']:.4f} mJ/img "
                f"{row['onnxruntime_latency_p50_ms']:.3f} ms  ORT vs PyTorch: {ratio.verdict}"
                + ("  [noisy]" if row["noisy"] else ""),
                flush=True,
            )
    if args.json:
        write_json_atomic(
            args.json,
            {
                "command": "taskset -c 0 .venv/bin/python benchmarks/onnx_runtime.py",
                "cpu_affinity": sorted(os.sched_getaffinity(0)),
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "torch": torch.__version__,
                "onnxruntime": __import__("onnxruntime").__version__,
                "rows": rows,
            },
        )


if __name__ == "__main__":
    main()
