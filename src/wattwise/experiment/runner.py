"""One trial -> one TrialRecord: data -> model -> train (or distill) -> recipe steps -> measure.

    from wattwise.experiment.runner import run_trial
    record = run_trial(spec, store=store)        # never raises for a failed trial

The phases of a trial, each in its own EnergyMonitor window:

1. **data**: the dataset is loaded once per (dataset, root, image size, validation share, seed)
   and kept in ``data_cache`` (a dict the caller owns and may clear).
2. **train**: the model is trained with ``fit``. A technique that starts with ``distill:<teacher>``
   trains the student with Hinton KD instead (see :func:`teacher_for`): the teacher is trained
   first, with the trial's own training settings, once per (teacher, data, settings) and reused
   from ``data_cache`` and from ``teacher_dir`` on disk by every later trial and on resume.
3. **recipe**: the other steps run through :func:`wattwise.optimize.recipe.run_recipe`, which
   measures the trained model (``baseline``) and every variant by the same inference protocol
   and computes the payback of each step.

Phase names in ``TrialRecord.phases``: ``teacher`` (teacher training, only in the trial that
trained it), ``teacher_logits`` (the teacher pass over the training split), ``train`` (the
trial's training: training and validation passes), ``test`` (final test evaluation),
``recipe/<step>`` (what each step cost: fine-tuning, calibration, compiling), ``inference/<step>``
(each intermediate variant) and ``inference`` (the final model). Nothing is counted twice.

Any exception — missing data, out of memory, divergence, a bug — ends the trial as ``failed``
with a one-line reason; what was measured before is kept. ``KeyboardInterrupt`` is not caught:
an interrupted trial stays ``running`` in the store and runs again on resume.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import uuid
from collections.abc import MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.config import MeasurementSettings, RecipeStep, TrialSpec, format_recipe, trial_hash
from wattwise.data import DatasetSplits, load_dataset
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.store import ResultsStore
from wattwise.models import create_model
from wattwise.optimize.recipe import RecipeSettings, VariantResult, run_recipe
from wattwise.train.config import TrainConfig
from wattwise.train.device import is_out_of_memory, num_threads, resolve_device
from wattwise.train.loop import TrainResult, evaluate, fit

#: A cache the caller owns: ``("data", ...)`` -> DatasetSplits, ``("teacher", key)`` -> teacher.
TrialCache = MutableMapping[tuple[Any, ...], Any]

#: Folder (below the study folder) of trained distillation teachers, shared by trials.
TEACHER_DIR = "teachers"

#: Epochs of fine-tuning after a pruning step (at most the trial's own epochs).
FINETUNE_EPOCHS = 2

#: Longest failure reason kept (characters).
MAX_REASON = 500


_PEAKS = ("peak_rss_bytes", "peak_cuda_allocated_bytes", "peak_cuda_reserved_bytes")


def _peak(measurements: Sequence[Measurement], key: str) -> int | None:
    values = [v for v in (getattr(m, key) for m in measurements) if v is not None]
    return max(values, default=None)


class TrialFailure(Exception):
    """A trial that ended without a result (divergence, out of memory); ``str`` is the reason."""


@dataclass
class _Trial:
    """What a trial has measured so far (kept when it fails half-way)."""

    spec: TrialSpec
    started_unix_s: float
    phases: dict[str, Measurement | dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def record(self, duration_s: float) -> TrialRecord:
        m = dict(self.metrics)
        measured = [p for p in self.phases.values() if isinstance(p, Measurement)]
        peaks = {key: _peak(measured, key) for key in _PEAKS}
        accuracy, energy, per_image = (
            m.get("accuracy"),
            m.get("train_energy_j"),
            m.get("inference_energy_per_image_j"),
        )
        return TrialRecord(
            trial_id=self.spec.trial_id,
            study=self.spec.study,
            spec=self.spec.to_dict(),
            status="ok",
            accuracy=accuracy,
            train_energy_j=energy,
            train_energy_provenance=m.get("train_energy_provenance"),
            inference_energy_per_image_j=per_image,
            inference_energy_provenance=m.get("inference_energy_provenance"),
            accuracy_per_kj_train=(
                accuracy / (energy / 1e3) if accuracy is not None and energy else None
            ),
            accuracy_per_j_per_image=(
                accuracy / per_image if accuracy is not None and per_image else None
            ),
            duration_s=duration_s,
            params=m.get("params"),
            macs=m.get("macs"),
            model_bytes=m.get("model_bytes"),
            latency_p50_ms=m.get("latency_p50_ms"),
            latency_p95_ms=m.get("latency_p95_ms"),
            throughput_images_per_s=m.get("throughput_images_per_s"),
            phases=self.phases,
            history=tuple(self.history),
            details=self.details,
            environment=self.environment,
            started_unix_s=self.started_unix_s,
            **peaks,
        )


def run_trial(
    spec: TrialSpec,
    *,
    store: ResultsStore | None = None,
    monitor: EnergyMonitor | None = None,
    progress: bool = False,
    data_cache: TrialCache | None = None,
    teacher_dir: str | Path | None = None,
) -> TrialRecord:
    """Runs one trial end to end and returns its record; a failure is a record, not an error.

    Args:
        spec: The trial (from :func:`wattwise.config.expand_grid`).
        store: If given, the trial is marked ``running`` first (an attempt is counted) and its
            record stored at the end, each in one transaction. A trial that already finished is
            run again and its stored result replaced.
        monitor: The EnergyMonitor to measure with (default: one built from
            ``spec.measurement``, closed at the end).
        progress: Show per-epoch progress bars (not inside another live display).
        data_cache: Datasets and trained teachers kept between trials (see :data:`TrialCache`).
        teacher_dir: Where trained teachers are saved and looked up (default: ``teachers/``
            next to the store; without a store, nothing is saved).

    Returns:
        The record (``ok``, or ``failed`` with a one-line reason and what was measured).
    """
    started, t0 = time.time(), time.perf_counter()
    if store is not None:
        store.begin_trial(spec.trial_id, spec, rerun=True)
        if teacher_dir is None:
            teacher_dir = store.path.parent / TEACHER_DIR
    trial = _Trial(spec, started)
    try:
        _execute(trial, monitor, progress, data_cache, teacher_dir)
        record = trial.record(time.perf_counter() - t0)
    except Exception as err:
        trial.details["error"] = f"{type(err).__name__}: {err}"[:2000]
        record = trial.record(time.perf_counter() - t0).failed(failure_reason(err, spec))
    if store is not None:
        record = store.finish_trial(record)
    return record


def failure_reason(err: BaseException, spec: TrialSpec | None = None) -> str:
    """One line saying why a trial failed: ``does not fit in 8 GB`` under a GPU memory cap,
    else the exception's type and message (at most :data:`MAX_REASON` characters)."""
    if isinstance(err, TrialFailure):
        text = str(err)
    elif is_out_of_memory(err) or isinstance(err, MemoryError):
        cap = spec.gpu_memory_gb if spec is not None else None
        what = f"{type(err).__name__}: {err}"
        text = f"does not fit in {cap:g} GB" if cap else f"out of memory: {what}"
    else:
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def load_trial_data(spec: TrialSpec, cache: TrialCache | None = None) -> DatasetSplits:
    """The trial's dataset, from ``cache`` when an earlier trial loaded the same one."""
    key = ("data", spec.dataset, spec.data_root, spec.image_size, spec.val_fraction, spec.seed)
    if cache is not None and key in cache:
        return cache[key]
    data = load_dataset(
        spec.dataset,
        spec.data_root,
        image_size=spec.image_size,
        val_fraction=spec.val_fraction,
        seed=spec.seed,
        download=spec.download,
    )
    if cache is not None:
        cache[key] = data
    return data


