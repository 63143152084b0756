"""What each compression technique really saves on this CPU: latency, images/s and J/image.

Run (about 10 minutes on 2 cores; results: docs/benchmarks.md):

    .venv/bin/python benchmarks/compression_cpu.py --json docs/results/compression_cpu.json
    .venv/bin/python benchmarks/compression_cpu.py --models resnet18 --onnx   # + ONNX Runtime peer

For resnet18, mobilenet_v2 and efficientnet_b0 (small-input stems, 32 px, 3 channels, 10
classes, batch 64, random weights — speed and energy do not depend on the weights' values):
dense fp32 eager, channels_last, bf16 autocast (+ channels_last), mask pruning 50 / 90 %,
structured channel pruning 30 / 50 %, int8 PT2E (compiled), structured 50 % + int8.

Timings drift up to 2.5x on this VM, so variants are measured **interleaved**: every round runs
each variant for ``--batches`` batches inside its own EnergyMonitor window; the reported figure
is the median over rounds, and speedups are ratios of medians against fp32 eager. Energy is
whatever the monitor measures here (on a VM without RAPL: the labelled CPU-time estimate).

``--onnx`` adds the peer: the same ResNet-18 exported to ONNX and statically quantized to int8 by
ONNX Runtime (QDQ, calibrated on the same batches), run by an ORT session (needs
``pip install onnxruntime onnx onnxscript``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wattwise.energy import EnergyMonitor
from wattwise.models import create_model
from wattwise.optimize import (
    AutocastConfig,
    ChannelPruneConfig,
    ChannelsLastConfig,
    MaskPruneConfig,
    PreparedModel,
    StaticInt8Config,
    TechniqueContext,
    apply_technique,
)

warnings.filterwarnings("ignore", message="To copy construct from a tensor")


def variants(name: str, x: torch.Tensor, calib: list[torch.Tensor]) -> dict[str, Any]:
    torch.manual_seed(0)
    base = create_model(name, num_classes=10, in_channels=3, input_size=32).eval()
    ctx = TechniqueContext(example_inputs=x, calibration=calib)
    out: dict[str, Any] = {"fp32 eager": PreparedModel(copy.deepcopy(base))}
    out["channels_last"] = apply_technique(copy.deepcopy(base), ChannelsLastConfig(), ctx)
    out["bf16 + channels_last"] = apply_technique(
        apply_technique(copy.deepcopy(base), ChannelsLastConfig()), AutocastConfig("bf16"), ctx
    )
    for amount in (0.5, 0.9):
        out[f"mask {amount:.0%}"] = apply_technique(
            copy.deepcopy(base), MaskPruneConfig(amount, permanent=True), ctx
        )
    for ratio in (0.3, 0.5):
        out[f"structured {ratio:.0%}"] = apply_technique(
            copy.deepcopy(base), ChannelPruneConfig(ratio=ratio), ctx
        )
    out["int8 PT2E"] = apply_technique(copy.deepcopy(base), StaticInt8Config(8), ctx)
    pruned = apply_technique(copy.deepcopy(base), ChannelPruneConfig(ratio=0.5), ctx)
    out["structured 50% + int8"] = apply_technique(pruned, StaticInt8Config(8), ctx)
    return out


def onnx_variants(x: torch.Tensor, calib: list[torch.Tensor]) -> dict[str, Callable]:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_channels=3, input_size=32).eval()
    tmp = Path(tempfile.mkdtemp())
    fp32_path, int8_path = tmp / "r18.onnx", tmp / "r18.int8.onnx"
    torch.onnx.export(
        model, (x,), str(fp32_path), input_names=["x"], output_names=["y"], dynamo=False
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": c.numpy()} for c in calib])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre_path = tmp / "r18.pre.onnx"
    quant_pre_process(str(fp32_path), str(pre_path))  # ORT's recommended pre-processing
    quantize_static(
        str(pre_path),
        str(int8_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    out = {}
    for label, path in (("ONNX Runtime fp32", fp32_path), ("ONNX Runtime int8", int8_path)):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        out[label] = lambda s=session, f=feed: s.run(None, f)
    return out


def measure(
    runners: dict[str, Callable[[], Any]], rounds: int, batches: int, batch: int
) -> dict[str, dict[str, float]]:
    monitor = EnergyMonitor()
    samples: dict[str, dict[str, list[float]]] = {
        k: {"batch_s": [], "j_per_image": [], "p95_s": []} for k in runners
    }
    with torch.inference_mode():
        for run in runners.values():  # warm-up (compiles, caches)
            for _ in range(3):
                run()
        for r in range(rounds):
            for key, run in runners.items():
                times = []
                with monitor.window(f"{key}/{r}") as w:
                    for _ in range(batches):
                        t0 = time.perf_counter()
                        run()
                        times.append(time.perf_counter() - t0)
                m = w.measurement
                samples[key]["batch_s"].append(statistics.median(times))
                samples[key]["p95_s"].append(statistics.quantiles(times, n=20)[-1])
                samples[key]["j_per_image"].append(m.total_energy_j / (batches * batch))
    provenance = m.total_provenance
    monitor.close()
    ref = statistics.median(samples[next(iter(runners))]["batch_s"])
    ref_j = statistics.median(samples[next(iter(runners))]["j_per_image"])
    out = {}
    for key, s in samples.items():
        p50 = statistics.median(s["batch_s"])
        j = statistics.median(s["j_per_image"])
        out[key] = {
            "latency_p50_ms": p50 * 1e3,
            "latency_p95_ms": statistics.median(s["p95_s"]) * 1e3,
            "images_per_s": batch / p50,
            "j_per_image": j,
            "speedup_vs_fp32": ref / p50,
            "energy_saving_vs_fp32": ref_j / j,
            "energy_provenance": provenance,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2,efficientnet_b0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--onnx", action="store_true", help="add the ONNX Runtime peer")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    calib = [torch.randn(args.batch, 3, 32, 32) for _ in range(8)]
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "input": "3x32x32",
        "rounds": args.rounds,
        "batches_per_window": args.batches,
        "models": {},
    }
    for name in args.models.split(","):
        prepared = variants(name, x, calib)
        runners: dict[str, Callable[[], Any]] = {k: (lambda p=p: p(x)) for k, p in prepared.items()}
        if args.onnx and name == "resnet18":
            runners.update(onnx_variants(x, calib))
        table = measure(runners, args.rounds, args.batches, args.batch)
        for key, p in prepared.items():
            report = p.report.to_dict() if p.report is not None else {}
            for field in ("params_ratio", "macs_ratio", "size_ratio", "compile_s", "prepare_s"):
                if field in report:
                    table[key][field] = report[field]
            if "sparsity" in report:
                table[key]["sparsity"] = report["sparsity"]["sparsity"]
        results["models"][name] = table
        print(f"\n{name} (32 px, batch {args.batch}, {torch.get_num_threads()} threads)")
        print("| variant | p50 ms/batch | images/s | mJ/image | speedup | energy saving |")
        print("|---|---|---|---|---|---|")
        for key, row in table.items():
            print(
                f"| {key} | {row['latency_p50_ms']:.1f} | {row['images_per_s']:.0f} | "
                f"{row['j_per_image'] * 1e3:.3f} | {row['speedup_vs_fp32']:.2f}x | "
                f"{row['energy_saving_vs_fp32']:.2f}x |"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
