"""MLflow tracking of a study: one MLflow run for the study, a nested run for each finished trial.

    wattwise sweep study.yaml --mlflow                  # sqlite:///<study folder>/mlflow.db
    wattwise sweep study.yaml --mlflow http://mlflow.example:5000

    from wattwise.integrations.mlflow import study_tracker
    tracker = study_tracker(config, study_dir_of(config))   # the study's tracking.mlflow section
    with tracker:
        run_study(config, reporter=tracker)

:class:`MlflowTracker` is a :class:`~wattwise.experiment.sweep.StudyReporter`. In the experiment
(default: the study's name) the study has one run (tags ``wattwise.kind: study``,
``wattwise.study``, ``wattwise.study_dir``), found again when the study resumes; under it each
finished trial attempt is a run (:func:`run_contents`): the trial spec as parameters, energy per
phase and category, J/image, accuracy, the efficiency ratios and each variant's savings with
their intervals as metrics (the epochs as steps of ``epoch/...``), provenance per component and
the device identity as tags, the record as the artifact :data:`RECORD_ARTIFACT`. A failed trial's
run ends ``FAILED`` with its reason (tag ``wattwise.reason``). At the study's end its run gets the
trial counts and energy, and ``study.yaml`` and the ``report/`` folder (when a ``wattwise
report`` wrote one) as artifacts.

A trial attempt is logged once: runs are keyed by the tags ``wattwise.trial_id`` and
``wattwise.attempt``. When a sweep starts, every finished trial of the results store that the
study run lacks is logged (trials that finished before tracking was turned on, or while MLflow
was unreachable), and a trial run left unfinished by an interrupted log is replaced.

MLflow never costs a measurement: the first MLflow error (an unreachable server, a full disk)
stops tracking for the rest of the sweep with one warning line; the results store keeps every
trial, and the next sweep with tracking logs the missing ones. mlflow is imported only when a
tracker starts (the extra ``wattwise[mlflow]``); :func:`require_mlflow` checks it is there.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from wattwise.config import MlflowSettings, StudyConfig
from wattwise.errors import ConfigError
from wattwise.experiment.record import TrialRecord, VariantRecord
from wattwise.experiment.store import CONFIG_FILE, STORE_FILE, open_store, store_exists
from wattwise.experiment.summary import StudySummary, describe_trial
from wattwise.validation import flat

log = logging.getLogger(__name__)

#: The tracking store of a study without ``tracking.mlflow.uri``, in its folder: MLflow 3
#: refuses its file store (``mlruns/``) unless ``MLFLOW_ALLOW_FILE_STORE=true``.
DEFAULT_DB = "mlflow.db"
#: Where an experiment this tracker creates in a local SQLite store keeps its artifacts: beside
#: the database (MLflow's default is ``./mlruns`` in the working directory).
ARTIFACT_DIR = "mlartifacts"
#: The trial record (``TrialRecord.to_dict()``, JSON) in each trial run.
RECORD_ARTIFACT = "trial_record.json"
#: The report folder of a study (``wattwise report``'s default), logged at the study's end.
REPORT_DIR = "report"
INSTALL_HINT = "pip install 'wattwise[mlflow]'"

#: The variant fields logged as ``variant/<applied>/<field>``.
VARIANT_METRICS = (
    "accuracy", "inference_energy_per_image_j", "images_per_s", "latency_p50_ms",
    "latency_p95_ms", "params", "macs", "model_bytes", "step_energy_j", "optimization_energy_j",
    "payback_inferences", "payback_low", "payback_high", "cv_j_per_image", "rank", "saving",
    "saving_low", "saving_high", "saving_vs_best_fp32", "saving_vs_best_fp32_low",
    "saving_vs_best_fp32_high",
)  # fmt: skip
#: The final variant's savings, logged at the top level too (with ``saving_significant``).
SAVINGS = tuple(name for name in VARIANT_METRICS if name.startswith("saving"))
#: The phase accounting of a record (its properties), in joules.
CATEGORY_METRICS = (
    "training_energy_j", "technique_energy_j", "teacher_energy_j", "measurement_energy_j",
    "total_energy_j",
)  # fmt: skip
_NOT_PARAMS = ("study", "trial_id")
_START = "opening the study run"
_BATCH = 100  # MLflow's limit of params (and of tags) per log_batch call
_METRIC_BATCH = 1000


def require_mlflow() -> None:
    """Raises :class:`ConfigError` (one line naming the extra) when mlflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(f"MLflow tracking needs the mlflow package: {INSTALL_HINT}")


