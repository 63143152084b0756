"""Are the comparison protocol's verdicts stable, quiet and under load? (issue 10)

Run (results: docs/benchmarks.md, "Verdict stability"):

    .venv/bin/python benchmarks/verdict_stability.py --json docs/results/verdict_stability.json
    .venv/bin/python benchmarks/verdict_stability.py --runs 2 --max-rounds 10  # shorter

The same comparison — ResNet-18 (small-input stem, 32 px, 3 channels, 10 classes, random weights:
speed and energy do not depend on the weights' values), batch 64, 2 threads: fp32 eager, fp32
compiled (inductor with freezing, the compiler path int8 takes), int8 PT2E (compiled),
structured 50 %, structured 50 % + int8, against the references fp32 eager and fp32 compiled —
is run ``--runs`` times on the machine as it is ("quiet") and ``--runs`` times with a competing
busy process (``yes > /dev/null``) on one core, alternating quiet and loaded runs. The busy
process is started outside this process's tree (double fork), so the comparison sees it as an
*other* process, as it would see another user's job. The variants are built once and reused.

The comparison runs at least ``--rounds`` rounds and adds rounds (up to ``--max-rounds``) until
every interval's half-width is within ``--target-half-width`` (the protocol's stop rule). The
ranking is :meth:`Comparison.ranks`: by J/image, variants whose difference is not significant
share a rank.

Goals (issue 10): the verdicts — significant or not, and the ranking (ties included) —
are identical in all runs; on the quiet machine every ratio interval's half-width is <= 10 %;
under load the comparison is flagged ``noisy`` in every run. The half-width of an interval
``[low, high]`` is reported as ``sqrt(high / low) - 1`` (the t interval is symmetric in log
space: ``saving x/÷ (1 + half-width)``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from wattwise.models import create_model
from wattwise.optimize import (
    ChannelPruneConfig,
    PreparedModel,
    StaticInt8Config,
    TechniqueContext,
    apply_technique,
)
from wattwise.optimize.compare import CompareSettings, Comparison, compare_variants, half_width
from wattwise.optimize.compiled import CompileConfig

warnings.filterwarnings("ignore", message="To copy construct from a tensor")

REFERENCES = ("fp32 eager", "fp32 compiled")


def build_variants(x: torch.Tensor, calib: list[torch.Tensor]) -> dict[str, PreparedModel]:
    """The five variants of one random-weight ResNet-18 (built once per process)."""
    torch.manual_seed(0)
    base = create_model("resnet18", num_classes=10, in_channels=3, input_size=32).eval()
    ctx = TechniqueContext(example_inputs=x, calibration=calib)
    pruned = apply_technique(copy.deepcopy(base), ChannelPruneConfig(ratio=0.5), ctx)
    return {
        "fp32 eager": PreparedModel(copy.deepcopy(base)),
        "fp32 compiled": apply_technique(copy.deepcopy(base), CompileConfig(), ctx),
        "int8": apply_technique(copy.deepcopy(base), StaticInt8Config(8), ctx),
        "structured 50%": pruned,
        "structured 50% + int8": apply_technique(copy.deepcopy(pruned), StaticInt8Config(8), ctx),
    }


@contextmanager
def busy_core(enabled: bool) -> Iterator[int | None]:
    """A ``yes > /dev/null`` on one core, outside this process's tree (the shell that starts it
    exits, so it is re-parented); stopped by its pid afterwards."""
    if not enabled:
        yield None
        return
    out = subprocess.run(
        ["sh", "-c", "yes > /dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True
    )
    pid = int(out.stdout.strip())
    time.sleep(0.5)  # let it take its core
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGTERM)


def summarize(result: Comparison, loaded: bool, wall_s: float) -> dict[str, Any]:
    """Verdicts, rankings, half-widths and flags of one run."""
    pairs = {}
    for r in result.ratios:
        label = "n.s." if not r.significant else ("less" if (r.saving or 0) > 1 else "more")
        pairs[f"{r.variant} vs {r.reference}"] = {
            "verdict": r.verdict,
            "label": label,
            "saving": r.saving,
            "low": r.low,
            "high": r.high,
            "half_width": half_width(r.low, r.high),
            "speedup": r.speedup,
            "speedup_half_width": half_width(r.speedup_low, r.speedup_high),
        }
    ranks = result.ranks()
    ranking = [
        [name for name in result.variants if ranks[name] == rank]
        for rank in sorted({r for r in ranks.values() if r is not None})
    ]
    return {
        "loaded": loaded,
        "wall_s": wall_s,
        "rounds": result.rounds,
        "stop": result.stop,
        "pairs": pairs,
        "ranks": ranks,
        "ranking": ranking,
        "noisy": result.noisy,
        "noise": list(result.noise),
        "external_cpu_cores": {k: v.external_cpu_cores for k, v in result.variants.items()},
        "cv_j_per_image": {k: v.cv_j_per_image for k, v in result.variants.items()},
        "j_per_image": {k: v.j_per_image for k, v in result.variants.items()},
        "energy_provenance": {k: v.energy_provenance for k, v in result.variants.items()},
        "comparison": result.to_dict(),
    }


def verdict_key(run: dict[str, Any]) -> tuple:
    return (tuple(sorted((k, p["label"]) for k, p in run["pairs"].items())), run["ranking"])


def overall(runs: list[dict[str, Any]]) -> dict[str, Any]:
    quiet = [r for r in runs if not r["loaded"]]
    loaded = [r for r in runs if r["loaded"]]

    def identical(group: list[dict[str, Any]]) -> bool:
        return len({json.dumps(verdict_key(r)) for r in group}) <= 1

    widths = [p["half_width"] for r in quiet for p in r["pairs"].values() if p["half_width"]]
    differing = sorted(
        {k for k in runs[0]["pairs"] if len({r["pairs"][k]["label"] for r in runs}) > 1}
    )
    return {
        "verdicts_identical_all_runs": identical(runs),
        "verdicts_identical_quiet_runs": identical(quiet),
        "verdicts_identical_loaded_runs": identical(loaded),
        "pairs_whose_verdict_changed": differing,
        "rankings_seen": sorted({json.dumps(r["ranking"]) for r in runs}),
        "rounds_quiet_runs": [r["rounds"] for r in quiet],
        "rounds_loaded_runs": [r["rounds"] for r in loaded],
        "quiet_max_half_width": max(widths) if widths else None,
        "quiet_median_half_width": sorted(widths)[len(widths) // 2] if widths else None,
        "quiet_half_width_le_10pct": bool(widths) and max(widths) <= 0.10,
        "quiet_runs_flagged_noisy": sum(r["noisy"] for r in quiet),
        "loaded_runs_flagged_noisy": sum(r["noisy"] for r in loaded),
        "noisy_in_every_loaded_run": bool(loaded) and all(r["noisy"] for r in loaded),
    }


def print_run(index: int, run: dict[str, Any]) -> None:
    kind = "loaded" if run["loaded"] else "quiet"
    print(f"\nrun {index} ({kind}, {run['wall_s']:.0f} s), noisy={run['noisy']}")
    for key, p in run["pairs"].items():
        hw = p["half_width"]
        width = f"  (half-width {hw * 100:.1f} %)" if hw is not None else ""
        print(f"  {key:40s} {p['verdict']}{width}")
    for line in run["noise"]:
        print(f"  noisy: {line}")
    print(f"  {run['rounds']} rounds ({run['stop']})")
    print("  ranking (ties: no significant difference): " + " > ".join(
        " = ".join(group) for group in run["ranking"]))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="quiet runs, and as many loaded")
    parser.add_argument("--rounds", type=int, default=10, help="at least this many rounds")
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--target-half-width", type=float, default=0.10, help="0: fixed rounds")
    parser.add_argument("--round-s", type=float, default=0.5)
    parser.add_argument("--min-batches", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    settings = CompareSettings(
        rounds=args.rounds,
        round_s=args.round_s,
        min_batches=args.min_batches,
        warmup_s=args.warmup_s,
        threads=args.threads,
        target_half_width=args.target_half_width or None,
        max_rounds=args.max_rounds,
    )
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    calib = [torch.randn(args.batch, 3, 32, 32) for _ in range(8)]
    started = time.perf_counter()
    with torch.inference_mode(False):
        variants = build_variants(x, calib)
    build_s = time.perf_counter() - started
    print(f"variants built in {build_s:.0f} s")
    runs = []
    for index in range(2 * args.runs):
        loaded = index % 2 == 1
        with busy_core(loaded):
            t0 = time.perf_counter()
            result = compare_variants(variants, x, references=REFERENCES, settings=settings)
            runs.append(summarize(result, loaded, time.perf_counter() - t0))
        print_run(index, runs[-1])
    summary = overall(runs)
    print("\nsummary:", json.dumps(summary, indent=2))
    if args.json:
        out = {
            "command": "benchmarks/verdict_stability.py "
            + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"
            ),
            "machine": {
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "load_average_at_end": os.getloadavg(),
            },
            "settings": {**vars(args)},
            "build_s": build_s,
            "summary": summary,
            "runs": runs,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