def recipe_settings(spec: TrialSpec, steps: Sequence[RecipeStep], device: str) -> RecipeSettings:
    """How a trial's recipe steps run: fine-tuning after pruning for ``min(2, epochs)`` epochs at
    the trial's learning rate, variants measured with the study's inference settings, on CPU
    when the recipe quantizes to int8 (x86 PT2E), else on the training device."""
    inference_s = float(spec.measurement.get("inference_s", 3.0))
    return RecipeSettings(
        finetune_epochs=min(FINETUNE_EPOCHS, spec.epochs),
        finetune_lr=spec.lr,
        batch_size=int(spec.measurement.get("inference_batch_size", 64)),
        inference_s=inference_s if inference_s > 0 else 0.01,
        device="cpu" if any(s.kind == "quantize" for s in steps) else device,
        seed=spec.seed,
    )


def _execute(
    trial: _Trial,
    monitor: EnergyMonitor | None,
    progress: bool,
    cache: TrialCache | None,
    teacher_dir: str | Path | None,
) -> None:
    spec = trial.spec
    steps = spec.steps
    if any(s.kind == "distill" for s in steps[1:]):
        raise ConfigError(f"{spec.technique}: distill must be the first step (it trains the model)")
    distill_step = steps[0] if steps[0].kind == "distill" else None
    rest = [s for s in steps if s.kind not in ("baseline", "distill")]
    tc = spec.train_config()
    with contextlib.ExitStack() as stack:
        if monitor is None:
            settings = MeasurementSettings(**dict(spec.measurement))
            monitor = stack.enter_context(EnergyMonitor(settings.monitor_config()))
        stack.enter_context(num_threads(tc.num_threads))
        if any(s.kind == "quantize" for s in rest):
            stack.callback(_reset_compiler)
        device = resolve_device(tc.device)
        trial.environment = _environment(str(device), monitor)
        data = load_trial_data(spec, cache)
        info = data.info
        trial.details["dataset"] = {
            "name": info.name,
            "num_classes": info.num_classes,
            "image_size": info.image_size,
            "in_channels": info.in_channels,
            "train_images": len(data.train),
            "val_images": len(data.val),
            "test_images": len(data.test),
            "notes": info.notes,
        }
        model_spec = {
            "name": spec.model,
            "num_classes": info.num_classes,
            "in_channels": info.in_channels,
            "input_size": info.image_size,
            "width": spec.width,
        }
        trial.details["model_spec"] = model_spec
        torch.manual_seed(spec.seed)
        model = create_model(**model_spec, weights=spec.weights)
        if distill_step is not None:
            result = _distill(
                trial, distill_step, model, data, tc, monitor, progress, cache, teacher_dir
            )
        else:
            result = fit(model, data, tc, monitor=monitor, progress=progress)
        _record_training(trial, result)
        if result.status != "ok":
            why = result.reason or result.status
            raise TrialFailure(why if result.status == "oom" else f"{result.status}: {why}")
        _apply_recipe(trial, model, data, rest, str(device), model_spec, monitor, progress)