def tracking_uri(settings: MlflowSettings, study_dir: str | Path) -> str:
    """The tracking store's URI: ``settings.uri``, else ``sqlite:///<study_dir>/mlflow.db``."""
    if settings.uri is not None:
        return settings.uri
    return f"sqlite:///{Path(study_dir).resolve() / DEFAULT_DB}"


def checked_uri(text: str) -> str:
    """A tracking URI checked as ``tracking.mlflow.uri`` is, a relative local path
    (``sqlite:///mlflow.db``, ``file:mlruns``) made absolute against the working directory: a
    study's resolved config then tracks to the same store from wherever it is resumed.

    Raises:
        ConfigError: Not an MLflow tracking URI (one line).
    """
    try:
        uri = MlflowSettings(uri=text).uri or ""
    except ConfigError as err:  # "MlflowSettings: uri: why": the why is the message
        raise ConfigError(str(err).split(": ", 2)[-1]) from None
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return Path(uri.removeprefix("file:")).resolve().as_uri()
    return uri


def with_mlflow(config: StudyConfig, uri: str | None = None) -> StudyConfig:
    """The study with MLflow tracking on, to ``uri`` (``None``: its ``tracking.mlflow.uri``, else
    the default), so that its resolved config records where it is tracked.

    Raises:
        ConfigError: mlflow is not installed (:func:`require_mlflow`).
    """
    require_mlflow()
    current = config.tracking.mlflow or MlflowSettings()
    settings = current if uri is None else replace(current, uri=uri)
    return replace(config, tracking=replace(config.tracking, mlflow=settings))


def study_tracker(config: StudyConfig, study_dir: str | Path) -> MlflowTracker | None:
    """The tracker of the study's ``tracking.mlflow`` section (``None`` without one), for the
    study folder ``study_dir`` and the study's results store."""
    from wattwise.experiment.sweep import store_location

    settings = config.tracking.mlflow
    if settings is None:
        return None
    return MlflowTracker(settings, study_dir, store=store_location(config, Path(study_dir)))


# --- what a trial run holds ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunContents:
    """A trial run's parameters, metrics ``(key, value, step)`` and tags, keys in MLflow's
    alphabet (letters, digits, ``_ - . /`` and space)."""

    params: dict[str, str]
    metrics: tuple[tuple[str, float, int], ...]
    tags: dict[str, str]


def run_contents(record: TrialRecord) -> RunContents:
    """What the run of ``record`` logs (see the module docstring); numbers that are missing or
    not finite are left out."""
    metrics: list[tuple[str, float, int]] = []

    def add(key: str, value: Any, step: int = 0) -> None:
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float) and math.isfinite(value):
            metrics.append((_key(key), float(value), step))

    for name, value in record.metrics().items():
        add(name, value)
    if record.phases:
        for name in CATEGORY_METRICS:
            add(name, getattr(record, name))
    for phase, measurement in record.phases.items():
        add(f"phase/{phase}/energy_j", measurement.get("total_energy_j"))
        add(f"phase/{phase}/duration_s", measurement.get("duration_s"))
        for component in measurement.get("components") or ():
            add(f"phase/{phase}/{component.get('component')}_energy_j", component.get("energy_j"))
    final = record.final_variant
    if final is not None:
        for name in SAVINGS:
            add(name, getattr(final, name))
        add("saving_significant", final.saving_significant)
    names = [v.applied for v in record.variants]
    for i, variant in enumerate(record.variants):  # a name twice (a reference, a step): both
        prefix = f"variant/{variant.applied}" + (
            f"#{i}" if names.index(variant.applied) < i else ""
        )
        for name in VARIANT_METRICS:
            add(f"{prefix}/{name}", getattr(variant, name))
    for epoch in record.history:
        step = int(epoch.get("epoch") or 0)
        for name, value in epoch.items():
            if name not in ("epoch", "images"):
                add(f"epoch/{name}", value, step)
    return RunContents(_params(record.spec), tuple(metrics), _tags(record, final))


