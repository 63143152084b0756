"""The GPU check: what wattwise measures on one CUDA GPU, in under 5 minutes.

Run (on a machine with an NVIDIA GPU; results: docs/results/gpu_check.json):

    .venv/bin/python benchmarks/gpu_check.py                  # all four parts
    .venv/bin/python benchmarks/gpu_check.py --parts 1,3      # a subset
    .venv/bin/python benchmarks/gpu_check.py --quick          # shorter windows: a smoke run

Everything runs on ``cuda:0`` (component ``gpu:0``) through wattwise's own code: the meters, the
EnergyMonitor, ``fit`` and ``run_recipe``. It never changes a GPU setting (power limit, clocks,
MIG); the only thing it sets is this process's PyTorch memory fraction (the memory caps), which
it gives back at the end of part 3.

1. **Meters agree?** The NVML total-energy counter, NVML power sampled and integrated by the
   monitor (the path GPUs without the counter take; forced here by hiding the counter from
   ``NvmlMeter``), and ``nvidia-smi`` power, each in its own monitor, over the same 5 s and 30 s
   windows of a steady bf16 matmul load: each pair's relative difference of energy and of mean
   power (the windows' edges differ by the milliseconds one ``nvidia-smi`` read takes).
2. **Training**: ``fit`` of ResNet-18 (small-input stem) on 50,000 random 32 px images and
   10,000 test images made on the GPU (CIFAR-10's shapes), bf16 autocast, channels_last, 2
   epochs: seconds and joules per epoch (goal: <= 3 s per epoch on an H100-class GPU).
3. **Memory caps 4/8/16/32 GiB**: two uncapped one-step probes give peak reserved memory as a
   line in the batch size; :func:`choose_cap_batch` picks the batch predicted to need
   sqrt(4 x 8) = 5.7 GiB (fits under 8, not under 4); then one training step under each cap, its
   status (``ok`` / ``oom``) and reason as ``fit`` records them.
4. **Inference variants**: ``run_recipe`` on ``cuda`` with the comparison protocol, one recipe per
   variant (``autocast:bf16``, ``autocast:fp16``, ``channels_last``, ``prune:structured:0.5``),
   each measured interleaved with its own fp32 baseline: J/image, images/s and the saving with
   its interval.

Each part runs under a time limit; a part that fails or runs past it is recorded with the reason
and the next one runs. The JSON is rewritten atomically after every part, so a crash keeps what
was measured. Without a CUDA GPU the script exits 2 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from wattwise.data.types import DatasetInfo, DatasetSplits, TensorSplit
from wattwise.energy import EnergyMonitor, MonitorConfig
from wattwise.energy.nvidia_smi import NvidiaSmiMeter
from wattwise.energy.nvml import NvmlMeter
from wattwise.experiment.environment import environment
from wattwise.files import write_json_atomic
from wattwise.models import create_model
from wattwise.optimize import RecipeSettings, run_recipe
from wattwise.train import GPU_MEMORY_CAPACITIES_GIB, TrainConfig, fit
from wattwise.train.device import apply_memory_cap, is_out_of_memory, out_of_memory_reason
from wattwise.validation import dump

NO_GPU = "gpu_check needs a CUDA GPU (torch.cuda.is_available() is False)"
PARTS = {1: "meter_agreement", 2: "train_resnet18", 3: "memory_caps", 4: "inference_variants"}
#: Seconds each part may run (their sum stays under 5 minutes).
PART_LIMIT_S = {1: 60, 2: 75, 3: 60, 4: 100}
METERS = ("nvml_counter", "nvml_power", "nvidia_smi")
RECIPES = ("autocast:bf16", "autocast:fp16", "channels_last", "prune:structured:0.5")
EPOCH_GOAL_S = 3.0
GIB = 2**30
DEFAULT_JSON = Path(__file__).resolve().parents[1] / "docs" / "results" / "gpu_check.json"
DEVICE = "cuda:0"
COMPONENT = "gpu:0"  # cuda:0 as the meters name it


# --- pure parts (tested without a GPU) ---------------------------------------------------------
def parse_parts(text: str) -> tuple[int, ...]:
    """``"3,1"`` -> ``(1, 3)``; ``"all"`` -> every part. Raises ValueError (one line)."""
    if text.strip().lower() == "all":
        return tuple(PARTS)
    chosen = set()
    choices = ", ".join(str(p) for p in PARTS)
    for token in text.split(","):
        token = token.strip()
        if not token.isdigit() or int(token) not in PARTS:
            raise ValueError(f"--parts: unknown part {token!r} in {text!r}; choose from {choices}")
        chosen.add(int(token))
    return tuple(sorted(chosen))


def agreement(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Each pair's relative difference in percent: ``"b vs a"`` is ``(b - a) / a * 100`` for
    every pair in :data:`METERS` order; ``None`` where a value is missing or the reference is
    not positive (no number is made up)."""
    out: dict[str, float | None] = {}
    for i, ref in enumerate(METERS):
        for other in METERS[i + 1 :]:
            a, b = values.get(ref), values.get(other)
            out[f"{other} vs {ref}"] = (b - a) / a * 100 if a and a > 0 and b is not None else None
    return out