def _record_training(trial: _Trial, result: TrainResult) -> None:
    if result.fit is not None:
        trial.phases["train"] = result.fit
    if result.test is not None:
        trial.phases["test"] = result.test
    trial.history = [r.to_dict() for r in result.history]
    trial.details["memory_cap"] = result.memory_cap.to_dict()
    trial.details["train"] = {
        "status": result.status,
        "reason": result.reason,
        "device": result.device,
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "best_val_accuracy": result.best_val_accuracy,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
    }
    energy, provenance = result.train_energy_j, result.fit.total_provenance if result.fit else None
    teacher_pass = trial.phases.get("teacher_logits")
    if isinstance(teacher_pass, Measurement) and energy is not None:
        # what the student's training cost includes the teacher's pass over the training split
        energy += teacher_pass.total_energy_j
        provenance = combine_provenance([provenance, teacher_pass.total_provenance])
    trial.metrics["train_energy_j"] = energy
    trial.metrics["train_energy_provenance"] = provenance


def _apply_recipe(
    trial: _Trial,
    model: nn.Module,
    data: DatasetSplits,
    steps: list[RecipeStep],
    device: str,
    model_spec: dict[str, Any],
    monitor: EnergyMonitor,
    progress: bool,
) -> None:
    spec = trial.spec
    settings = recipe_settings(spec, steps, device)
    final_step = str(steps[-1]) if steps else "baseline"
    measure_inference = float(spec.measurement.get("inference_s", 3.0)) > 0
    variants: list[VariantResult] = []
    trial.details["recipe"] = {
        "steps": format_recipe(steps) if steps else "baseline",
        "settings": asdict(settings),
    }

    def on_variant(variant: VariantResult) -> None:
        variants.append(variant)
        trial.details["variants"] = [v.to_dict() for v in variants]
        if variant.step != "baseline":
            trial.phases[f"recipe/{variant.step}"] = monitor.last(f"recipe/{variant.step}")
        if measure_inference:
            name = "inference" if variant.step == final_step else f"inference/{variant.step}"
            trial.phases[name] = monitor.last(f"inference/{variant.step}")

    run_recipe(
        model,
        data,
        steps or "baseline",
        settings=settings,
        model_spec=model_spec,
        monitor=monitor,
        progress=progress,
        on_variant=on_variant,
    )
    final = variants[-1]
    trial.details["notes"] = list(dict.fromkeys(n for v in variants for n in v.notes))
    trial.metrics.update(
        accuracy=final.accuracy,
        params=final.params,
        macs=final.macs,
        model_bytes=final.size_bytes,
    )
    if measure_inference:
        trial.metrics.update(
            inference_energy_per_image_j=final.energy_per_image_j,
            inference_energy_provenance=final.energy_provenance,
            latency_p50_ms=final.latency_p50_ms,
            latency_p95_ms=final.latency_p95_ms,
            throughput_images_per_s=final.images_per_s,
        )
    else:
        trial.details["notes"].append(
            "measurement.inference_s is 0: latency, throughput and J/image are not reported"
        )


