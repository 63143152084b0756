"""The digits recipe benchmark: how much inference energy per image each recipe saves on this CPU.

Run (about 5 minutes on 2 cores; results: docs/benchmarks.md):

    .venv/bin/python benchmarks/recipe_digits.py --json docs/results/recipe_digits.json

Trains ResNet-18 (small-input stem) on scikit-learn's digits (8 px, offline), then applies each
recipe with :func:`wattwise.optimize.run_recipe` (pruning is fine-tuned, 3 epochs by default;
int8 is calibrated on 16 training batches), which measures every variant by the same protocol: test
accuracy, J/image, images/s, and the payback of the energy spent optimizing. Afterwards the
final variants are measured again **interleaved** (A B C ... per round, medians over rounds),
because timings drift on this VM; the reported saving is the ratio of those medians.

Goal (issue): the best recipe needs >= 8x less inference energy per image than the fp32
baseline at <= 1 point of accuracy lost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from wattwise.data import load_dataset
from wattwise.data.loader import TensorLoader
from wattwise.energy import EnergyMonitor
from wattwise.models import create_model
from wattwise.optimize import RecipeSettings, run_recipe
from wattwise.train import TrainConfig, fit

RECIPES = (
    "channels_last",
    "quantize:int8",
    "prune:structured:0.3,quantize:int8",
    "prune:structured:0.4,quantize:int8",
    "prune:structured:0.5,quantize:int8",
    "prune:structured:0.5,channels_last",
)


def interleaved(runners: dict[str, Any], x: torch.Tensor, rounds: int, batches: int) -> dict:
    monitor = EnergyMonitor()
    out: dict[str, dict[str, list[float]]] = {k: {"s": [], "j": []} for k in runners}
    with torch.inference_mode():
        for run in runners.values():
            for _ in range(3):
                run(x)
        for r in range(rounds):
            for key, run in runners.items():
                with monitor.window(f"{key}/{r}") as w:
                    t0 = time.perf_counter()
                    for _ in range(batches):
                        run(x)
                    elapsed = time.perf_counter() - t0
                out[key]["s"].append(elapsed / batches)
                out[key]["j"].append(w.measurement.total_energy_j / (batches * x.shape[0]))
    monitor.close()
    return {
        k: {"batch_s": statistics.median(v["s"]), "j": statistics.median(v["j"])}
        for k, v in out.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_dataset("digits")
    info = data.info
    spec = {
        "name": args.model,
        "num_classes": info.num_classes,
        "in_channels": 1,
        "input_size": info.image_size,
    }
    model = create_model(**spec)
    trained = fit(
        model,
        data,
        TrainConfig(epochs=args.epochs, lr=0.05, batch_size=64, hflip=False, device="cpu"),
    )
    print(
        f"baseline {args.model}: test accuracy {trained.test_accuracy:.4f}, training "
        f"{trained.fit.total_energy_j:.1f} J ({trained.fit.total_provenance})"
    )
    settings = RecipeSettings(
        finetune_epochs=args.finetune_epochs, finetune_lr=0.01, inference_s=2.0
    )
    results: dict[str, Any] = {
        "model": args.model,
        "baseline_accuracy": trained.test_accuracy,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "recipes": {},
    }
    finals: dict[str, Any] = {}
    for recipe in RECIPES:
        res = run_recipe(model, data, recipe, settings=settings, model_spec=spec)
        last = res.variants[-1]
        results["recipes"][recipe] = {
            "accuracy": last.accuracy,
            "accuracy_lost_points": (res.variants[0].accuracy - last.accuracy) * 100,
            "params": last.params,
            "macs": last.macs,
            "model_bytes": last.model_bytes,
            "optimization_energy_j": last.optimization_energy_j,
            "payback_inferences": last.payback_inferences,
            "recipe_run_j_per_image": last.inference_energy_per_image_j,
        }
        finals[recipe] = res.final
    x = next(iter(TensorLoader(data.test, 64, mean=info.mean, std=info.std)))[0]
    runners = {"fp32 baseline": model.eval(), **{r: finals[r] for r in RECIPES}}
    timing = interleaved(runners, x, args.rounds, args.batches)
    base = timing["fp32 baseline"]
    print("\n| recipe | accuracy | lost (pt) | mJ/image | saving | speedup | payback |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| fp32 baseline | {trained.test_accuracy:.2%} | 0 | {base['j'] * 1e3:.4f} | 1.00x | "
        "1.00x | - |"
    )
    for recipe in RECIPES:
        row = results["recipes"][recipe]
        t = timing[recipe]
        row["interleaved_j_per_image"] = t["j"]
        row["energy_saving"] = base["j"] / t["j"]
        row["speedup"] = base["batch_s"] / t["batch_s"]
        payback = row["payback_inferences"]
        print(
            f"| {recipe} | {row['accuracy']:.2%} | {row['accuracy_lost_points']:.2f} | "
            f"{t['j'] * 1e3:.4f} | {row['energy_saving']:.2f}x | {row['speedup']:.2f}x | "
            f"{'never' if payback is None else f'{payback:,.0f}'} |"
        )
    ok = [r for r in results["recipes"].values() if r["accuracy_lost_points"] <= 1.0]
    best = max(ok, key=lambda r: r["energy_saving"]) if ok else None
    results["best_saving_within_1pt"] = best["energy_saving"] if best else None
    print(f"\nbest saving within 1 point: {results['best_saving_within_1pt']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
