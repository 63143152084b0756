"""Train once, compress many: the demo study's energy and time with and without reuse.

Run (results: docs/benchmarks.md):

    taskset -c 0 .venv/bin/python benchmarks/reuse.py --threads 1 --json docs/results/reuse.json

**With reuse** is the demo study (``studies/demo.yaml``, its recipe search left out) as a sweep
runs it: each seed's baseline trained once, every technique compressing those weights.
**Without reuse** runs each technique as a study of its own (fresh folders), so nothing is
shared and every technique trial trains its own baseline — what the sweep did before trained
baselines were shared. Both run in this process, one after the other, on the same machine.

Reported per arm: the trainings that ran, the training energy (the ``train`` and ``test``
phases of the trials that trained, teachers included: the study's ``training_energy_j`` +
``teacher_energy_j``), the study's energy over every phase, and the wall time. Goal (issue 11):
with reuse, the training energy is divided by about the number of techniques that share a
training (the demo's distillation trains its own student and teacher, so 5 of its 6
techniques share the baseline's training).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from wattwise.experiment import ResultsStore
from wattwise.experiment.demo import demo_config
from wattwise.experiment.sweep import run_study
from wattwise.files import write_json_atomic


def arm(configs: list[Any], root: Path) -> dict[str, Any]:
    """Runs each study into its own folder under ``root``; the sums over them."""
    out: dict[str, Any] = {"studies": len(configs), "trials": 0, "trainings": 0, "seconds": 0.0,
                           "energy_j": 0.0, "training_j": 0.0, "failed": 0}  # fmt: skip
    for i, config in enumerate(configs):
        start = time.perf_counter()
        summary = run_study(config, study_dir=root / f"{i}-{config.name}")
        out["seconds"] += time.perf_counter() - start
        with ResultsStore(summary.store_path, read_only=True) as store:
            records = store.records("ok")
        out["trials"] += summary.ok
        out["failed"] += summary.failed
        out["trainings"] += summary.trainings
        out["energy_j"] += summary.energy_j
        out["training_j"] += sum(r.training_energy_j + r.teacher_energy_j for r in records)
        took = time.perf_counter() - start
        print(f"  {config.name}: {summary.ok} ok, {summary.trainings} training(s), "
              f"{summary.energy_j:.0f} J, {took:.0f} s", flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, help="PyTorch threads (default: the demo's)")
    parser.add_argument("--json")
    args = parser.parse_args()
    demo = replace(demo_config(), seeds=tuple(args.seeds), recipe_search=None)
    if args.threads:
        demo = replace(demo, train={**demo.train, "num_threads": args.threads})
    with tempfile.TemporaryDirectory(prefix="wattwise-reuse-") as tmp:
        root = Path(tmp)
        print(f"with reuse: the demo study, seeds {args.seeds}", flush=True)
        shared = arm([demo], root / "with")
        alone = [replace(demo, name=f"demo-{i}", techniques=(t,))
                 for i, t in enumerate(demo.techniques)]  # fmt: skip
        print(f"without reuse: {len(alone)} studies of one technique each", flush=True)
        separate = arm(alone, root / "without")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "cpus": len(os.sched_getaffinity(0)),
        "seeds": args.seeds,
        "threads": demo.train["num_threads"],
        "techniques": list(demo.techniques),
        "with_reuse": shared,
        "without_reuse": separate,
        "training_ratio": separate["training_j"] / shared["training_j"],
        "energy_ratio": separate["energy_j"] / shared["energy_j"],
        "time_ratio": separate["seconds"] / shared["seconds"],
    }
    print("\n| | trainings | training energy | study energy | time |")
    print("|---|---:|---:|---:|---:|")
    for name, a in (("with reuse", shared), ("without reuse", separate)):
        print(f"| {name} | {a['trainings']} | {a['training_j']:.0f} J | {a['energy_j']:.0f} J | "
              f"{a['seconds']:.0f} s |")  # fmt: skip
    print(f"without / with: training energy {result['training_ratio']:.2f}x, study energy "
          f"{result['energy_ratio']:.2f}x, time {result['time_ratio']:.2f}x")  # fmt: skip
    if args.json:
        write_json_atomic(args.json, result)
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
