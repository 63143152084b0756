"""What each compression technique really saves on this CPU, against fp32 eager and compiled.

Run (about 15 minutes on 2 cores; results: docs/benchmarks.md):

    .venv/bin/python benchmarks/compression_cpu.py --json docs/results/compression_cpu.json
    .venv/bin/python benchmarks/compression_cpu.py --models resnet18 --onnx   # + ONNX Runtime peer

For resnet18, mobilenet_v2 and efficientnet_b0 (small-input stems, 32 px, 3 channels, 10
classes, batch 64, random weights — speed and energy do not depend on the weights' values):
fp32 eager, fp32 compiled (``compile``: inductor with freezing, the compiler path int8 takes),
channels_last, bf16 autocast + channels_last, mask pruning 50 / 90 %, structured channel pruning
30 / 50 % (eager, and 50 % compiled), int8 PT2E (compiled), structured 50 % + int8. Every variant
is built by the library's techniques (``apply_technique``).

All variants of one model are measured by the project's one comparison protocol,
:func:`wattwise.optimize.compare_variants`: a fixed thread count (``--threads``), a warm-up, then
``--rounds`` rounds in rotating order, each variant for at least ``--round-s`` seconds per round
in its own EnergyMonitor window. Every variant's saving (J/image ratio) and speedup (images/s
ratio) is reported against fp32 eager *and* against fp32 compiled, each the geometric mean of
the paired per-round ratios with a 95 % t interval on their logarithms, plus the protocol's
``noisy`` flags (CPU used by other processes, spread across rounds) with their figures. Energy
is whatever the monitor measures here (on a VM without RAPL: the labelled CPU-time estimate).

``--onnx`` adds the peer, also through the protocol (a callable runner on the batch): the same
ResNet-18 exported to ONNX and statically quantized to int8 by ONNX Runtime (QDQ, calibrated on
the same batches), run by an ORT session at the same thread count (needs
``pip install onnxruntime onnx onnxscript``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wattwise.models import create_model
from wattwise.optimize import (
    AutocastConfig,
    ChannelPruneConfig,
    ChannelsLastConfig,
    CompareSettings,
    Comparison,
    CompileConfig,
    MaskPruneConfig,
    PreparedModel,
    StaticInt8Config,
    TechniqueContext,
    apply_technique,
    compare_variants,
)
from wattwise.train.device import num_threads

warnings.filterwarnings("ignore", message="To copy construct from a tensor")

EAGER, COMPILED = "fp32 eager", "fp32 compiled"
REFERENCES = (EAGER, COMPILED)
REPORT_FIELDS = ("params_ratio", "macs_ratio", "size_ratio", "compile_s", "prepare_s")


def variants(name: str, x: torch.Tensor, calib: list[torch.Tensor]) -> dict[str, PreparedModel]:
    """The model's variants, each built by the library's techniques from the same weights."""
    torch.manual_seed(0)
    base = create_model(name, num_classes=10, in_channels=3, input_size=32).eval()
    ctx = TechniqueContext(example_inputs=x, calibration=calib)

    def build(*configs: Any) -> PreparedModel:
        model: Any = copy.deepcopy(base)
        for config in configs:
            model = apply_technique(model, config, ctx)
        return model

    out: dict[str, PreparedModel] = {EAGER: PreparedModel(copy.deepcopy(base))}
    out[COMPILED] = build(CompileConfig())
    out["channels_last"] = build(ChannelsLastConfig())
    out["bf16 + channels_last"] = build(ChannelsLastConfig(), AutocastConfig("bf16"))
    for amount in (0.5, 0.9):
        out[f"mask {amount:.0%}"] = build(MaskPruneConfig(amount, permanent=True))
    for ratio in (0.3, 0.5):
        out[f"structured {ratio:.0%}"] = build(ChannelPruneConfig(ratio=ratio))
    out["structured 50% compiled"] = build(ChannelPruneConfig(ratio=0.5), CompileConfig())
    out["int8 PT2E"] = build(StaticInt8Config(8))
    out["structured 50% + int8"] = build(ChannelPruneConfig(ratio=0.5), StaticInt8Config(8))
    return out


def onnx_variants(
    x: torch.Tensor, calib: list[torch.Tensor], threads: int
) -> dict[str, Callable[[torch.Tensor], Any]]:
    """ONNX Runtime fp32 and static int8 sessions of the same ResNet-18, as batch callables."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_channels=3, input_size=32).eval()
    tmp = Path(tempfile.mkdtemp())
    fp32_path, pre_path, int8_path = tmp / "r18.onnx", tmp / "r18.pre.onnx", tmp / "r18.int8.onnx"
    torch.onnx.export(
        model, (x,), str(fp32_path), input_names=["x"], output_names=["y"], dynamo=False
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": c.numpy()} for c in calib])

        def get_next(self) -> dict | None:
            return next(self.items, None)

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
    options.intra_op_num_threads = threads
    out = {}
    for label, path in (("ONNX Runtime fp32", fp32_path), ("ONNX Runtime int8", int8_path)):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        out[label] = lambda t, s=session: s.run(None, {"x": t.numpy()})
    return out


def cpu_isa() -> dict[str, Any]:
    """The CPU's model name and the vector extensions that decide int8 / bf16 speed."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if "model name" in ln), "")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    return {
        "model": model or platform.processor(),
        "cores": os.cpu_count(),
        "isa": [f for f in wanted if f in flags],
    }


def model_result(comparison: Comparison, prepared: dict[str, PreparedModel]) -> dict[str, Any]:
    """Per variant: medians, noise, the techniques' reports and the ratios against both refs."""
    rows: dict[str, Any] = {}
    for key, stats in comparison.variants.items():
        row: dict[str, Any] = {
            "j_per_image": stats.j_per_image,
            "images_per_s": stats.images_per_s,
            "latency_p50_ms": stats.latency_p50_ms,
            "latency_p95_ms": stats.latency_p95_ms,
            "cv_j_per_image": stats.cv_j_per_image,
            "external_cpu_cores": stats.external_cpu_cores,
            "energy_provenance": stats.energy_provenance,
            "noisy": stats.noisy,
            "noise": list(stats.noise),
        }
        for ref in REFERENCES:
            if ref == key or ref not in comparison.variants:
                continue
            r = comparison.ratio(key, ref)
            row[f"vs {ref}"] = {
                "saving": r.saving,
                "saving_interval": [r.low, r.high],
                "speedup": r.speedup,
                "speedup_interval": [r.speedup_low, r.speedup_high],
                "significant": r.significant,
                "verdict": r.verdict,
            }
        p = prepared.get(key)
        report = p.report.to_dict() if p is not None and p.report is not None else {}
        row.update({f: report[f] for f in REPORT_FIELDS if f in report})
        if "sparsity" in report:
            row["sparsity"] = report["sparsity"]["sparsity"]
        rows[key] = row
    return {
        "threads": comparison.threads,
        "rounds": comparison.settings.rounds,
        "method": comparison.method,
        "noisy": comparison.noisy,
        "noise": list(comparison.noise),
        "variants": rows,
        "comparison": comparison.to_dict(),
    }


_SHORT = {EAGER: "eager", COMPILED: "comp."}


def _x(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 99.5:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 9.95 else f"{value:.2f}"


def _cell(value: float | None, low: float | None, high: float | None) -> str:
    return f"{_x(value)} [{_x(low)},{_x(high)}]"


def print_table(name: str, result: dict[str, Any], batch: int) -> None:
    """Two lines per variant (vs eager, vs compiled); fits 80 columns."""
    print(
        f"\n{name}: 32 px, batch {batch}, {result['threads']} threads, {result['rounds']} rounds"
        "\nratios: geometric mean of paired rounds [95 % CI]; * = noisy (reasons below)"
    )
    print(f"{'variant':<24}{'img/s':>5} {'mJ/img':>7} {'vs':<6}{'saving':<17}speedup")
    for key, row in result["variants"].items():
        label = key + ("*" if row["noisy"] else "")
        lead = f"{label:<24}{row['images_per_s']:>5.0f} {row['j_per_image'] * 1e3:>7.2f} "
        refs = [ref for ref in REFERENCES if f"vs {ref}" in row]
        if not refs:
            print(lead + "(reference)")
        for i, ref in enumerate(refs):
            r = row[f"vs {ref}"]
            saving = _cell(r["saving"], *r["saving_interval"])
            speedup = _cell(r["speedup"], *r["speedup_interval"])
            head = lead if i == 0 else " " * len(lead)
            print(f"{head}{_SHORT[ref]:<6}{saving:<17}{speedup}")
    for line in result["noise"]:
        print(textwrap.fill(f"* {line}", 80, subsequent_indent="    "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2,efficientnet_b0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-s", type=float, default=1.0, help="seconds per variant/round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--onnx", action="store_true", help="add the ONNX Runtime peer")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    settings = CompareSettings(rounds=args.rounds, round_s=args.round_s, threads=args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    calib = [torch.randn(args.batch, 3, 32, 32) for _ in range(8)]
    results: dict[str, Any] = {
        "command": " ".join(["benchmarks/compression_cpu.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "cpu": cpu_isa(),
        "threads": args.threads,
        "batch": args.batch,
        "input": "3x32x32",
        "rounds": args.rounds,
        "round_s": args.round_s,
        "references": list(REFERENCES),
        "models": {},
    }
    for name in args.models.split(","):
        with num_threads(args.threads):  # compile at the thread count it is measured at
            prepared = variants(name, x, calib)
            runners: dict[str, Any] = dict(prepared)
            if args.onnx and name == "resnet18":
                runners.update(onnx_variants(x, calib, args.threads))
        comparison = compare_variants(runners, x, references=REFERENCES, settings=settings)
        results["models"][name] = model_result(comparison, prepared)
        print_table(name, results["models"][name], args.batch)
        if args.json:  # after every model: a long run keeps what it measured
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
