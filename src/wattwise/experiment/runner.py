"""One trial -> one TrialRecord: data -> model -> train (or distill) -> recipe steps -> measure.

    from wattwise.experiment.runner import run_trial
    record = run_trial(spec)        # never raises for a failed trial

This is the one pipeline: a study's trials and ``wattwise train`` (a one-trial run of technique
``baseline`` that also saves the trained model) both run it. The phases of a trial, each in its
own EnergyMonitor window whose :class:`~wattwise.energy.base.Measurement` is handed back as a
value:

1. **data**: the dataset is loaded once per (dataset, root, image size, validation share, seed)
   and kept in ``data_cache`` (a dict the caller owns and may clear).
2. **train**: the model is trained with ``fit`` — once per training: a trial whose training
   (:func:`~wattwise.experiment.spec.training_key`) another trial of the study already ran
   reuses those weights from ``data_cache`` or the study's ``baselines/`` folder
   (:mod:`wattwise.experiment.baselines`). A technique that starts with ``distill:<teacher>``
   trains the student by the ``distill`` technique instead; a named teacher is trained first,
   with the trial's own training settings, once per (teacher, data, settings) and reused from
   ``data_cache`` and ``teacher_dir`` (see :mod:`wattwise.experiment.teachers`).
3. **recipe**: the other steps run through :func:`wattwise.optimize.recipe.run_recipe`, which
   measures the trained model (``baseline``) and every variant by the same inference protocol
   and computes the payback of each step.
4. **keep**: in a study folder, the final variant is saved in ``models/<trial_id>/``
   (:mod:`wattwise.experiment.kept_models`; ``details["model"]`` says where and how to load it;
   not measured, and a model that cannot be saved fails nothing).

Phase names in ``TrialRecord.phases``: ``teacher`` (teacher training, only in the trial that
trained it), ``teacher_logits`` (the teacher pass over the training split), ``train`` (the
trial's training: training and validation passes), ``test`` (final test evaluation),
``recipe/<step>`` (what each step cost: fine-tuning, calibration, compiling), ``inference/<step>``
(each intermediate variant) and ``inference`` (the final model). Nothing is counted twice.
A trial in a study folder saves its running training in ``checkpoints/<trial_id>.pt`` (at most
every ``checkpoint_every_s``): started again after an interruption (a SLURM requeue, a resumed
sweep, ``--retry-failed``) it continues after the last saved epoch, and records
``details["train"]["resumed"]`` (:mod:`wattwise.train.resume`; a distillation student trains
from scratch again). A trial with a GPU power limit (``gpu_power_limit_w``) holds it through all
of its phases and records it in ``details["power_limit"]`` (:mod:`wattwise.energy.power_limit`).

Size: about 610 lines: the one pipeline, phase by phase, with the bookkeeping of what a trial
measured so far (``_Trial``), so that a trial that fails half-way keeps it; splitting the phases
over modules would scatter one sequence.

Any exception — missing data, out of memory, divergence, a bug — ends the trial as ``failed``
with a one-line reason (:func:`failure_reason`: an out-of-memory outside the training names
what the trial was doing); what was measured before is kept. ``KeyboardInterrupt`` is not caught:
an interrupted trial stays ``running`` in the store and runs again on resume.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wattwise.data import DatasetSplits, load_dataset
from wattwise.energy.base import Measurement
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.power_limit import gpu_power_limit
from wattwise.energy.profiler import OperatorProfile, profile_training_steps
from wattwise.errors import TechniqueError, WattwiseError
from wattwise.experiment.baselines import (
    BASELINE_DIR,
    TrainedBaseline,
    find_baseline,
    keep_baseline,
)
from wattwise.experiment.environment import environment
from wattwise.experiment.kept_models import keep_model
from wattwise.experiment.plan import check_spec, check_trial
from wattwise.experiment.record import TrialRecord, VariantRecord
from wattwise.experiment.spec import TrialSpec
from wattwise.experiment.teachers import (
    TEACHER_DIR,
    TrialCache,
    TrialFailure,
    model_spec_for,
    teacher_for,
)
from wattwise.files import write_json_atomic
from wattwise.models import create_model
from wattwise.optimize import DistillConfig, TechniqueConfig, TechniqueContext, apply_technique
from wattwise.optimize.base import BaselineConfig, PreparedModel
from wattwise.optimize.compare import Comparison
from wattwise.optimize.grammar import format_recipe
from wattwise.optimize.profiles import profile_variants
from wattwise.optimize.recipe import RecipeSettings, VariantResult, run_recipe
from wattwise.train.checkpoint import save_checkpoint
from wattwise.train.config import MemoryCap
from wattwise.train.device import (
    is_out_of_memory,
    num_threads,
    out_of_memory_reason,
    resolve_device,
)
from wattwise.train.loop import EpochRecord, TrainProgress, TrainResult, fit
from wattwise.train.predict import predictions
from wattwise.train.resume import ResumeFile
from wattwise.validation import dump

__all__ = [
    "MAX_REASON",
    "TEACHER_DIR",
    "TrialCache",
    "TrialFailure",
    "check_trial",
    "environment",
    "failure_reason",
    "load_trial_data",
    "recipe_settings",
    "run_trial",
    "train_and_save",
]

#: Epochs of fine-tuning after a pruning step (at most the trial's own epochs).
FINETUNE_EPOCHS = 2

#: Longest failure reason kept (characters).
MAX_REASON = 500

#: Folder (below the study folder) of the running trainings' saved states.
RESUME_DIR = "checkpoints"
#: The file ``run_trial(..., checkpoint=...)`` writes the trained model to (wattwise train).
CHECKPOINT_FILE = "checkpoint.pt"

_PEAKS = ("peak_rss_bytes", "peak_cuda_allocated_bytes", "peak_cuda_reserved_bytes")


def _peak(measurements: Sequence[Measurement], key: str) -> int | None:
    values = [v for v in (getattr(m, key) for m in measurements) if v is not None]
    return max(values, default=None)


@dataclass
class _Trial:
    """What a trial has measured so far (kept when it fails half-way)."""

    spec: TrialSpec
    started_unix_s: float
    phases: dict[str, Measurement] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    variants: list[VariantResult] = field(default_factory=list)
    memory_cap: MemoryCap | None = None
    train_energy_j: float | None = None
    train_energy_provenance: str | None = None
    comparison: Comparison | None = None
    profiles: list[OperatorProfile] = field(default_factory=list)  # measurement.profile
    #: What the trial is doing, in words (``None``: its training), for an out-of-memory reason.
    stage: str | None = "setting up the trial"

    def record(self, duration_s: float) -> TrialRecord:
        peaks = {key: _peak(list(self.phases.values()), key) for key in _PEAKS}
        steps = [v for v in self.variants if not v.reference]
        final = steps[-1] if steps else None
        compared = self.comparison
        return TrialRecord(
            trial_id=self.spec.trial_id,
            study=self.spec.study,
            spec=self.spec.to_dict(),
            status="ok",
            accuracy=final.accuracy if final else None,
            train_energy_j=self.train_energy_j,
            train_energy_provenance=self.train_energy_provenance,
            inference_energy_per_image_j=final.inference_energy_per_image_j if final else None,
            inference_energy_provenance=final.inference_energy_provenance if final else None,
            duration_s=duration_s,
            params=final.params if final else None,
            macs=final.macs if final else None,
            model_bytes=final.model_bytes if final else None,
            latency_p50_ms=final.latency_p50_ms if final else None,
            latency_p95_ms=final.latency_p95_ms if final else None,
            images_per_s=final.images_per_s if final else None,
            phases=self.phases,
            variants=tuple(VariantRecord.from_dict(v.to_dict()) for v in self.variants),
            memory_cap=self.memory_cap,
            comparison=compared.to_dict() if compared is not None else {},
            noisy=compared.noisy if compared is not None else False,
            noise=compared.noise if compared is not None else (),
            threads=compared.threads if compared is not None else None,
            profiles=tuple(self.profiles),
            history=tuple(self.history),
            details=self.details,
            environment=self.environment,
            started_unix_s=self.started_unix_s,
            **peaks,
        )


def run_trial(
    spec: TrialSpec,
    *,
    data_cache: TrialCache | None = None,
    teacher_dir: str | Path | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: TrainProgress | None = None,
    checkpoint: str | Path | None = None,
) -> TrialRecord:
    """Runs one trial end to end and returns its record; a failure is a record, not an error.

    Args:
        spec: The trial (from :func:`wattwise.experiment.spec.expand_grid`, or built by
            ``wattwise train``).
        data_cache: Datasets and trained teachers kept between trials (see :data:`TrialCache`).
        teacher_dir: The study's ``teachers/`` folder, where trained teachers are saved and
            looked up (``None``: nowhere). Its parent is the study folder, which also holds the
            trained baselines (``baselines/``) and the model each ok trial keeps (``models/``,
            unless ``spec.keep_models`` is off: :mod:`wattwise.experiment.kept_models`).
        on_epoch: Called with each epoch's record of the trial's own training (``fit``, or the
            distillation student's), never of a recipe step's (fine-tuning after pruning); a
            trial that reuses a trained baseline trains nothing and calls it never.
        progress: Told the batches of the trial's training (a progress bar).
        checkpoint: If given, the trained model (before any recipe step) is saved to this file
            as a wattwise checkpoint (``wattwise train`` does), with the record's summary.

    Returns:
        The record (``ok``, or ``failed`` with a one-line reason and what was measured).
    """
    started, t0 = time.time(), time.perf_counter()
    trial = _Trial(spec, started)
    try:
        _execute(trial, data_cache, teacher_dir, on_epoch, progress, checkpoint)
        return trial.record(time.perf_counter() - t0)
    except Exception as err:
        trial.details["error"] = f"{type(err).__name__}: {err}"[:2000]
        failed = trial.record(time.perf_counter() - t0).failed(
            failure_reason(err, spec, trial.stage)
        )
        out_of_memory = is_out_of_memory(err) or isinstance(err, MemoryError)
    if out_of_memory:  # out of the handler: the traceback's frames no longer hold the tensors
        _release_memory()
    return failed


def train_and_save(
    spec: TrialSpec,
    folder: str | Path,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: TrainProgress | None = None,
) -> TrialRecord:
    """``wattwise train``: the one-trial pipeline, then the run saved in ``folder``.

    The folder gets ``checkpoint.pt`` (the trained model with its spec and settings; a
    ``wattwise optimize --checkpoint`` input), ``run.json`` (the trial record: everything
    measured, with provenance) and ``config.json`` (the trial spec, to run it again), each
    written atomically.

    Raises:
        ConfigError: The spec cannot run here (see :func:`~wattwise.experiment.plan.check_spec`);
            nothing is written.
        WattwiseError: The folder cannot be written.
    """
    check_spec(spec)  # unknown names, missing data or checkpoints: refused, nothing written
    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
        record = run_trial(
            spec, on_epoch=on_epoch, progress=progress, checkpoint=target / CHECKPOINT_FILE
        )
        write_json_atomic(target / "run.json", record.to_dict())
        write_json_atomic(target / "config.json", spec.to_dict())
    except OSError as err:
        raise WattwiseError(f"cannot write the run to {target}: {err.strerror or err}") from err
    return record


def failure_reason(
    err: BaseException, spec: TrialSpec | None = None, stage: str | None = None
) -> str:
    """One line saying why a trial failed (at most :data:`MAX_REASON` characters): the
    exception's type and message; out of memory (CUDA's, a ``RuntimeError`` saying so, or
    ``MemoryError``) reads as the training loop reports it — ``does not fit in 8 GiB`` under a
    GPU memory cap, else ``out of memory: <error>`` — and names ``stage``, what the trial was
    doing outside its training: ``does not fit in 8 GiB: out of memory while measuring 3 variants
    side by side (<error>)``, ``out of memory while loading the data: MemoryError``."""
    error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    cap = spec.gpu_memory_gib if spec is not None else None
    if isinstance(err, (TrialFailure, TechniqueError)):  # their message is the reason
        text = str(err)
    elif not (is_out_of_memory(err) or isinstance(err, MemoryError)):
        text = error
    elif stage is None:  # the trial's training: as fit reports an out-of-memory it catches
        text = out_of_memory_reason(err, cap).rstrip(": ")  # MemoryError() has no message
    elif cap:
        text = f"{out_of_memory_reason(err, cap)}: out of memory while {stage} ({error})"
    else:
        text = f"out of memory while {stage}: {error}"
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


def recipe_settings(
    spec: TrialSpec, steps: Sequence[TechniqueConfig], device: str
) -> RecipeSettings:
    """How a trial's recipe steps run: fine-tuning after pruning for ``min(2, epochs)`` epochs at
    the trial's learning rate, variants measured with the study's inference settings, on CPU
    when a step runs on CPU only (x86 int8), else on the training device."""
    return RecipeSettings(
        finetune_epochs=min(FINETUNE_EPOCHS, spec.epochs),
        finetune_lr=spec.lr,
        batch_size=spec.measurement.inference_batch_size,
        inference_s=spec.measurement.inference_s,
        device="cpu" if any(s.cpu_only for s in steps) else device,
        seed=spec.seed,
        gpu_memory_gib=spec.gpu_memory_gib,
    )


def _execute(
    trial: _Trial,
    cache: TrialCache | None,
    teacher_dir: str | Path | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    progress: TrainProgress | None,
    checkpoint: str | Path | None,
) -> None:
    spec = trial.spec
    configs = spec.steps
    first = configs[0] if isinstance(configs[0], DistillConfig) else None
    rest = [c for c in configs if c is not first and not isinstance(c, BaselineConfig)]
    tc = spec.train
    with contextlib.ExitStack() as stack:
        monitor = stack.enter_context(EnergyMonitor(spec.measurement.monitor_config()))
        stack.enter_context(num_threads(tc.num_threads))
        if any(c.int8 for c in rest):
            stack.callback(_reset_compiler)
        device = resolve_device(tc.device)
        limit = stack.enter_context(gpu_power_limit(tc.gpu_power_limit_w, str(device)))
        if limit is not None:  # held for every phase: training, technique steps, measurement
            trial.details["power_limit"] = limit.to_dict()
        trial.environment = environment(str(device), monitor)
        trial.stage = "loading the data"
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
        model_spec = model_spec_for(spec.model, info, spec.width)
        trial.details["model_spec"] = model_spec
        torch.manual_seed(spec.seed)
        trial.stage = "creating the model"
        model = create_model(**model_spec, weights=spec.weights)
        study_dir = Path(teacher_dir).parent if teacher_dir is not None else None
        shared = study_dir / BASELINE_DIR if study_dir is not None else None
        trial.stage = "loading the trained baseline"
        reused = find_baseline(spec, cache, shared) if first is None else None
        trial.stage = None  # the training: fit moves the model to the device, trains, tests
        if reused is not None:  # train once, compress many: another trial trained these weights
            model.load_state_dict(reused.state)
            _record_reused(trial, reused)
        else:
            with _profiled_training(trial, model, monitor):
                if first is not None:
                    result = _distill(
                        trial, first, model, data, monitor, cache, teacher_dir, on_epoch
                    )
                else:
                    resume = _resume_file(spec, study_dir)
                    result = fit(
                        model,
                        data,
                        tc,
                        monitor=monitor,
                        progress=progress,
                        on_epoch=on_epoch,
                        resume=resume,
                    )
            _record_training(trial, result)
        if checkpoint is not None:  # a diverged model is kept too, with its status
            _save_trained(checkpoint, model, model_spec, trial)
        if reused is None and result.status != "ok":
            why = result.reason or result.status
            raise TrialFailure(why if result.status == "oom" else f"{result.status}: {why}")
        if reused is None and first is None:
            trial.stage = "saving the trained baseline"
            kept = keep_baseline(spec, model, model_spec, _training_summary(trial), cache, shared)
            trial.details["baseline"] = kept.details(trained_here=True)
        final = _apply_recipe(trial, model, data, rest, str(device), model_spec, monitor)
        if study_dir is not None and spec.keep_models:  # measured: what to deploy of it, kept
            trial.details["model"] = keep_model(spec.trial_id, final, data, model_spec, study_dir)


def _training_summary(trial: _Trial) -> dict[str, Any]:
    """What the trials that reuse this trial's trained weights record of their training."""
    phases = [trial.phases[p] for p in ("train", "test") if p in trial.phases]
    return {
        "trained_by_trial": trial.spec.trial_id,
        "training_energy_j": sum(m.total_energy_j for m in phases),
        "train_energy_j": trial.train_energy_j,
        "train_energy_provenance": trial.train_energy_provenance,
        "history": list(trial.history),
        "train": dict(trial.details["train"]),
        "memory_cap": trial.memory_cap.to_dict() if trial.memory_cap is not None else None,
    }