@dataclass(frozen=True)
class CapChoice:
    """The batch size for the memory-cap check and how it was chosen.

    Attributes:
        batch_size: Images in the one training step run under each cap.
        predicted_peak_bytes: Peak reserved memory the probes' line predicts for it.
        target_bytes: What it aimed at: the geometric mean of the two caps (5.66 GiB for 4/8).
        fixed_bytes / per_image_bytes: The line through the probes (intercept, slope).
        binding_caps_gib: The caps below the GPU's total memory (the others cannot bind).
        probes: ``(batch size, peak reserved bytes)`` measured.
    """

    batch_size: int
    predicted_peak_bytes: float
    target_bytes: float
    fixed_bytes: float
    per_image_bytes: float
    binding_caps_gib: tuple[int, ...]
    probes: tuple[tuple[int, int], ...]


def choose_cap_batch(
    probes: Sequence[tuple[int, int]],
    *,
    total_memory_bytes: int,
    fits_gib: int = 8,
    fails_gib: int = 4,
    caps_gib: Sequence[int] = GPU_MEMORY_CAPACITIES_GIB,
) -> CapChoice:
    """A batch whose training step should fit in ``fits_gib`` but not in ``fails_gib``.

    Args:
        probes: Two or more ``(batch size, peak reserved bytes)`` of one training step; the
            first and the last define the line ``peak = fixed + per_image * batch``.
        total_memory_bytes: The GPU's total memory (``torch.cuda`` reports it).

    Raises:
        ValueError: Fewer than two probes, memory that does not grow with the batch, a fixed
            part that leaves no room for one image, or a GPU too small for the ``fits_gib`` cap
            to bind.
    """
    if len(probes) < 2:
        raise ValueError("choose_cap_batch needs two probes (batch size, peak bytes)")
    if total_memory_bytes <= fits_gib * GIB:
        raise ValueError(
            f"the GPU has {total_memory_bytes / GIB:.1f} GiB: the {fits_gib} GiB cap cannot bind"
        )
    (b1, p1), (b2, p2) = probes[0], probes[-1]
    per_image = (p2 - p1) / (b2 - b1) if b2 != b1 else 0.0
    if per_image <= 0:
        raise ValueError(f"peak memory does not grow with the batch: {list(probes)}")
    fixed = p1 - per_image * b1
    target = math.sqrt(fits_gib * fails_gib) * GIB
    batch = math.floor((target - fixed) / per_image)
    if batch < 1:
        raise ValueError(f"the fixed part ({fixed / GIB:.2f} GiB) leaves no room for one image")
    return CapChoice(
        batch_size=batch,
        predicted_peak_bytes=fixed + per_image * batch,
        target_bytes=target,
        fixed_bytes=fixed,
        per_image_bytes=per_image,
        binding_caps_gib=tuple(c for c in caps_gib if c * GIB < total_memory_bytes),
        probes=tuple((int(b), int(p)) for b, p in probes),
    )


