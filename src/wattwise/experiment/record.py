"""TrialRecord: everything one trial measured, as one frozen, JSON-safe value.

A record is what the results store keeps per trial (docs/experiments.md, "Results store"): the
trial's spec, its status (``ok``, ``failed`` with a reason, or ``running``), accuracy, energy per
phase and component with provenance, time, memory, model size, inference latency and throughput,
every measured variant (:class:`VariantRecord`), the GPU memory cap (:class:`MemoryCap`),
per-epoch history and the environment. Units live in the field names; each quantity has one name.

Only primitives are stored: the efficiency ratios (``accuracy_per_kj_train``,
``accuracy_per_j_per_image``) are properties computed from them, and CO2e is computed at analysis
time from the stored joules (``wattwise.analysis.co2e_g``). :meth:`TrialRecord.from_dict` also
reads the records the previous version wrote.

Size: about 610 lines: one frozen schema (the trial record, its typed variant record, the phase
accounting by category and the migration of old records) that readers and writers share;
splitting it would scatter one schema over several modules.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import PurePath
from typing import Any, Literal

from wattwise.experiment.comparison_columns import ComparisonColumns
from wattwise.train.config import MemoryCap, current_keys

TrialStatus = Literal["ok", "failed", "running"]
STATUSES: tuple[str, ...] = ("ok", "failed", "running")

#: Numeric headline metrics: what analysis and search read by name (``search.objectives``).
#: ``accuracy_per_kj_train`` and ``accuracy_per_j_per_image`` are properties, not stored fields.
METRICS: tuple[str, ...] = (
    "accuracy",
    "train_energy_j",
    "inference_energy_per_image_j",
    "accuracy_per_kj_train",
    "accuracy_per_j_per_image",
    "duration_s",
    "peak_rss_bytes",
    "peak_cuda_allocated_bytes",
    "peak_cuda_reserved_bytes",
    "params",
    "macs",
    "model_bytes",
    "latency_p50_ms",
    "latency_p95_ms",
    "images_per_s",
)

_INT_FIELDS = frozenset(
    {"peak_rss_bytes", "peak_cuda_allocated_bytes", "peak_cuda_reserved_bytes"}
    | {"params", "macs", "model_bytes"}
)


# --- the efficiency ratios: the one place they are computed -------------------------------------


def _usable(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def accuracy_per_kj_train(accuracy: float | None, train_energy_j: float | None) -> float | None:
    """Training efficiency: ``accuracy / (train_energy_j / 1000)`` (per kJ).

    Returns:
        ``None`` when a value is missing or not finite, or the energy is not positive.
    """
    if not (_usable(accuracy) and _usable(train_energy_j)) or not train_energy_j > 0:  # type: ignore[operator]
        return None
    return float(accuracy) / (float(train_energy_j) / 1e3)  # type: ignore[arg-type]


def accuracy_per_j_per_image(
    accuracy: float | None, inference_energy_per_image_j: float | None
) -> float | None:
    """Inference efficiency: ``accuracy / inference_energy_per_image_j`` (images per J).

    Returns:
        ``None`` when a value is missing or not finite, or the energy is not positive.
    """
    energy = inference_energy_per_image_j
    if not (_usable(accuracy) and _usable(energy)) or not energy > 0:  # type: ignore[operator]
        return None
    return float(accuracy) / float(energy)  # type: ignore[arg-type]


#: Ratio metric -> (formula, the record fields it is computed from).
RATIOS: dict[str, tuple[Callable[[Any, Any], float | None], tuple[str, str]]] = {
    "accuracy_per_kj_train": (accuracy_per_kj_train, ("accuracy", "train_energy_j")),
    "accuracy_per_j_per_image": (
        accuracy_per_j_per_image,
        ("accuracy", "inference_energy_per_image_j"),
    ),
}


# --- phase accounting: every joule in exactly one category --------------------------------------

PhaseCategory = Literal["training", "technique", "measurement"]
#: The phase categories, in the order reports show them.
PHASE_CATEGORIES: tuple[PhaseCategory, ...] = ("training", "technique", "measurement")
#: The phase of a distillation teacher's training: a technique phase, present only in the trial
#: that trained the teacher; analysis charges a shared teacher 1/k to each of its k trials.
TEACHER_PHASE = "teacher"


def phase_category(name: str) -> PhaseCategory:
    """The category of a phase: ``training`` (``train``: the trial's own training and validation
    passes, ``test``), ``technique`` (``recipe/<step>``, ``teacher_logits``, ``teacher``) or
    ``measurement`` (``inference``, ``inference/<step>``, ``compare/<...>``: benchmark windows;
    ``profile/<variant>``: a variant's profiled inference batches).

    Raises:
        ValueError: A phase name of no category (every joule must be in one).
    """
    head = name.split("/", 1)[0]
    if name in ("train", "test"):
        return "training"
    if (head == "recipe" and "/" in name) or name in ("teacher_logits", TEACHER_PHASE):
        return "technique"
    if name == "inference" or (head in ("inference", "compare", "profile") and "/" in name):
        return "measurement"
    raise ValueError(f"phase {name!r} has no category (training, technique or measurement)")


# --- typed sub-records --------------------------------------------------------------------------

#: Keys of a variant as the previous version stored it -> their name now.
_RENAMED_VARIANT_KEYS = {
    "size_bytes": "model_bytes",
    "size_note": "model_bytes_note",
    "energy_per_image_j": "inference_energy_per_image_j",
    "energy_provenance": "inference_energy_provenance",
    "technique": "applied",
}
_VARIANT_INTS = frozenset({"params", "macs", "model_bytes", "peak_rss_bytes", "rank"})
_VARIANT_NUMBERS = _VARIANT_INTS | {
    "accuracy", "latency_p50_ms", "latency_p95_ms", "images_per_s",
    "inference_energy_per_image_j", "step_energy_j", "step_duration_s",
    "optimization_energy_j", "payback_inferences", "cv_j_per_image", "saving", "saving_low",
    "saving_high", "saving_vs_best_fp32", "saving_vs_best_fp32_low", "saving_vs_best_fp32_high",
    "payback_low", "payback_high",
}  # fmt: skip


@dataclass(frozen=True)
class VariantRecord(ComparisonColumns):
    """One measured variant of a trial: the baseline first, then the model after each step.

    Attributes:
        step: ``baseline`` or the canonical step text, e.g. ``prune:structured:0.5``.
        applied: What has been applied so far, ``+``-joined step names (``baseline``,
            ``prune:structured:0.5+quantize:int8``).
        accuracy: Test accuracy in [0, 1].
        params: Parameter count.
        macs: Multiply-accumulates per image (not FLOPs).
        model_bytes: Size of the variant in bytes (``model_bytes_note`` says how it was counted).
        model_bytes_note: How ``model_bytes`` was measured.
        latency_p50_ms: Median latency of one inference batch.
        latency_p95_ms: 95th percentile latency of one inference batch.
        images_per_s: Images per second of the inference measurement.
        inference_energy_per_image_j: Energy per image of the inference measurement (J).
        inference_energy_provenance: ``measured``, ``estimated``, ``mixed`` or ``unavailable``.
        peak_rss_bytes: Peak resident memory of the process tree during the measurement.
        step_energy_j: What this step itself cost (fine-tuning, calibration, compiling); 0 for
            the baseline.
        step_duration_s: Wall time of the step.
        optimization_energy_j: Step energy summed up to this variant (J).
        payback_inferences: After how many inferences the saving per image repays
            ``optimization_energy_j``: 0 for the baseline, ``None`` when it never pays back (or
            the saving is not significant), from the saving's point estimate.
        notes: Caveats of the measurement, one line each.
        details: The technique's report (achieved sparsity, quantization backend...), JSON-safe.
        reference: A fair-baseline reference that is not a recipe step (``fp32 compiled``,
            ``channels_last``).
        cv_j_per_image: Coefficient of variation of J/image over the comparison's rounds.
        payback_low: Payback (inferences) at the upper end of the saving's interval.
        payback_high: Payback at its lower end (``None``: never).

    The comparison's verdict on the variant (``saving*``, ``best_fp32``, ``verdict``, ``rank``,
    ``noisy``, ``noise``) is in the fields of :class:`ComparisonColumns`. The inference numbers
    (J/image, images/s, latency) of a compared variant are the medians over the comparison's
    rounds; records written before comparisons existed leave the comparison fields at their
    defaults.
    """

    step: str
    applied: str
    accuracy: float | None
    params: int | None
    macs: int | None
    model_bytes: int | None
    model_bytes_note: str
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    images_per_s: float | None
    inference_energy_per_image_j: float | None
    inference_energy_provenance: str | None
    peak_rss_bytes: int | None
    step_energy_j: float
    step_duration_s: float
    optimization_energy_j: float
    payback_inferences: float | None
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    reference: bool = False
    cv_j_per_image: float | None = None
    payback_low: float | None = None
    payback_high: float | None = None

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        for name in _VARIANT_NUMBERS:
            setattr_(self, name, _number(getattr(self, name), name in _VARIANT_INTS))
        for name in ("reference", "noisy", "saving_significant"):
            setattr_(self, name, _flag(getattr(self, name), name, optional=name.startswith("s")))
        setattr_(self, "notes", tuple(str(n) for n in self.notes))
        setattr_(self, "noise", tuple(str(n) for n in self.noise))
        setattr_(self, "details", json_safe(self.details))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``notes`` as a list)."""
        return json_safe(asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantRecord:
        """Inverse of :meth:`to_dict`; also reads the keys the previous version stored
        (``size_bytes``, ``size_note``, ``energy_per_image_j``, ``energy_provenance``,
        ``technique``). Unknown keys are ignored.

        Raises:
            ValueError: A field is missing.
        """
        values = {k: v for k, v in data.items() if k not in _RENAMED_VARIANT_KEYS}
        for old, new in _RENAMED_VARIANT_KEYS.items():
            if old in data:
                values.setdefault(new, data[old])
        return cls(**_known_fields(cls, values, "variant"))


def _known_fields(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The items of ``data`` that are fields of ``cls``; every field without a default is needed."""
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    missing = [
        f.name
        for f in fields(cls)
        if f.default is MISSING and f.default_factory is MISSING and f.name not in values
    ]
    if missing:
        raise ValueError(f"{what} record lacks {', '.join(missing)}")
    return values


@dataclass(frozen=True)
class TrialRecord:
    """One trial's result.

    Attributes:
        trial_id: The trial's identity (hash of its resolved spec).
        study: Name of the study that ran it.
        spec: The resolved trial spec (``TrialSpec.to_dict()``).
        status: ``ok``, ``failed`` or ``running``.
        reason: Why it failed (one line), else ``None``.
        accuracy: Test accuracy in [0, 1].
        train_energy_j: Energy of training (all top-level components summed).
        train_energy_provenance: ``measured``, ``estimated``, ``mixed`` or ``unavailable``.
        inference_energy_per_image_j: Energy per image of the inference measurement.
        inference_energy_provenance: As ``train_energy_provenance``, for inference.
        duration_s: Wall time of the whole trial.
        peak_rss_bytes: Peak resident memory of the process tree.
        peak_cuda_allocated_bytes: Peak memory allocated by PyTorch on the GPU.
        peak_cuda_reserved_bytes: Peak memory reserved by PyTorch's caching allocator.
        params: Parameter count of the final model.
        macs: Multiply-accumulates per image of the final model (not FLOPs).
        model_bytes: Size of the final model in bytes.
        latency_p50_ms: Median latency of one inference batch.
        latency_p95_ms: 95th percentile latency of one inference batch.
        images_per_s: Images per second of the inference measurement.
        phases: Phase name (``train``, ``recipe/<step>``, ``inference``...) ->
            ``Measurement.to_dict()`` (energy per component with provenance); a ``Measurement``
            is converted on the way in.
        variants: Every measured variant in order, the baseline first (a mapping is read with
            :meth:`VariantRecord.from_dict`).
        memory_cap: The GPU memory cap and whether it was enforced (a mapping or an object with
            ``to_dict()`` is read with :meth:`MemoryCap.from_dict`).
        history: Per-epoch records (``EpochRecord.to_dict()``), in order.
        details: Other results (dataset facts, notes...), JSON-safe.
        environment: Software and hardware the trial ran on.
        started_unix_s: When the (last) attempt started, seconds since the epoch.
        finished_unix_s: When it finished, or ``None`` while running.
        attempts: How many times the trial has been started.
        comparison: The interleaved comparison of its variants (``Comparison.to_dict()``:
            settings, thread count, method, per-variant round data, noise flags), JSON-safe.
        noisy: Any variant's comparison was flagged noisy (reasons in ``noise``).
        noise: Why, with the figures, one reason each.
        threads: The thread count the comparison ran with.
        profiles: Operator profiles (``OperatorProfile.to_dict()``, ``measurement.profile``):
            the top operators of a few training steps and of each variant's inference, with
            their estimated energy shares; an ``OperatorProfile`` is converted on the way in.

    ``train_energy_j`` is the trial's own training only (phase ``train``); the accounting of all
    phases by category is in :attr:`training_energy_j`, :attr:`technique_energy_j`,
    :attr:`measurement_energy_j`, :attr:`teacher_energy_j` and :attr:`total_energy_j`.
    """

    trial_id: str
    study: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict)
    status: TrialStatus = "ok"
    reason: str | None = None
    accuracy: float | None = None
    train_energy_j: float | None = None
    train_energy_provenance: str | None = None
    inference_energy_per_image_j: float | None = None
    inference_energy_provenance: str | None = None
    duration_s: float | None = None
    peak_rss_bytes: int | None = None
    peak_cuda_allocated_bytes: int | None = None
    peak_cuda_reserved_bytes: int | None = None
    params: int | None = None
    macs: int | None = None
    model_bytes: int | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    images_per_s: float | None = None
    phases: Mapping[str, Any] = field(default_factory=dict)
    variants: tuple[VariantRecord, ...] = ()
    memory_cap: MemoryCap | None = None
    history: tuple[Mapping[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    started_unix_s: float | None = None
    finished_unix_s: float | None = None
    attempts: int = 1
    comparison: Mapping[str, Any] = field(default_factory=dict)
    noisy: bool = False
    noise: tuple[str, ...] = ()
    threads: int | None = None
    profiles: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.trial_id, str) or not self.trial_id:
            raise ValueError(f"trial_id must be a non-empty string, got {self.trial_id!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if not isinstance(self.attempts, int) or self.attempts < 0:
            raise ValueError(f"attempts must be an integer >= 0, got {self.attempts!r}")
        if self.status == "failed" and not self.reason:
            raise ValueError("a failed trial needs a reason")
        spec = self.spec.to_dict() if hasattr(self.spec, "to_dict") else self.spec
        phases = {str(name): _phase_dict(str(name), m) for name, m in dict(self.phases).items()}
        for name in phases:
            phase_category(name)  # every phase is in one category, or the record is refused
        setattr_ = object.__setattr__
        setattr_(self, "spec", json_safe(spec))
        setattr_(self, "phases", json_safe(phases))
        setattr_(self, "variants", tuple(_variant(v) for v in self.variants))
        setattr_(self, "memory_cap", _memory_cap(self.memory_cap))
        setattr_(self, "history", tuple(json_safe(list(self.history))))
        setattr_(self, "details", json_safe(self.details))
        setattr_(self, "environment", json_safe(self.environment))
        if self.reason is not None:
            setattr_(self, "reason", " ".join(str(self.reason).split()))
        setattr_(self, "comparison", json_safe(self.comparison))
        setattr_(self, "noisy", _flag(self.noisy, "noisy"))
        setattr_(self, "noise", tuple(str(n) for n in self.noise))
        setattr_(self, "threads", _number(self.threads, True))
        profiles = (p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in self.profiles)
        setattr_(self, "profiles", tuple(json_safe(list(profiles))))
        for f in fields(self):
            if f.name in METRICS or f.name in ("started_unix_s", "finished_unix_s"):
                setattr_(self, f.name, _number(getattr(self, f.name), f.name in _INT_FIELDS))

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def running(
        cls,
        trial_id: str,
        spec: Mapping[str, Any] | Any,
        *,
        study: str = "",
        attempts: int = 1,
        started_unix_s: float | None = None,
    ) -> TrialRecord:
        """The record of a trial that has just started."""
        return cls(
            trial_id=trial_id,
            study=study,
            spec=spec,
            status="running",
            attempts=attempts,
            started_unix_s=time.time() if started_unix_s is None else started_unix_s,
        )

    def failed(self, reason: str, *, finished_unix_s: float | None = None) -> TrialRecord:
        """This record marked failed with ``reason`` (what it measured so far is kept)."""
        return replace(
            self,
            status="failed",
            reason=reason,
            finished_unix_s=time.time() if finished_unix_s is None else finished_unix_s,
        )

    # --- derived numbers (computed, never stored) --------------------------------------------

    @property
    def accuracy_per_kj_train(self) -> float | None:
        """``accuracy / (train_energy_j / 1000)``: accuracy per kJ of training energy."""
        return accuracy_per_kj_train(self.accuracy, self.train_energy_j)

    @property
    def accuracy_per_j_per_image(self) -> float | None:
        """``accuracy / inference_energy_per_image_j``: accuracy per J/image (image/J)."""
        return accuracy_per_j_per_image(self.accuracy, self.inference_energy_per_image_j)

    # --- phase accounting (computed, never stored) -------------------------------------------

    def _category_j(self, category: str, *, teacher: bool = False) -> float:
        return sum(
            energy
            for name, energy in self.phase_energy_j().items()
            if energy is not None
            and phase_category(name) == category
            and (name == TEACHER_PHASE) == teacher
        )

    @property
    def training_energy_j(self) -> float:
        """Energy of the training phases (``train``, ``test``), J."""
        return self._category_j("training")

    @property
    def technique_energy_j(self) -> float:
        """Energy of the technique phases (``recipe/<step>``, ``teacher_logits``), J; a teacher's
        training (phase ``teacher``) is left out: it is :attr:`teacher_energy_j`, and analysis
        charges a shared teacher 1/k to each of its k trials."""
        return self._category_j("technique")

    @property
    def teacher_energy_j(self) -> float:
        """Energy of the teacher's training in this trial (phase ``teacher``; 0 where the teacher
        was trained by another trial or loaded), J."""
        return self._category_j("technique", teacher=True)

    @property
    def measurement_energy_j(self) -> float:
        """Energy of the benchmark windows (``inference``, ``inference/<step>``, ``compare/...``),
        J: measurement, never part of training, technique or CO2e totals."""
        return self._category_j("measurement")

    @property
    def total_energy_j(self) -> float:
        """Every joule of the trial, each in exactly one place: training + technique + teacher +
        measurement energy (J), which is the sum of all its phases."""
        return (
            self.training_energy_j
            + self.technique_energy_j
            + self.teacher_energy_j
            + self.measurement_energy_j
        )

    @property
    def final_variant(self) -> VariantRecord | None:
        """The last recipe variant (references left out): what the trial delivers."""
        steps = [v for v in self.variants if not v.reference]
        return steps[-1] if steps else None

    # --- views -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """``ok`` or ``failed``."""
        return self.status != "running"

    def metrics(self) -> dict[str, float | int | None]:
        """The headline numbers (:data:`METRICS`), ratios included."""
        return {name: getattr(self, name) for name in METRICS}

    def phase_energy_j(self) -> dict[str, float | None]:
        """Total energy per phase (joules), from the phases' measurements."""
        return {name: m.get("total_energy_j") for name, m in self.phases.items()}

    # --- serialization -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the stored fields (non-finite numbers are ``None``; ``json.dumps``
        needs no options). The ratios are not in it: they are computed from the primitives."""
        return json_safe(asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        """Inverse of :meth:`to_dict`. Unknown keys (from a newer wattwise) are ignored.

        Records written by the previous version are migrated: ``throughput_images_per_s`` ->
        ``images_per_s``, ``details["variants"]`` -> ``variants``, ``details["memory_cap"]`` ->
        ``memory_cap``, ``spec["gpu_memory_gb"]`` -> ``spec["gpu_memory_gib"]``; their stored
        ``accuracy_per_*`` ratios are ignored (recomputed).
        """
        values = dict(data)
        if isinstance(values.get("spec"), Mapping):
            values["spec"] = current_keys(values["spec"])
        if "throughput_images_per_s" in values:
            values.setdefault("images_per_s", values.pop("throughput_images_per_s"))
        details = dict(values.get("details") or {})
        for key in ("variants", "memory_cap"):
            if key in details:
                old = details.pop(key)
                values.setdefault(key, old)
                values["details"] = details
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        values["variants"] = tuple(values.get("variants") or ())
        if "history" in values:
            values["history"] = tuple(values["history"] or ())
        return cls(**values)


def _variant(value: Any) -> VariantRecord:
    if isinstance(value, VariantRecord):
        return value
    if isinstance(value, Mapping):
        return VariantRecord.from_dict(value)
    raise ValueError(f"variants must hold VariantRecords, got {type(value).__name__}")


def _memory_cap(value: Any) -> MemoryCap | None:
    if value is None or isinstance(value, MemoryCap):
        return value
    if isinstance(value, Mapping):
        return MemoryCap.from_dict(value)
    raise ValueError(f"memory_cap must be a MemoryCap, got {type(value).__name__}")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: NaN/inf -> ``None``, tuples -> lists, keys -> str, paths ->
    str, numpy/torch scalars -> Python numbers; anything else -> ``str(value)``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "to_dict"):
        return json_safe(value.to_dict())
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalar
        return json_safe(value.item())
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    return str(value)


def _flag(value: Any, name: str, *, optional: bool = False) -> bool | None:
    """``value`` as a bool (``None`` kept where ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _number(value: Any, integer: bool) -> float | int | None:
    value = json_safe(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)
    return float(value)


#: The phase whose power timeline a record keeps (others keep totals only, to stay small).
TIMELINE_PHASE = "train"
#: At most this many timeline samples are kept (evenly thinned beyond).
MAX_TIMELINE_SAMPLES = 600


def _phase_dict(name: str, measurement: Any) -> Any:
    """A phase as plain data: ``Measurement.to_dict()``, with the power timeline of the
    training phase thinned to :data:`MAX_TIMELINE_SAMPLES` and dropped elsewhere."""
    if not hasattr(measurement, "to_dict"):
        return measurement
    data = measurement.to_dict(timeline=name == TIMELINE_PHASE)
    timeline = data.get("timeline")
    if timeline and len(timeline) > MAX_TIMELINE_SAMPLES:
        step = -(-len(timeline) // MAX_TIMELINE_SAMPLES)
        data["timeline"] = timeline[::step]
    return data