def _record_reused(trial: _Trial, baseline: TrainedBaseline) -> None:
    """A trial that reuses another trial's training: its history and results, none of its
    phases (their joules are in the trial that trained; analysis charges 1/k to each)."""
    summary = baseline.summary
    trial.history = list(summary.get("history") or [])
    trial.details["train"] = {**(summary.get("train") or {}), "reused": True}
    trial.details["baseline"] = baseline.details(trained_here=False)
    if summary.get("memory_cap") is not None:
        trial.memory_cap = MemoryCap.from_dict(summary["memory_cap"])
    trial.train_energy_j = summary.get("train_energy_j")
    trial.train_energy_provenance = summary.get("train_energy_provenance")


def _record_training(trial: _Trial, result: TrainResult) -> None:
    if result.fit is not None:
        trial.phases["train"] = result.fit
    if result.test is not None:
        trial.phases["test"] = result.test
    trial.history = [r.to_dict() for r in result.history]
    trial.memory_cap = result.memory_cap
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
    if "resumed" in result.extra:  # continued after an interruption: wattwise.train.resume
        trial.details["train"]["resumed"] = result.extra["resumed"]
    # [prediction] what was predicted after each of the first epochs (what `train` showed live)
    made = predictions(result.history, result.config.epochs)
    trial.details["prediction"] = [p.to_dict() for p in made]
    # the trial's own training only: the teacher's pass and training are technique energy
    trial.train_energy_j = result.train_energy_j
    trial.train_energy_provenance = result.fit.total_provenance if result.fit else None