# --- GPU helpers -------------------------------------------------------------------------------
class _PowerOnlyNvml:
    """The NVML bindings with the total-energy counter hidden: ``NvmlMeter`` then samples power,
    which the monitor integrates (the path of GPUs without the counter)."""

    def __init__(self, nvml: Any):
        self._nvml = nvml

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nvml, name)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        raise self._nvml.NVMLError(self._nvml.NVML_ERROR_NOT_SUPPORTED)


def matmul_load(seconds: float, n: int = 8192) -> dict[str, float]:
    """Keep ``cuda:0`` busy with bf16 ``n x n`` matmuls for ``seconds``; returns the TFLOP/s."""
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b, c = torch.randn_like(a), torch.empty_like(a)
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < seconds:
        for _ in range(8):
            torch.mm(a, b, out=c)
        torch.cuda.synchronize(DEVICE)
        count += 8
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "matmuls": count, "tflop_per_s": 2 * n**3 * count / elapsed / 1e12}


def random_images(n_train: int, n_test: int, seed: int = 0) -> DatasetSplits:
    """CIFAR-10-shaped random data made on ``cuda:0`` (uint8 3x32x32, 10 classes, no val)."""
    gen = torch.Generator(device=DEVICE).manual_seed(seed)

    def split(n: int) -> TensorSplit:
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, device=DEVICE)
        labels = torch.randint(0, 10, (n,), generator=gen, device=DEVICE)
        return TensorSplit(images.to(torch.uint8), labels)

    train, test = split(n_train), split(n_test)
    std, mean = torch.std_mean(train.images.float().div_(255), dim=(0, 2, 3))
    info = DatasetInfo(
        name="random-cifar10-shape",
        num_classes=10,
        in_channels=3,
        image_size=32,
        class_names=tuple(f"class_{i}" for i in range(10)),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        source=f"torch.randint on {DEVICE} (seed {seed})",
    )
    empty = TensorSplit(train.images[:0], train.labels[:0])
    return DatasetSplits(train, empty, test, info)


def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=10, in_channels=3, input_size=32)


def _free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


# --- the parts ---------------------------------------------------------------------------------
def part_meters(out: dict[str, Any], quick: bool) -> None:
    """Part 1: the three GPU meters over the same windows of a steady load."""
    import pynvml  # nvidia-ml-py, a wattwise dependency

    built = {
        "nvml_counter": NvmlMeter(),
        "nvml_power": NvmlMeter(_PowerOnlyNvml(pynvml)),
        "nvidia_smi": NvidiaSmiMeter(),
    }
    out["availability"] = {k: m.availability().reason for k, m in built.items()}
    out["windows"] = []
    counter = built["nvml_counter"]
    if counter.availability().available and not counter.gpus[0]["energy_counter"]:
        out["note"] = "this GPU has no NVML energy counter: nvml_counter samples power too"
    monitors = {
        k: EnergyMonitor(MonitorConfig(sample_hz=10), meters=[m])
        for k, m in built.items()
        if m.availability().available
    }
    try:
        out["warmup"] = matmul_load(1.0 if quick else 3.0)
        for seconds in (1.0, 3.0) if quick else (5.0, 30.0):
            name = f"load {seconds:g} s"
            for monitor in monitors.values():
                monitor.begin_window(name)
            load = matmul_load(seconds)
            measured = {k: monitors[k].end_window(name) for k in reversed(list(monitors))}
            rows = {}
            for key, m in measured.items():
                comp = m.component(COMPONENT)
                rows[key] = {
                    "energy_j": comp.energy_j,
                    "duration_s": m.duration_s,
                    "avg_power_w": comp.avg_power_w,
                    "peak_power_w": comp.peak_power_w,
                    "samples": m.samples,
                    "provenance": comp.provenance.detail,
                }
            out["windows"].append(
                {
                    "seconds": seconds,
                    "load": load,
                    "meters": rows,
                    "energy_agreement_pct": agreement({k: r["energy_j"] for k, r in rows.items()}),
                    "power_agreement_pct": agreement(
                        {k: r["avg_power_w"] for k, r in rows.items()}
                    ),
                }
            )
    finally:
        for monitor in monitors.values():
            monitor.close()


