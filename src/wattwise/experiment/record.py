"""TrialRecord: everything one trial measured, as one frozen, JSON-safe value.

A record is what the results store keeps per trial (docs/experiments.md, "Results store"): the
trial's spec, its status (``ok``, ``failed`` with a reason, or ``running``), accuracy, energy per
phase and component with provenance, time, memory, model size, inference latency and throughput,
efficiency scores, per-epoch history and the environment. Units live in the field names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import PurePath
from typing import Any, Literal

TrialStatus = Literal["ok", "failed", "running"]
STATUSES: tuple[str, ...] = ("ok", "failed", "running")

#: Numeric headline metrics: the columns analysis and search read (``search.objectives``).
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
    "throughput_images_per_s",
)

_INT_FIELDS = frozenset(
    {"peak_rss_bytes", "peak_cuda_allocated_bytes", "peak_cuda_reserved_bytes"}
    | {"params", "macs", "model_bytes"}
)


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
        accuracy_per_kj_train: ``accuracy / (train_energy_j / 1000)``.
        accuracy_per_j_per_image: ``accuracy / inference_energy_per_image_j``.
        duration_s: Wall time of the whole trial.
        peak_rss_bytes: Peak resident memory of the process tree.
        peak_cuda_allocated_bytes: Peak memory allocated by PyTorch on the GPU.
        peak_cuda_reserved_bytes: Peak memory reserved by PyTorch's caching allocator.
        params: Parameter count of the final model.
        macs: Multiply-accumulates per image of the final model (not FLOPs).
        model_bytes: Serialized size of the final model's state dict.
        latency_p50_ms: Median latency of one inference batch.
        latency_p95_ms: 95th percentile latency of one inference batch.
        throughput_images_per_s: Images per second of the inference measurement.
        phases: Phase name (``train``, ``distill``, ``inference``...) -> ``Measurement.to_dict()``
            (energy per component with provenance); a ``Measurement`` is converted on the way in.
        history: Per-epoch records (``EpochRecord.to_dict()``), in order.
        details: Technique-specific results (achieved sparsity, quantization backend...).
        environment: Software and hardware the trial ran on.
        started_unix_s: When the (last) attempt started, seconds since the epoch.
        finished_unix_s: When it finished, or ``None`` while running.
        attempts: How many times the trial has been started.
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
    accuracy_per_kj_train: float | None = None
    accuracy_per_j_per_image: float | None = None
    duration_s: float | None = None
    peak_rss_bytes: int | None = None
    peak_cuda_allocated_bytes: int | None = None
    peak_cuda_reserved_bytes: int | None = None
    params: int | None = None
    macs: int | None = None
    model_bytes: int | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput_images_per_s: float | None = None
    phases: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    started_unix_s: float | None = None
    finished_unix_s: float | None = None
    attempts: int = 1

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
        setattr_ = object.__setattr__
        setattr_(self, "spec", json_safe(spec))
        setattr_(self, "phases", json_safe(phases))
        setattr_(self, "history", tuple(json_safe(list(self.history))))
        setattr_(self, "details", json_safe(self.details))
        setattr_(self, "environment", json_safe(self.environment))
        if self.reason is not None:
            setattr_(self, "reason", " ".join(str(self.reason).split()))
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

    # --- views -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """``ok`` or ``failed``."""
        return self.status != "running"

    def metrics(self) -> dict[str, float | int | None]:
        """The headline numbers (:data:`METRICS`)."""
        return {name: getattr(self, name) for name in METRICS}

    def phase_energy_j(self) -> dict[str, float | None]:
        """Total energy per phase (joules), from the phases' measurements."""
        return {name: m.get("total_energy_j") for name, m in self.phases.items()}

    # --- serialization -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers are ``None``; ``json.dumps`` needs no options)."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        """Inverse of :meth:`to_dict`. Unknown keys (from a newer wattwise) are ignored."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "history" in values:
            values["history"] = tuple(values["history"] or ())
        return cls(**values)


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