def _resume_file(spec: TrialSpec, study_dir: Path | None) -> ResumeFile | None:
    """Where a trial in a study folder saves its running training (``checkpoints/``), to
    continue from it when started again; ``None`` outside a study or when the study says
    never."""
    if study_dir is None or spec.checkpoint_every_s is None:
        return None
    return ResumeFile(study_dir / RESUME_DIR / f"{spec.trial_id}.pt", spec.checkpoint_every_s)


def _save_trained(
    path: str | Path, model: nn.Module, model_spec: dict[str, Any], trial: _Trial
) -> None:
    spec = trial.spec
    save_checkpoint(
        path,
        model,
        model_spec=model_spec,
        train_config=spec.train.to_dict(),
        dataset={"name": spec.dataset, "info": trial.details["dataset"]},
        result={
            "train_energy_j": trial.train_energy_j,
            "train_energy_provenance": trial.train_energy_provenance,
            **trial.details["train"],
        },
    )


def _apply_recipe(
    trial: _Trial,
    model: nn.Module,
    data: DatasetSplits,
    steps: list[TechniqueConfig],
    device: str,
    model_spec: dict[str, Any],
    monitor: EnergyMonitor,
) -> PreparedModel:
    """Runs the recipe on the trained model, records every variant and returns the final one."""
    settings = recipe_settings(trial.spec, steps, device)
    trial.details["recipe"] = {
        "steps": format_recipe(steps) if steps else "baseline",
        "settings": dump(settings),
    }
    trial.stage = "evaluating the trained model"

    def stage(text: str) -> None:  # "applying <step> (step 1 of 2)", "measuring 3 variants..."
        trial.stage = text

    result = run_recipe(
        model,
        data,
        steps or "baseline",
        settings=settings,
        model_spec=model_spec,
        monitor=monitor,
        on_stage=stage,
    )
    trial.variants = [*result.variants, *result.references]
    for variant in result.variants:
        if variant.step_measurement is not None:
            trial.phases[f"recipe/{variant.step}"] = variant.step_measurement
    if result.benchmark is not None:  # every variant's inference, measured side by side
        trial.phases["inference"] = result.benchmark
    trial.comparison = result.comparison
    if trial.spec.measurement.profile:  # after the comparison: no profiler in its rounds
        trial.stage = "profiling operators"
        for profile in profile_variants(result, data, settings, monitor):
            trial.phases[profile.window] = profile.measurement  # measurement energy
            trial.profiles.append(profile)
    trial.details["notes"] = list(dict.fromkeys(n for v in trial.variants for n in v.notes))
    if settings.inference_s == 0:
        trial.details["notes"].append(
            "measurement.inference_s is 0: latency, throughput and J/image are not reported"
        )
    return result.final