def part_train(out: dict[str, Any], quick: bool, batch_size: int) -> None:
    """Part 2: ``fit`` of ResNet-18 on CIFAR-10-shaped data, bf16 + channels_last."""
    data = random_images(10_000 if quick else 50_000, 10_000)
    config = TrainConfig(
        epochs=1 if quick else 2,
        batch_size=batch_size,
        precision="bf16",
        channels_last=True,
        device=DEVICE,
    )
    out.update(config=config.to_dict(), train_images=len(data.train))
    monitor = EnergyMonitor()
    try:
        result = fit(resnet18(), data, config, monitor=monitor)
    finally:
        monitor.close()
        _free()
    epochs = [
        {
            "epoch": r.epoch,
            "images": r.images,
            "duration_s": r.duration_s,
            "energy_j": r.energy_j,
            "gpu_energy_j": r.components.get(COMPONENT, {}).get("energy_j"),
            "energy_provenance": r.energy_provenance,
            "components": r.components,
            "peak_cuda_allocated_bytes": r.peak_cuda_allocated_bytes,
        }
        for r in result.history
    ]
    out.update(
        {
            "status": result.status,
            "reason": result.reason,
            "epochs": epochs,
            "goal": {
                "seconds_per_epoch": EPOCH_GOAL_S,
                "applies_to": "an H100-class GPU (compare device.name)",
                "met_per_epoch": [e["duration_s"] <= EPOCH_GOAL_S for e in epochs],
            },
            "test": result.test.to_dict(timeline=False) if result.test else None,
        }
    )


def _one_step(batch: int, cap: float | None) -> dict[str, Any]:
    """One training step (one epoch of ``batch`` images) under ``cap`` GiB, as ``fit`` records
    it; an out-of-memory that ``fit`` lets through is recorded too, marked ``raised``."""
    data = random_images(batch, 256)
    config = TrainConfig(
        epochs=1,
        batch_size=batch,
        precision="bf16",
        channels_last=True,
        device=DEVICE,
        gpu_memory_gib=cap,
        augment=False,
        schedule="none",
    )
    monitor = EnergyMonitor()
    try:
        result = fit(resnet18(), data, config, monitor=monitor)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        return {"status": "oom", "reason": out_of_memory_reason(err, cap), "raised": True}
    finally:
        monitor.close()
        del data
        _free()
    fit_m = result.fit
    return {
        "status": result.status,
        "reason": result.reason,
        "memory_cap": result.memory_cap.to_dict(),
        "peak_cuda_reserved_bytes": fit_m.peak_cuda_reserved_bytes if fit_m else None,
        "peak_cuda_allocated_bytes": fit_m.peak_cuda_allocated_bytes if fit_m else None,
    }


def part_caps(out: dict[str, Any], quick: bool) -> None:
    """Part 3: a batch that fits under 8 GiB but not 4 GiB, one step under each cap."""
    del quick  # one step per cap is already short
    total = int(torch.cuda.get_device_properties(DEVICE).total_memory)
    out["model"] = "resnet18 (small-input stem), bf16 autocast, channels_last, SGD, 32 px"
    out["total_memory_bytes"] = total
    try:
        probes = []
        for batch in (64, 256):
            step = _one_step(batch, None)
            if step["status"] != "ok" or not step["peak_cuda_reserved_bytes"]:
                raise RuntimeError(f"probe at batch {batch} failed: {step}")
            probes.append((batch, step["peak_cuda_reserved_bytes"]))
        choice = choose_cap_batch(probes, total_memory_bytes=total)
        out["choice"] = asdict(choice)
        caps: list[dict[str, Any]] = []
        out["caps"] = caps
        for cap in GPU_MEMORY_CAPACITIES_GIB:
            binds = cap in choice.binding_caps_gib
            expected = "oom" if binds and cap * GIB < choice.predicted_peak_bytes else "ok"
            step = _one_step(choice.batch_size, cap)
            caps.append({"cap_gib": cap, "expected": expected, **step})
    finally:
        apply_memory_cap(torch.device(DEVICE), None)  # the whole GPU again
    out["as_expected"] = all(c["status"] == c["expected"] for c in caps)


