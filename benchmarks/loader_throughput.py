"""Is training data-bound? TensorLoader throughput against the model's training-step throughput.

Run: ``.venv/bin/python benchmarks/loader_throughput.py [--rounds 5] [--json out.json]``

For each case, in interleaved rounds (loader, model, loader, model, ...; medians per variant,
because wall times on the shared 2-core VM drift up to 2.5x between runs):

- **loader**: images/s of one full epoch of :class:`wattwise.data.TensorLoader` with the same
  augmentation (random crop, padding = image size / 8; flips where ``fit`` would use them) and
  normalization that :func:`wattwise.train.fit` uses, and nothing else;
- **model**: images/s of training steps (forward, cross-entropy, backward, SGD step) of the model
  on pre-made batches, so no data work is counted.

Cases: ``small_cnn`` on digits (1x8x8, batch 32 as in ``wattwise demo``) and ``resnet18`` with
the small-input stem on synthetic CIFAR-shaped data (3x32x32, batch 64). The ratio
loader / model says how much faster the pipeline is than the work it feeds (goal >= 0.9; a ratio
far above 1 means the loader costs a small share of an epoch: about model/loader of it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wattwise.data import AugmentConfig, DatasetSplits, TensorLoader, load_dataset
from wattwise.models import create_model


@dataclass
class Case:
    name: str
    model: str
    data: DatasetSplits
    batch_size: int
    hflip: bool
    model_steps: int  # training steps per round


def loader_images_per_s(case: Case, seed: int) -> float:
    info = case.data.info
    loader = TensorLoader(
        case.data.train,
        case.batch_size,
        shuffle=True,
        seed=seed,
        augment=AugmentConfig(crop_padding=max(1, info.image_size // 8), hflip=case.hflip),
        mean=info.mean,
        std=info.std,
    )
    start = time.perf_counter()
    images = 0
    for x, _ in loader:
        images += x.shape[0]
    return images / (time.perf_counter() - start)


def make_step(case: Case) -> tuple[nn.Module, torch.optim.Optimizer, list[Any]]:
    info = case.data.info
    torch.manual_seed(0)
    model = create_model(
        case.model,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        input_size=info.image_size,
    ).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loader = TensorLoader.from_splits(case.data, "train", case.batch_size, shuffle=True)
    batches = [b for _, b in zip(range(4), loader, strict=False)]
    return model, optimizer, batches


def model_images_per_s(case: Case, model: nn.Module, optimizer: Any, batches: list[Any]) -> float:
    start = time.perf_counter()
    images = 0
    for i in range(case.model_steps):
        x, y = batches[i % len(batches)]
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += x.shape[0]
    return images / (time.perf_counter() - start)


def run_case(case: Case, rounds: int) -> dict[str, Any]:
    model, optimizer, batches = make_step(case)
    loader_images_per_s(case, seed=99)  # warm-up: allocator, first-touch of the split
    model_images_per_s(case, model, optimizer, batches)
    loader_rates, model_rates = [], []
    for r in range(rounds):
        loader_rates.append(loader_images_per_s(case, seed=r))
        model_rates.append(model_images_per_s(case, model, optimizer, batches))
    loader_median = statistics.median(loader_rates)
    model_median = statistics.median(model_rates)
    info = case.data.info
    return {
        "case": case.name,
        "model": case.model,
        "dataset": info.name,
        "input": [info.in_channels, info.image_size, info.image_size],
        "train_images": len(case.data.train),
        "batch_size": case.batch_size,
        "rounds": rounds,
        "loader_images_per_s": loader_median,
        "model_images_per_s": model_median,
        "ratio_loader_over_model": loader_median / model_median,
        "ratio_per_round_median": statistics.median(
            a / b for a, b in zip(loader_rates, model_rates, strict=True)
        ),
        "loader_share_of_epoch": model_median / (loader_median + model_median),
        "loader_images_per_s_all": loader_rates,
        "model_images_per_s_all": model_rates,
        "goal_ratio_at_least": 0.9,
        "meets_goal": loader_median / model_median >= 0.9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="PyTorch CPU threads (default: PyTorch's)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    digits = load_dataset("digits")
    cifar_like = load_dataset("synthetic", num_samples=6000, num_classes=10, channels=3)
    cases = [
        Case("small_cnn / digits 8 px", "small_cnn", digits, 32, hflip=False, model_steps=40),
        Case("resnet18 / synthetic 32 px", "resnet18", cifar_like, 64, hflip=True, model_steps=3),
    ]
    load_before = os.getloadavg()
    results = [run_case(case, args.rounds) for case in cases]
    report = {
        "benchmark": "loader_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "results": results,
    }
    print(f"{'case':28} {'loader img/s':>13} {'model img/s':>12} {'ratio':>8} {'loader %':>9}")
    for r in results:
        print(
            f"{r['case']:28} {r['loader_images_per_s']:13,.0f} {r['model_images_per_s']:12,.0f} "
            f"{r['ratio_loader_over_model']:8.1f} {100 * r['loader_share_of_epoch']:8.2f}%"
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