def _key(text: str) -> str:
    """``text`` in MLflow's key alphabet (``:`` and ``+`` of recipes become ``_``)."""
    return re.sub(r"[^\w./ -]", "_", text)


def _params(spec: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The spec flattened (``train.momentum``); strings as they are, other values as JSON."""
    out: dict[str, str] = {}
    for name, value in spec.items():
        if not prefix and name in _NOT_PARAMS:
            continue
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            out |= _params(value, f"{key}.")
        else:
            out[_key(key)] = value if isinstance(value, str) else json.dumps(value)
    return out


def _tags(record: TrialRecord, final: VariantRecord | None) -> dict[str, str]:
    tags = {
        "wattwise.study": record.study,
        "wattwise.trial_id": record.trial_id,
        "wattwise.attempt": str(record.attempts),
        "wattwise.status": record.status,
        "wattwise.noisy": "true" if record.noisy else "false",
    }
    if record.reason:
        tags["wattwise.reason"] = record.reason
    if record.noise:
        tags["wattwise.noise"] = "; ".join(record.noise)
    if final is not None and final.verdict:
        tags["wattwise.verdict"] = final.verdict
    for what in ("train_energy", "inference_energy"):
        value = getattr(record, f"{what}_provenance")
        if value:
            tags[f"provenance.{what}"] = value
    labels: dict[str, list[str]] = {}  # component -> its provenance labels, over the phases
    for measurement in record.phases.values():
        for component in measurement.get("components") or ():
            label = (component.get("provenance") or {}).get("label")
            found = labels.setdefault(str(component.get("component")), [])
            if label and label not in found:
                found.append(label)
    tags |= {_key(f"provenance.{c}"): ", ".join(found) for c, found in labels.items() if found}
    for name, value in record.environment.items():
        if name == "gpus" and isinstance(value, list):
            for i, gpu in enumerate(value):
                tags |= {
                    _key(f"device.gpu{i}.{k}"): str(v) for k, v in gpu.items() if v is not None
                }
        elif isinstance(value, list):
            tags[_key(f"device.{name}")] = ", ".join(str(v) for v in value)
        elif value is not None:
            tags[_key(f"device.{name}")] = str(value)
    return tags


# --- the tracker ---------------------------------------------------------------------------------


class MlflowTracker:
    """Logs a study to MLflow as it runs (a :class:`~wattwise.experiment.sweep.StudyReporter`).

    Used as a context manager around :func:`~wattwise.experiment.sweep.run_study`: a study that
    stops before its end (Ctrl-C, an error) leaves its run ``KILLED`` or ``FAILED``.

    Args:
        settings: The study's ``tracking.mlflow`` section.
        study_dir: The study folder (the default store lies in it; its ``study.yaml`` and
            ``report/`` are logged at the end).
        store: The study's results store, read for the trials to log when the sweep starts
            (default ``<study_dir>/results.sqlite``).

    Attributes:
        uri: The tracking store (:func:`tracking_uri`).
        logged: Trial runs this tracker logged.
        found: Finished trials of the store that were logged already (not logged again).
        stopped: Why tracking stopped (the first MLflow error), else ``None``.
    """

    def __init__(
        self, settings: MlflowSettings, study_dir: str | Path, *, store: str | Path | None = None
    ) -> None:
        self.settings = settings
        self.study_dir = Path(study_dir)
        self.store = store if store is not None else self.study_dir / STORE_FILE
        self.uri = tracking_uri(settings, self.study_dir)
        self.logged = 0
        self.found = 0
        self.stopped: str | None = None
        self.experiment: str | None = settings.experiment
        self.run_id: str | None = None
        self._client: Any = None
        self._experiment_id = ""
        self._keys: set[tuple[str, str]] = set()
        self._ended = False

    # --- StudyReporter ---------------------------------------------------------------------

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        """Opens the store and the study run, and logs the finished trials it lacks."""
        self._guarded(_START, self._start, study)
        self._guarded("logging the trials stored earlier", self._log_stored, study)

    def on_trial_start(self, spec: Any, done: int, total: int) -> None:
        """Nothing: a trial is logged when it has finished."""

    def on_trial_end(self, record: TrialRecord, done: int, total: int) -> None:
        """Logs the trial's run (``FINISHED`` or ``FAILED``)."""
        self._guarded(f"logging trial {record.trial_id}", self._log_trial, record)

    def on_progress(self, done: int, total: int) -> None:
        """Nothing: no trial finished."""

    def on_study_end(self, summary: StudySummary) -> None:
        """The study run gets the counts, energy and files of the study, and ends ``FINISHED``."""
        self._guarded("ending the study run", self._end, summary)

    # --- context manager -------------------------------------------------------------------

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.run_id is not None and not self._ended:
            status = "FAILED" if kind is not None and issubclass(kind, Exception) else "KILLED"
            self._guarded("ending the study run", self._terminate, status)

    def lines(self) -> list[str]:
        """What was logged where, for the terminal (after the sweep)."""
        where = f"{self.uri} (experiment {self.experiment or '?'})"
        if self.stopped is not None:
            return [
                f"MLflow: {self.logged} trial run(s) logged to {where}, then tracking stopped "
                f"({self.stopped}); the trials not logged are logged by the next sweep with "
                "tracking"
            ]
        before = f"; {self.found} trial(s) were logged before" if self.found else ""
        return [f"MLflow: {self.logged} trial run(s) logged to {where}{before}"]

    # --- MLflow ----------------------------------------------------------------------------

    def _guarded(self, what: str, action: Callable[..., None], *args: Any) -> None:
        """``action(*args)`` unless tracking stopped (or never started: only the start runs
        without a client); its error stops tracking, with one warning."""
        if self.stopped is not None or (self._client is None and what != _START):
            return
        try:
            action(*args)
        except Exception as err:
            reason = flat(str(err).splitlines()[0] if str(err) else type(err).__name__)[:300]
            self.stopped = f"{what}: {reason}"
            log.warning(
                "wattwise: MLflow tracking stopped for this sweep (%s: %s); the results store "
                "keeps every trial, and the next sweep with tracking logs the missing ones",
                what,
                reason,
            )

    def _start(self, study: str) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        name = self.settings.experiment or study
        found = client.get_experiment_by_name(name)
        if found is None:
            experiment_id = client.create_experiment(name, artifact_location=self._artifacts())
        else:
            experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(experiment_id)
        folder = str(self.study_dir.resolve())
        filter_ = f"tags.`wattwise.kind` = 'study' and tags.`wattwise.study` = '{study}'"
        runs = [
            r
            for r in _all_runs(client, experiment_id, filter_)
            if r.data.tags.get("wattwise.study_dir") == folder
        ]
        if runs:
            run_id = runs[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            tags = {"wattwise.kind": "study", "wattwise.study": study, "wattwise.study_dir": folder}
            run_id = client.create_run(experiment_id, tags=tags, run_name=study).info.run_id
        for run in _all_runs(client, experiment_id, f"tags.mlflow.parentRunId = '{run_id}'"):
            tags = run.data.tags
            if run.info.status == "RUNNING":  # its logging was cut short: logged again
                client.delete_run(run.info.run_id)
            elif "wattwise.trial_id" in tags:
                self._keys.add((tags["wattwise.trial_id"], tags.get("wattwise.attempt", "")))
        self._experiment_id, self.run_id, self.experiment = experiment_id, run_id, name
        self._client = client  # started: the other calls go ahead from here

    def _log_stored(self, study: str) -> None:
        """Logs the study's finished trials in the results store that the study run lacks."""
        if not store_exists(self.store):
            return
        with open_store(self.store, read_only=True) as results:
            stored = results.records()
        for record in stored:
            if record.finished and record.study in (study, ""):
                self._log_trial(record)

    def _artifacts(self) -> str | None:
        """The artifact root of a new experiment in a local SQLite store: beside the file."""
        if not self.uri.startswith("sqlite:///"):
            return None
        database = Path(self.uri.removeprefix("sqlite:///")).resolve()
        return (database.parent / ARTIFACT_DIR).as_uri()

    def _log_trial(self, record: TrialRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        key = (record.trial_id, str(record.attempts))
        if key in self._keys:
            self.found += 1
            return
        contents = run_contents(record)
        client = self._client
        core = ("wattwise.study", "wattwise.trial_id", "wattwise.attempt")
        run = client.create_run(
            self._experiment_id,
            start_time=_ms(record.started_unix_s),
            tags={"mlflow.parentRunId": self.run_id, **{k: contents.tags[k] for k in core}},
            run_name=describe_trial(record.spec),
        )
        run_id = run.info.run_id
        stamp = _ms(record.finished_unix_s)
        params = [Param(k, v) for k, v in contents.params.items()]
        tags = [RunTag(k, v) for k, v in contents.tags.items()]
        metrics = [Metric(k, v, stamp, step) for k, v, step in contents.metrics]
        for i in range(0, max(len(params), len(tags)), _BATCH):
            client.log_batch(run_id, params=params[i : i + _BATCH], tags=tags[i : i + _BATCH])
        for i in range(0, len(metrics), _METRIC_BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + _METRIC_BATCH])
        client.log_text(run_id, json.dumps(record.to_dict(), indent=1), RECORD_ARTIFACT)
        status = "FINISHED" if record.status == "ok" else "FAILED"
        client.set_terminated(run_id, status, end_time=stamp)
        self._keys.add(key)
        self.logged += 1

    def _end(self, summary: StudySummary) -> None:
        from mlflow.entities import Metric

        stamp = _ms(None)
        values = {
            "trials_total": summary.total,
            "trials_ok": summary.ok,
            "trials_failed": summary.failed,
            "trials_left": summary.left,
            "energy_j": summary.energy_j,
            "co2e_g": summary.co2e_g,
            "sweep_duration_s": summary.duration_s,
        }
        metrics = [
            Metric(k, float(v), stamp, 0)
            for k, v in values.items()
            if v is not None and math.isfinite(v)
        ]
        self._client.log_batch(self.run_id, metrics=metrics)
        config = self.study_dir / CONFIG_FILE
        if config.is_file():
            self._client.log_artifact(self.run_id, str(config))
        report = self.study_dir / REPORT_DIR
        if report.is_dir():
            self._client.log_artifacts(self.run_id, str(report), REPORT_DIR)
        self._terminate("FINISHED")

    def _terminate(self, status: str) -> None:
        self._client.set_terminated(self.run_id, status)
        self._ended = True


def _all_runs(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    """Every active run of the experiment that the filter matches (all pages)."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _ms(unix_s: float | None) -> int:
    """Milliseconds since the epoch (MLflow's timestamps); ``None``: now."""
    return int((time.time() if unix_s is None else unix_s) * 1000)
