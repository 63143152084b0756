"""What measuring costs: training-loop overhead, sampler CPU, and one window's begin/end.

Run: ``.venv/bin/python benchmarks/monitor_overhead.py [--rounds 7] [--json out.json]``

1. Overhead on a training loop: the same loop bare and inside an EnergyMonitor (one window per
   epoch plus the 10 Hz sampler; and a second variant with one window per batch), interleaved
   A/B/C rounds, medians per variant; reported as monitored / bare wall time (goal <= 1.02).
2. Sampler cost at 10 Hz: CPU seconds the process spends while a window is open and the main
   thread sleeps, as a share of one core (goal <= 0.5 %).
3. One begin_window/end_window pair, median over many pairs (goal <= 1 ms on CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from wattwise.energy import EnergyMonitor, MonitorConfig


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def train_loop(steps: int, monitor: EnergyMonitor | None, per_batch: bool) -> float:
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 3, 32, 32)
    y = torch.randint(0, 10, (64,))
    start = time.perf_counter()
    if monitor is not None:
        monitor.begin_window("epoch")
    for i in range(steps):
        if per_batch and monitor is not None:
            monitor.begin_window(f"batch{i}")
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if per_batch and monitor is not None:
            monitor.end_window(f"batch{i}")
    if monitor is not None:
        monitor.end_window("epoch")
    return time.perf_counter() - start


def overhead(rounds: int, steps: int) -> dict[str, float]:
    monitor = EnergyMonitor(MonitorConfig(sample_hz=10))
    times: dict[str, list[float]] = {"bare": [], "monitored": [], "per_batch": []}
    train_loop(5, None, False)  # warm-up
    for _ in range(rounds):
        times["bare"].append(train_loop(steps, None, False))
        times["monitored"].append(train_loop(steps, monitor, False))
        times["per_batch"].append(train_loop(steps, monitor, True))
    monitor.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    # Per-round ratios are robust to drift between rounds; report their median.
    ratio = statistics.median(m / b for m, b in zip(times["monitored"], times["bare"], strict=True))
    ratio_pb = statistics.median(
        m / b for m, b in zip(times["per_batch"], times["bare"], strict=True)
    )
    return {
        "steps": steps,
        "rounds": rounds,
        "bare_s": med["bare"],
        "monitored_s": med["monitored"],
        "per_batch_s": med["per_batch"],
        "monitored_over_bare": ratio,
        "per_batch_over_bare": ratio_pb,
    }


def sampler_cost(seconds: float, hz: float = 10.0) -> dict[str, float]:
    def cpu() -> float:  # nanosecond-resolution process CPU time (os.times ticks at 10 ms)
        return time.process_time()

    # Baseline: the same sleep without a monitor.
    c0, w0 = cpu(), time.perf_counter()
    time.sleep(seconds)
    base = (cpu() - c0) / (time.perf_counter() - w0)
    monitor = EnergyMonitor(MonitorConfig(sample_hz=hz))
    monitor.begin_window("idle")
    c0, w0 = cpu(), time.perf_counter()
    time.sleep(seconds)
    used, wall = cpu() - c0, time.perf_counter() - w0
    m = monitor.end_window("idle")
    monitor.close()
    return {
        "hz": hz,
        "seconds": wall,
        "samples": m.samples,
        "core_share": used / wall - base,
        "cpu_ms_per_sample": used / max(m.samples, 1) * 1e3,
    }


def window_pair_cost(pairs: int) -> dict[str, float]:
    monitor = EnergyMonitor()
    costs = []
    for i in range(pairs):
        t0 = time.perf_counter()
        monitor.begin_window(f"w{i}")
        monitor.end_window(f"w{i}")
        costs.append(time.perf_counter() - t0)
    monitor.close()
    return {
        "pairs": pairs,
        "median_ms": statistics.median(costs) * 1e3,
        "p95_ms": statistics.quantiles(costs, n=20)[-1] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--sampler-seconds", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {
        "torch_threads": torch.get_num_threads(),
        "window_pair": window_pair_cost(args.pairs),
        "sampler": sampler_cost(args.sampler_seconds),
        "training_overhead": overhead(args.rounds, args.steps),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
