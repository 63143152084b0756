"""Recipe search against the exhaustive grid on the same trained checkpoint.

Run (about 35 minutes on one core; results: docs/benchmarks.md):

    taskset -c 0 .venv/bin/python benchmarks/search_vs_grid.py \
        --json docs/results/search_vs_grid.json

The checkpoint is the demo's (``studies/demo.yaml``: ResNet-18 at width 0.25, digits at 32 px,
5 epochs, seed 0), trained here once. Then, on those weights, with the demo's measurement
settings (each candidate against its own fp32 eager baseline by the comparison protocol,
fine-tuning at the study's learning rate):

- ``grid``: every point of the issue's grid — structured pruning ratio 0.1 to 0.9 in steps of
  0.1 x int8 on/off x fine-tuning 1 or 2 epochs, plus int8 alone: 37 candidates
  (:func:`wattwise.optimize.recipe_search.search_recipes` with ``sampler="grid"``);
- each search sampler in ``--samplers`` (default ``tpe gp``) with ``--budget`` candidates
  (default 8, under 25 % of the grid's candidates) on the same space, the ratio continuous.

A candidate's figure of merit is its **saving** (baseline J/image / candidate J/image, measured
interleaved within its own comparison, so it is comparable across candidates measured minutes
apart) under the floor: accuracy >= baseline - 1 point. Goal (issue 11): the search's best
feasible saving within 10 % of the grid's best feasible saving (``best_fraction`` >= 0.9),
spending <= 25 % of the grid's energy (``energy_fraction``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from wattwise.experiment.demo import demo_config
from wattwise.experiment.runner import load_trial_data, recipe_settings
from wattwise.experiment.spec import expand_grid
from wattwise.experiment.teachers import model_spec_for
from wattwise.files import write_json_atomic
from wattwise.models import create_model
from wattwise.optimize.recipe_search import SearchResult, search_recipes
from wattwise.recipe_space import RecipeSearchSettings, SearchSpace
from wattwise.train import fit

SPACE = SearchSpace(ratio_low=0.1, ratio_high=0.9, ratio_step=0.1, importances=("magnitude",),
                    steps=(1,), finetune_epochs=(1, 2), finetune_by=("labels",),
                    int8=("none", "static"), channels_last=False)  # fmt: skip


def best(result: SearchResult) -> dict[str, Any] | None:
    """The feasible candidate with the largest saving (point estimate), or ``None``."""
    feasible = [c for c in result.candidates if c.feasible and c.saving]
    if not feasible:
        return None
    c = max(feasible, key=lambda c: c.saving)
    return {"recipe": c.recipe, "finetune_epochs": c.finetune_epochs, "saving": c.saving,
            "low": c.low, "high": c.high, "accuracy": c.accuracy}  # fmt: skip


def summary(result: SearchResult, seconds: float) -> dict[str, Any]:
    chosen = result.candidates[result.chosen] if result.chosen is not None else None
    return {
        "sampler": result.sampler,
        "baseline_accuracy": result.baseline_accuracy,
        "candidates": len(result.candidates),
        "energy_j": result.energy_j,
        "seconds": seconds,
        "best_feasible": best(result),
        "chosen": chosen.to_dict() if chosen is not None else None,
        "message": result.message,
        "all": [c.to_dict() for c in result.candidates],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "gp"])
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--floor", type=float, default=1.0)
    parser.add_argument("--out", default="/tmp/search_vs_grid", help="the searches' SQLite files")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    parser.add_argument("--fresh-grid", action="store_true",
                        help="measure the grid again (default: continue it in --out)")  # fmt: skip
    parser.add_argument("--json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    config = demo_config()
    spec = next(s for s in expand_grid(config) if s.technique == "baseline")
    data = load_trial_data(spec)
    model_spec = model_spec_for(spec.model, data.info, spec.width)
    torch.manual_seed(spec.seed)
    model = create_model(**model_spec)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    trained = fit(model, data, replace(spec.train, num_threads=args.threads))
    print(f"checkpoint: {spec.model} width {spec.width:g} on {spec.dataset} at "
          f"{spec.image_size} px, test accuracy {trained.test_accuracy:.2%}, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    rs = replace(recipe_settings(spec, (), "cpu"), threads=args.threads)

    def run(sampler: str, budget: int, resume: bool = False) -> dict[str, Any]:
        start = time.perf_counter()

        def tell(c: Any, i: int, n: int) -> None:
            saving = f"{c.saving:.2f}x" if c.saving else "-"
            print(f"  {sampler} [{i}/{n}] {c.recipe} ft={c.finetune_epochs}: acc "
                  f"{(c.accuracy or 0):.2%} saving {saving} feasible={c.feasible} "
                  f"{c.energy_j:.0f} J", flush=True)  # fmt: skip

        result = search_recipes(
            model, data,
            settings=RecipeSearchSettings(budget=budget, floor_points=args.floor, sampler=sampler),
            space=SPACE, recipe_settings=rs, model_spec=model_spec,
            storage=out / f"{sampler}.sqlite", on_candidate=tell, resume=resume,
        )  # fmt: skip
        return summary(result, time.perf_counter() - start)

    grid_size = len(SPACE.grid())
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "baseline_accuracy": trained.test_accuracy,
        "floor_points": args.floor,
        "grid": run("grid", grid_size, resume=not args.fresh_grid),
        "searches": {},
    }
    grid = results["grid"]
    if abs((grid["baseline_accuracy"] or 0) - trained.test_accuracy) > 1e-9:
        raise SystemExit("the stored grid was measured on other weights: rerun with --fresh-grid")
    for sampler in args.samplers:
        s = run(sampler, args.budget)
        if s["best_feasible"] and grid["best_feasible"]:
            s["best_fraction"] = s["best_feasible"]["saving"] / grid["best_feasible"]["saving"]
        s["energy_fraction"] = s["energy_j"] / grid["energy_j"]
        results["searches"][sampler] = s

    print(f"\ngrid: {grid['candidates']} candidates, {grid['energy_j']:.0f} J, "
          f"{grid['seconds']:.0f} s; best feasible {grid['best_feasible']}")  # fmt: skip
    print("| sampler | candidates | best feasible | saving | of grid best | energy | of grid |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, s in results["searches"].items():
        b = s["best_feasible"] or {}
        print(f"| {name} | {s['candidates']} | {b.get('recipe', '-')} ft={b.get('finetune_epochs')}"
              f" | {b.get('saving', 0):.2f}x | {s.get('best_fraction', 0):.0%} | "
              f"{s['energy_j']:.0f} J | {s['energy_fraction']:.0%} |")  # fmt: skip
    if args.json:
        write_json_atomic(args.json, results)
        print(f"written to {args.json}")
    print(json.dumps({k: v.get("best_fraction") for k, v in results["searches"].items()}))


if __name__ == "__main__":
    main()