# --- distillation -----------------------------------------------------------------------------


def _distill(
    trial: _Trial,
    step: RecipeStep,
    student: nn.Module,
    data: DatasetSplits,
    tc: TrainConfig,
    monitor: EnergyMonitor,
    progress: bool,
    cache: TrialCache | None,
    teacher_dir: str | Path | None,
) -> TrainResult:
    """Trains ``student`` with Hinton KD against the step's teacher (the teacher's logits are
    computed once over the training split and recorded as the phase ``teacher_logits``)."""
    from wattwise.optimize.distill import (
        DistillationTask,
        DistillConfig,
        build_teacher,
        freeze_teacher,
        precompute_teacher_outputs,
    )

    name, args = step.args[0], step.args
    checkpoint = "/" in name or name.endswith((".pt", ".pth", ".ckpt"))
    config = DistillConfig(
        teacher=None if checkpoint else name,
        teacher_checkpoint=name if checkpoint else None,
        temperature=float(args[1]) if len(args) > 1 else 4.0,
        alpha=float(args[2]) if len(args) > 2 else 0.9,
    )
    device = resolve_device(tc.device)
    if checkpoint:
        teacher = build_teacher(config, data.info, device)
        trial.details["teacher"] = {"checkpoint": name, "trained_here": False}
    else:
        teacher = teacher_for(trial.spec, name, data, tc, monitor, cache, teacher_dir, trial)
    freeze_teacher(teacher, device)
    if tc.channels_last:
        teacher.to(memory_format=torch.channels_last)
    run = {
        "device": device,
        "batch_size": tc.eval_batch_size,
        "precision": tc.precision,
        "channels_last": tc.channels_last,
    }
    info = data.info
    _, teacher_accuracy = evaluate(teacher, data.test, mean=info.mean, std=info.std, **run)
    outputs = precompute_teacher_outputs(teacher, data, monitor=monitor, **run)  # type: ignore[arg-type]
    if outputs.measurement is not None:
        trial.phases["teacher_logits"] = outputs.measurement
    trial.details["distill"] = {**config.to_dict(), "teacher_test_accuracy": teacher_accuracy}
    task = DistillationTask(
        teacher, config, teacher_outputs=outputs, label_smoothing=tc.label_smoothing
    )
    return fit(student, data, tc, monitor=monitor, step_fn=task.step, progress=progress)