@contextlib.contextmanager
def _profiled_training(trial: _Trial, model: nn.Module, monitor: EnergyMonitor) -> Iterator[None]:
    """With ``measurement.profile``: a few of the training's steps profiled (their window is
    inside the ``train`` phase: training joules, no phase of its own)."""
    if not trial.spec.measurement.profile:
        yield
        return
    with profile_training_steps(model, monitor) as steps:
        yield
    if steps.profile is not None:
        trial.profiles.append(steps.profile)


def _distill(
    trial: _Trial,
    config: DistillConfig,
    student: nn.Module,
    data: DatasetSplits,
    monitor: EnergyMonitor,
    cache: TrialCache | None,
    teacher_dir: str | Path | None,
    on_epoch: Callable[[EpochRecord], None] | None,
) -> TrainResult:
    """Trains ``student`` by the ``distill`` technique; a named teacher comes trained from
    :func:`~wattwise.experiment.teachers.teacher_for` (a checkpoint teacher is loaded by the
    technique itself)."""
    teacher = None
    if config.teacher is not None:
        trial.stage = f"training the teacher {config.teacher}"
        found = teacher_for(
            trial.spec, config.teacher, data, monitor, cache, teacher_dir, config.teacher_kwargs
        )
        trial.stage = None
        if found.training is not None:
            trial.phases["teacher"] = found.training
        trial.details["teacher"] = found.details()
        teacher = found.module
    else:
        trial.details["teacher"] = {"checkpoint": config.teacher_checkpoint, "trained_here": False}
    context = TechniqueContext(
        data=data,
        train_config=trial.spec.train,
        monitor=monitor,
        teacher=teacher,
        on_epoch=on_epoch,
    )
    outcome = apply_technique(student, config, context).report
    if outcome.teacher_pass is not None:  # type: ignore[union-attr]
        trial.phases["teacher_logits"] = outcome.teacher_pass  # type: ignore[union-attr]
    trial.details["distill"] = {
        **config.to_dict(),
        "teacher_test_accuracy": outcome.teacher_test_accuracy,  # type: ignore[union-attr]
    }
    return outcome.train  # type: ignore[union-attr,no-any-return]


def _release_memory() -> None:
    """After running out of memory: what the failed trial held, handed back (the worker's next
    trial needs it; the training loop does the same for an out-of-memory it catches)."""
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _reset_compiler() -> None:
    """Frees torch.compile's caches after an int8 trial (each trial compiles a new graph)."""
    with contextlib.suppress(Exception):
        torch.compiler.reset()
