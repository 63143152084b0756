"""Plan before spending: what a study will run, what it reuses, and what would fail anyway.

    plan = plan_study(config, store)       # no training, no data loading
    print("\\n".join(plan.lines()))
    plan.check()                           # ConfigError: one line, before any trial runs

The plan counts the trials (and how many are still pending in ``store``), the distinct
trainings after reuse (trials that share dataset, model, training settings and seed train once:
:mod:`wattwise.experiment.baselines`; a distilled student is its own training), the
distillation teachers to train, and an estimate of time and energy from matching trials already
in the store. It checks, without loading anything, that every dataset's files are where the
study says (unless it downloads them), that every checkpoint it names exists, that every
dataset, model and device is known here, and that a GPU memory cap is not asked of a study
that trains on a CPU (where N caps would be N identical trials).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigError, WattwiseError
from wattwise.experiment.baselines import baseline_key
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.spec import TrialSpec, trial_hash
from wattwise.optimize.distill_config import DistillConfig


@dataclass(frozen=True)
class StudyPlan:
    """What a study will run (see the module docstring).

    Attributes:
        study: Its name.
        trials: Trials in the grid.
        pending: Of those, not yet ``ok`` in the store (all when there is no store).
        trainings: Distinct trainings of the grid after reuse.
        pending_trainings: Distinct trainings among the pending trials that no finished trial
            has run yet.
        teachers: Distinct distillation teachers the grid trains (``name`` per training).
        problems: What would make trials fail, one line each (empty: ready to run).
        estimate_duration_s, estimate_energy_j: Of the pending trials, from matching finished
            trials (same dataset, model, epochs and batch size); ``None`` without any.
        estimate_basis: How the estimate was made, or why there is none.
    """

    study: str
    trials: int
    pending: int
    trainings: int
    pending_trainings: int
    teachers: tuple[str, ...]
    problems: tuple[str, ...]
    estimate_duration_s: float | None
    estimate_energy_j: float | None
    estimate_basis: str

    def lines(self) -> list[str]:
        """The plan for a terminal, at most 80 columns a line where the names allow."""
        out = [
            f"study {self.study}: {self.trials} trial(s), {self.pending} to run",
            f"trainings after reuse: {self.trainings} for {self.trials} trial(s) "
            f"({self.pending_trainings} still to train)",
            f"distillation teachers to train: {len(self.teachers)}"
            + (f" ({', '.join(sorted(set(self.teachers)))})" if self.teachers else ""),
        ]
        if self.estimate_duration_s is not None:
            energy = f", {self.estimate_energy_j / 1e3:.3g} kJ" if self.estimate_energy_j else ""
            out.append(
                f"estimate for the pending trials: {self.estimate_duration_s / 60:.3g} min"
                f"{energy} ({self.estimate_basis})"
            )
        else:
            out.append(f"estimate: none ({self.estimate_basis})")
        out += [f"problem: {p}" for p in self.problems]
        out.append("ready to run" if not self.problems else f"{len(self.problems)} problem(s)")
        return out

    def check(self) -> None:
        """Refuses a study that would fail before it spends anything.

        Raises:
            ConfigError: The first problem, and how many there are.
        """
        if self.problems:
            more = (
                f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
            )
            raise ConfigError(f"study {self.study!r}: {self.problems[0]}{more}")


def plan_study(
    config: Any,
    records: Iterable[TrialRecord] = (),
    specs: Sequence[TrialSpec] | None = None,
) -> StudyPlan:
    """The plan of a study (a ``StudyConfig``), against its finished ``records``.

    ``specs`` defaults to :func:`~wattwise.experiment.spec.expand_grid` of ``config``.
    """
    from wattwise.experiment.spec import expand_grid

    specs = list(specs) if specs is not None else expand_grid(config)
    done = {r.trial_id: r for r in records if r.status == "ok"}
    pending = [s for s in specs if s.trial_id not in done]
    training = {s.trial_id: _training(s) for s in specs}
    trained = {training[s.trial_id] for s in specs if s.trial_id in done}
    teachers: dict[str, str] = {}
    for spec in specs:
        first = spec.steps[0]
        if isinstance(first, DistillConfig) and first.teacher is not None:
            teachers.setdefault(_teacher_key(spec, first.teacher), first.teacher)
    duration, energy, basis = _estimate(pending, list(done.values()))
    return StudyPlan(
        study=config.name,
        trials=len(specs),
        pending=len(pending),
        trainings=len(set(training.values())),
        pending_trainings=len({training[s.trial_id] for s in pending} - trained),
        teachers=tuple(teachers.values()),
        problems=tuple(_problems(specs)),
        estimate_duration_s=duration,
        estimate_energy_j=energy,
        estimate_basis=basis,
    )


def _training(spec: TrialSpec) -> str:
    """Trials with the same value train once; a distilled student trains on its own."""
    if isinstance(spec.steps[0], DistillConfig):
        return f"distill:{spec.trial_id}"
    return baseline_key(spec)


def _teacher_key(spec: TrialSpec, name: str) -> str:
    tc = spec.train
    return trial_hash({"teacher": name, "dataset": spec.dataset, "image_size": spec.image_size,
                       "val_fraction": spec.val_fraction, "train": tc.to_dict()})  # fmt: skip


def _match(spec: TrialSpec | TrialRecord) -> tuple[Any, ...]:
    values = spec.spec if isinstance(spec, TrialRecord) else spec.to_dict()
    train = values.get("train") or {}
    return (values.get("dataset"), values.get("model"), train.get("epochs"),
            train.get("batch_size"))  # fmt: skip


def _estimate(
    pending: Sequence[TrialSpec], done: Sequence[TrialRecord]
) -> tuple[float | None, float | None, str]:
    if not pending:
        return 0.0, 0.0, "nothing to run"
    by_match: dict[tuple[Any, ...], list[TrialRecord]] = {}
    for rec in done:
        by_match.setdefault(_match(rec), []).append(rec)
    duration = energy = 0.0
    matched = 0
    for spec in pending:
        similar = by_match.get(_match(spec))
        if not similar:
            continue
        matched += 1
        duration += statistics.median(r.duration_s or 0.0 for r in similar)
        energy += statistics.median(r.total_energy_j for r in similar)
    if not matched:
        return None, None, "no finished trial with the same dataset, model, epochs and batch size"
    basis = (
        f"median of matching finished trials, for {matched} of {len(pending)} pending trial(s); "
        "reuse of trained baselines makes it an upper bound"
    )
    if matched < len(pending):
        duration *= len(pending) / matched
        energy *= len(pending) / matched
        basis += "; the rest scaled alike"
    return duration, energy, basis


def _problems(specs: Sequence[TrialSpec]) -> list[str]:
    from wattwise.train.device import resolve_device

    problems: dict[str, None] = {}
    seen: set[tuple[Any, ...]] = set()
    capped_on_cpu: set[Any] = set()
    for spec in specs:
        tc = spec.train
        key = (spec.dataset, spec.model, tc.device, tc.precision)
        if key not in seen:
            seen.add(key)
            try:
                check_trial(spec)
            except WattwiseError as err:
                problems[str(err)] = None
        if tc.gpu_memory_gib is not None:
            try:
                on_cpu = resolve_device(tc.device).type != "cuda"
            except WattwiseError:
                on_cpu = False  # an unknown device is reported by check_trial
            if on_cpu:
                capped_on_cpu.add(tc.gpu_memory_gib)
        data = (spec.dataset, spec.data_root, spec.image_size, spec.download)
        if data not in seen:
            seen.add(data)
            missing = _missing_data(spec)
            if missing:
                problems[missing] = None
        for path in _checkpoints(spec):
            if not Path(path).exists():
                problems[f"checkpoint {path} does not exist"] = None
    if capped_on_cpu:
        caps = ", ".join(f"{c:g}" for c in sorted(capped_on_cpu))
        problems[
            f"gpu_memory_gib [{caps}] caps GPU memory, but this study trains on the CPU (no "
            f"CUDA here): the caps would run {len(capped_on_cpu)} identical trial(s) per point; "
            "remove gpu_memory_gib or run on a GPU"
        ] = None
    return list(problems)


def check_trial(spec: TrialSpec) -> None:
    """Refuses, before anything runs, what would fail every attempt: an unknown dataset or
    model, a device that is not here, fp16 autocast on a CPU.

    Raises:
        ConfigError: One line saying what to change.
    """
    from wattwise.data import list_datasets
    from wattwise.models import list_models
    from wattwise.train.device import resolve_device

    for kind, name, known in (
        ("dataset", spec.dataset, list_datasets()),
        ("model", spec.model, list_models()),
    ):
        if name not in known:
            raise ConfigError(f"unknown {kind} {name!r}; choose from: {', '.join(known)}")
    device = resolve_device(spec.train.device)
    if spec.train.precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 autocast is for GPUs; on CPU use precision bf16")
    if spec.train.gpu_power_limit_w is not None and device.type != "cuda":
        raise ConfigError(
            f"a GPU power limit needs a GPU: this trial runs on {device.type}; drop "
            "gpu_power_limits_w (--gpu-power-limit-w) or train on a GPU"
        )


def check_spec(spec: TrialSpec) -> None:
    """Refuses one trial that would fail before it spends anything (``wattwise train``): an
    unknown dataset, model or device, its data files missing, a checkpoint that is not there.

    Raises:
        ConfigError: The first problem, in one line.
    """

    check_trial(spec)
    missing = _missing_data(spec)
    if missing:
        raise ConfigError(missing)
    for path in _checkpoints(spec):
        if not Path(path).exists():
            raise ConfigError(f"checkpoint {path} does not exist")


def _missing_data(spec: TrialSpec) -> str | None:
    """Why the dataset's files are not there (``None``: present, downloaded, or embedded)."""
    from wattwise.data import DATASETS
    from wattwise.data.root import resolve_data_root

    if spec.download or spec.dataset not in DATASETS:
        return None  # fetched by the trial, or reported as unknown by check_trial
    try:
        reader = DATASETS.create(spec.dataset)
        if reader.folder is None:
            return None  # embedded (digits) or synthetic
        reader.source_files(reader.locate(resolve_data_root(spec.data_root)), spec.image_size)
    except WattwiseError as err:
        return str(err).splitlines()[0]
    return None


def _checkpoints(spec: TrialSpec) -> list[str]:
    """The checkpoint files a trial names: its weights (when a path) and distillation teachers."""
    from wattwise.optimize.distill_config import is_checkpoint_path

    paths = [spec.weights] if spec.weights and is_checkpoint_path(spec.weights) else []
    for step in spec.steps:
        if isinstance(step, DistillConfig) and step.teacher_checkpoint:
            paths.append(step.teacher_checkpoint)
    return paths