def teacher_for(
    spec: TrialSpec,
    name: str,
    data: DatasetSplits,
    tc: TrainConfig,
    monitor: EnergyMonitor,
    cache: TrialCache | None,
    teacher_dir: str | Path | None,
    trial: _Trial | None = None,
) -> nn.Module:
    """A trained teacher ``name`` (width 1.0, no pretrained weights) for ``spec``'s data.

    The teacher is trained with the trial's own training settings (epochs, batch size, lr,
    seed...) on the same data. It is looked up, in order, in ``cache``, in ``teacher_dir``
    (``<name>-<key>.pt``, a wattwise checkpoint whose ``result`` holds the teacher's measured
    training) and else trained here, in this trial's monitor; the trial that trains it records
    the phase ``teacher``. Every distillation trial records the teacher's cost in
    ``details["teacher"]`` (``train_energy_j``, provenance, accuracy, ``trained_here``).

    Raises:
        TrialFailure: The teacher's training diverged or ran out of memory.
    """
    from wattwise.train.checkpoint import load_checkpoint, save_checkpoint

    info = data.info
    teacher_spec = {
        "name": name,
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": info.image_size,
    }
    key = trial_hash(
        {
            "teacher": teacher_spec,
            "dataset": spec.dataset,
            "image_size": spec.image_size,
            "val_fraction": spec.val_fraction,
            "seed": spec.seed,
            "train": tc.to_dict(),
        }
    )
    path = Path(teacher_dir) / f"{name}-{key}.pt" if teacher_dir is not None else None
    entry = cache.get(("teacher", key)) if cache is not None else None
    if entry is None and path is not None and path.is_file():
        checkpoint = load_checkpoint(path)
        entry = (checkpoint.state_dict, checkpoint.result)
    trained_here = entry is None
    if entry is None:
        torch.manual_seed(spec.seed)
        teacher = create_model(**teacher_spec)  # type: ignore[arg-type]
        result = fit(teacher, data, tc, monitor=monitor, progress=False)
        if result.status != "ok" or result.fit is None:
            raise TrialFailure(f"teacher {name} {result.status}: {result.reason}")
        if trial is not None:
            trial.phases["teacher"] = result.fit
        summary = {
            "train_energy_j": result.train_energy_j,
            "train_energy_provenance": result.fit.total_provenance,
            "train_duration_s": result.fit.duration_s,
            "test_accuracy": result.test_accuracy,
            "trained_by_trial": spec.trial_id,
        }
        state = {k: v.detach().cpu().clone() for k, v in teacher.state_dict().items()}
        entry = (state, summary)
        if path is not None:
            _save_teacher(path, teacher, teacher_spec, tc, spec, summary, save_checkpoint)
    state, summary = entry
    if cache is not None:
        cache[("teacher", key)] = entry
    teacher = create_model(**teacher_spec)  # type: ignore[arg-type]
    teacher.load_state_dict(state)
    if trial is not None:
        trial.details["teacher"] = {
            **summary,
            "model": teacher_spec,
            "key": key,
            "trained_here": trained_here,
            "path": str(path) if path is not None else None,
        }
    return teacher


def _save_teacher(
    path: Path,
    teacher: nn.Module,
    teacher_spec: dict[str, Any],
    tc: TrainConfig,
    spec: TrialSpec,
    summary: dict[str, Any],
    save_checkpoint: Any,
) -> None:
    """Writes the teacher atomically under a unique temporary name (workers may race)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        save_checkpoint(
            tmp,
            teacher,
            model_spec=teacher_spec,
            train_config=tc.to_dict(),
            dataset={"name": spec.dataset, "image_size": spec.image_size, "seed": spec.seed},
            result=summary,
        )
        os.replace(tmp, path)
    except OSError:  # a cache that cannot be written costs time, not results
        with contextlib.suppress(OSError):
            tmp.unlink()


# --- helpers ----------------------------------------------------------------------------------


def combine_provenance(kinds: Sequence[str | None]) -> str:
    """One provenance for a sum: the common kind, ``mixed``, or ``unavailable`` if any is."""
    present = {k for k in kinds if k}
    if not present or "unavailable" in present:
        return "unavailable"
    return present.pop() if len(present) == 1 else "mixed"


def _environment(device: str, monitor: EnergyMonitor) -> dict[str, Any]:
    from wattwise.train.run import environment

    return {
        **environment(),
        "device": device,
        "hostname": platform.node(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "energy_components": monitor.components,
    }


def _reset_compiler() -> None:
    """Frees torch.compile's caches after an int8 trial (each trial compiles a new graph)."""
    with contextlib.suppress(Exception):
        torch.compiler.reset()