def part_inference(out: dict[str, Any], quick: bool) -> None:
    """Part 4: J/image of fp32 and each variant, by ``run_recipe``'s comparison protocol."""
    data = random_images(2048, 1024)
    rounds = 3 if quick else 6
    settings = RecipeSettings(
        finetune_epochs=0,
        batch_size=256,
        inference_s=1.5 if quick else 6.0,
        rounds=rounds,
        target_half_width=None,
        max_rounds=rounds,
        device=DEVICE,
    )
    spec = {"name": "resnet18", "num_classes": 10, "in_channels": 3, "input_size": 32}
    model = resnet18().eval()
    out.update(settings=dump(settings), recipes={})
    monitor = EnergyMonitor()
    try:
        for recipe in RECIPES:
            try:
                res = run_recipe(model, data, recipe, settings=settings, model_spec=spec,
                                 monitor=monitor)  # fmt: skip
            except TimeoutError:  # the part's limit: stop here
                raise
            except Exception as err:  # one variant failing (fp16 on an old GPU) keeps the rest
                out["recipes"][recipe] = {"error": f"{type(err).__name__}: {err}"[:500]}
                continue
            finally:
                _free()
            out["recipes"][recipe] = {
                "j_per_image": {
                    v.step: v.inference_energy_per_image_j for v in [*res.variants, *res.references]
                },
                "method": res.comparison.method if res.comparison else None,
                "variants": [v.to_dict() for v in [*res.variants, *res.references]],
            }
    finally:
        monitor.close()


# --- running -----------------------------------------------------------------------------------
@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (checked between Python steps)."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"ran past its limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_part(number: int, body: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One part, timed and bounded; ``body`` fills its result as it goes, so that a part that
    fails keeps what it measured; the failure is recorded with the reason instead of raised."""
    limit = PART_LIMIT_S[number]
    start = time.perf_counter()
    record: dict[str, Any] = {"name": PARTS[number], "limit_s": limit, "result": {}}
    try:
        with time_limit(limit):
            body(record["result"])
        record["status"] = "ok"
    except Exception as err:
        record["status"] = "failed"
        record["reason"] = f"{type(err).__name__}: {err}"[:500]
        _free()
    record["elapsed_s"] = time.perf_counter() - start
    return record


def device_identity() -> dict[str, Any]:
    """The GPU and software: wattwise's environment record (torch, CUDA, cuDNN, driver, GPU
    name, UUID, total memory) with NVML open, plus the compute capability."""
    torch.zeros(1, device=DEVICE)  # initialize CUDA: torch then reports name, UUID, memory
    nvml = NvmlMeter()
    with contextlib.closing(EnergyMonitor(meters=[nvml])) as monitor:
        info = environment(DEVICE, monitor)
    props = torch.cuda.get_device_properties(DEVICE)
    info["compute_capability"] = f"{props.major}.{props.minor}"
    info["nvml"] = nvml.availability().reason
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="all", help="e.g. 1,3 (default: all four)")
    parser.add_argument("--quick", action="store_true", help="short windows: a smoke run")
    parser.add_argument("--batch-size", type=int, default=512, help="part 2's batch size")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where the results go")
    args = parser.parse_args(argv)
    try:
        parts = parse_parts(args.parts)
    except ValueError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    bodies: dict[int, Callable[[dict[str, Any]], None]] = {
        1: lambda out: part_meters(out, args.quick),
        2: lambda out: part_train(out, args.quick, args.batch_size),
        3: lambda out: part_caps(out, args.quick),
        4: lambda out: part_inference(out, args.quick),
    }
    results: dict[str, Any] = {
        "command": " ".join(["benchmarks/gpu_check.py", *sys.argv[1:]]),
        "started_unix_s": time.time(),
        "quick": args.quick,
        "parts_requested": list(parts),
        "device": device_identity(),
        "parts": {},
    }
    write_json_atomic(args.json, results)
    for number in parts:
        print(f"part {number} ({PARTS[number]}) ...", flush=True)
        record = run_part(number, bodies[number])
        results["parts"][str(number)] = record
        write_json_atomic(args.json, results)  # after every part: a crash keeps what was measured
        print(f"  {record['status']} in {record['elapsed_s']:.1f} s {record.get('reason', '')}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
