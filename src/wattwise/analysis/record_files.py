"""The records wattwise writes, read back as numbers to compare: what
:func:`~wattwise.analysis.compare_records.compare_records` reads.

    record = load_record("runs/new/optimize-20250101-120000/recipe.json")
    record.kind                          # "optimize"
    record.samples["J/image"]            # variant -> Sample (value, repeats, provenance)

Each kind, read as it is written:

- ``monitor``: ``wattwise monitor --json`` (``CommandResult.to_dict``): the command's energy (J)
  and wall time (s), one measurement each.
- ``train``: a run's ``run.json`` (``TrialRecord.to_dict``): training energy (J) and time (s),
  with one value per epoch (``history``), and inference J/image, with one per round of its
  comparison (:func:`trial_samples`).
- ``optimize``: its ``recipe.json`` (``RecipeResult.to_dict``): per variant, J/image and time per
  image (s/image), with one value per round of its comparison. Its energy is not offered: each
  round runs a fixed time, so the joules of a round say nothing by themselves.
- ``study``: a study folder or its ``results.sqlite`` (read-only, by
  :func:`~wattwise.analysis.report.load_study`): per configuration (everything but the seed, as
  :func:`~wattwise.analysis.metrics.summarize` groups them), the ``train`` numbers with one
  value per seed (their mean is the value); a configuration of one trial has that trial's
  repeats.

A number keeps its provenance: ``measured``, ``estimated`` or ``mixed``, and the meters behind it
where the record names them. Anything else is refused with one line (:class:`ConfigError`).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.analysis.base import Result, finite, finite_values
from wattwise.energy.base import Measurement
from wattwise.errors import ConfigError
from wattwise.experiment.record import TrialRecord, VariantRecord
from wattwise.files import read_regular_text

#: What can be compared: energy (J), energy per image, time (s, or s/image for optimize records).
METRICS = ("energy", "J/image", "time")
#: The kinds of record, and the number each is compared by unless told otherwise.
DEFAULT_METRIC = {"monitor": "energy", "train": "energy", "optimize": "J/image", "study": "J/image"}
#: What each kind is called in messages, and what its rows are.
NOUNS = {
    "monitor": "monitor record (wattwise monitor --json)",
    "train": "run record (run.json of wattwise train)",
    "optimize": "optimize record (recipe.json of wattwise optimize)",
    "study": "study",
}
ROW_NOUNS = {"monitor": "command", "train": "run", "optimize": "variant", "study": "configuration"}
ACCEPTED = (
    "expected the JSON of 'wattwise monitor --json', a run's run.json, an optimize recipe.json, "
    "or a study folder"
)
_STORE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
_CLOCK = ("clock",)


@dataclass(frozen=True)
class Sample(Result):
    """One side's number in one row: the record's own value and the repeats behind it.

    Attributes:
        value: The record's number: a total, a median over rounds, a mean over seeds.
        unit: ``J``, ``s``, ``J/image`` or ``s/image``.
        provenance: ``measured``, ``estimated`` or ``mixed`` (a time is measured by the clock).
        sources: The meters behind it where the record names them (``measured:rapl``,
            ``estimated:tdp``; ``clock`` for a time).
        values: The repeated measurements, one per round, epoch or seed (empty: none).
        over: What they are: ``rounds``, ``epochs`` or ``seeds``.
        notes: Flags that travel with the number (noisy, and why).
    """

    value: float
    unit: str
    provenance: str
    sources: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    over: str = ""
    notes: tuple[str, ...] = ()

    @property
    def estimated(self) -> bool:
        """Estimated, or partly (``mixed``): a model, not a meter, made (some of) it."""
        return self.provenance in ("estimated", "mixed")

    @property
    def provenance_text(self) -> str:
        """``measured (measured:rapl)``, ``estimated (estimated:tdp, estimated:dram-rss)``."""
        sources = f" ({', '.join(self.sources)})" if self.sources else ""
        return f"{self.provenance}{sources}"


@dataclass(frozen=True)
class Record:
    """A record read from disk, as the numbers it offers.

    Attributes:
        kind: ``monitor``, ``train``, ``optimize`` or ``study``.
        path: Where it was read.
        description: What it is: the command, the run's configuration, the recipe, the study.
        samples: Metric -> row name -> its :class:`Sample`, or the reason the row has none.
        missing: Metric -> why the record holds no such number at all.
        notes: What a reader of its numbers must know (a failed command, suspect energy).
        settings: How it was measured, where that matters (threads, batch size, device).
    """

    kind: str
    path: str
    description: str
    samples: Mapping[str, Mapping[str, Sample | str]]
    missing: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


def load_record(path: str | Path) -> Record:
    """The record at ``path``: a JSON file wattwise wrote, or a study (a folder holding
    ``results.sqlite``, or the file).

    Raises:
        ConfigError: No such file, not JSON, of no known kind, or not valid for its kind.
        WattwiseError: A study folder without a results store, or a file that is not one.
    """
    p = Path(path)
    if p.is_dir() or p.suffix in _STORE_SUFFIXES:
        return _study(p)
    data = _read_json(p)
    kind = _kind_of(data, p)
    try:
        return {"monitor": _monitor, "train": _train, "optimize": _optimize}[kind](p, data)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        why = f"missing {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
        raise ConfigError(f"{p} is not a valid {NOUNS[kind]}: {' '.join(why.split())}") from None


def _read_json(p: Path) -> Any:
    try:
        text = read_regular_text(p)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file ({ACCEPTED})") from None
    except OSError as err:
        raise ConfigError(f"cannot read {p}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not a wattwise record (not UTF-8 text): {ACCEPTED}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{p} is not JSON ({err.msg} at line {err.lineno} column {err.colno}): {ACCEPTED}"
        ) from None


def _kind_of(data: Any, p: Path) -> str:
    if isinstance(data, Mapping):
        if "trial_id" in data and "spec" in data:
            return "train"
        if "recipe" in data and "variants" in data:
            return "optimize"
        if "components" in data and "duration_s" in data:
            return "monitor"
        if "candidates" in data and "sampler" in data:
            raise ConfigError(
                f"{p} is a recipe search (search.json of optimize --search): compare the "
                "recipe.json of a recipe instead"
            )
    raise ConfigError(f"{p} is not a wattwise record: {ACCEPTED}")


def _sample(
    value: Any,
    unit: str,
    provenance: str | None,
    sources: Iterable[str] = (),
    values: Iterable[Any] = (),
    over: str = "",
    notes: Iterable[str] = (),
) -> Sample | None:
    """A sample of a positive, finite ``value`` (``None`` otherwise); repeats that are not
    positive numbers are left out."""
    number = finite(value)
    if number is None or number <= 0 or provenance in (None, "unavailable"):
        return None
    repeats = tuple(v for v in finite_values(values) if v > 0)
    return Sample(number, unit, str(provenance), tuple(sorted(set(sources))), repeats,
                  over if repeats else "", tuple(notes))  # fmt: skip


def _labels(phase: Any) -> list[str]:
    """The provenance labels of a measurement's summed components (``Measurement.to_dict``)."""
    if not isinstance(phase, Mapping) or not phase.get("components"):
        return []
    return [c.provenance.label for c in Measurement.from_dict(phase).summed_components]


def _monitor(p: Path, data: Mapping[str, Any]) -> Record:
    m = Measurement.from_dict(data)
    command = data.get("command")
    name = " ".join(map(str, command)) if isinstance(command, list) else m.name
    missing = {"J/image": "a monitor record measures a command, not images: compare energy or time"}
    labels = (c.provenance.label for c in m.summed_components)
    energy = _sample(m.total_energy_j, "J", m.total_provenance, labels)
    if energy is None:
        missing["energy"] = "no energy was measured (every meter was unavailable)"
    duration = _sample(m.duration_s, "s", "measured", _CLOCK)
    if duration is None:
        missing["time"] = "no duration was recorded"
    notes = [f"suspect energy: {why}" for why in m.suspect]
    code = data.get("exit_code")
    if code not in (None, 0):
        notes.append(f"the command exited with code {code}")
    samples = {k: {"command": s} for k, s in (("energy", energy), ("time", duration)) if s}
    return Record("monitor", str(p), f"`{name}`", samples, missing, tuple(notes))


def trial_samples(record: TrialRecord) -> dict[str, Sample | str]:
    """One trial's numbers: training energy and time with one value per epoch, inference
    J/image with one per round of its comparison (or, for each, why it has none)."""
    history = [h for h in record.history if isinstance(h, Mapping)]
    labels = {
        str(c.get("provenance"))
        for h in history
        for c in (h.get("components") or {}).values()
        if isinstance(c, Mapping) and c.get("energy_j") is not None
    }
    energy = _sample(record.train_energy_j, "J", record.train_energy_provenance, labels,
                     (h.get("energy_j") for h in history), "epochs")  # fmt: skip
    train = record.phases.get("train") or {}
    time = _sample(train.get("duration_s"), "s", "measured", _CLOCK,
                   (h.get("duration_s") for h in history), "epochs")  # fmt: skip
    final = record.final_variant
    stats = (record.comparison.get("variants") or {}).get(final.step) if final else None
    rounds = (stats or {}).get("rounds") or []
    per_image = _sample(
        record.inference_energy_per_image_j, "J/image", record.inference_energy_provenance,
        _labels(record.phases.get("inference")), (r.get("j_per_image") for r in rounds),
        "rounds", (f"noisy: {n}" for n in (stats or {}).get("noise") or ()),
    )  # fmt: skip
    return {
        "energy": energy or "no training energy was recorded",
        "time": time or "no training phase (the trial reused another trial's training)",
        "J/image": per_image or "no inference J/image was measured (inference_s 0)",
    }


def _comparison_settings(comparison: Mapping[str, Any] | None) -> dict[str, Any]:
    keys = ("threads", "batch_size", "device")
    return {k: comparison.get(k) for k in keys} if isinstance(comparison, Mapping) else {}


def _train(p: Path, data: Mapping[str, Any]) -> Record:
    from wattwise.analysis.metrics import config_label

    rec = TrialRecord.from_dict(data)
    if rec.status != "ok":
        state = f"failed ({rec.reason})" if rec.status == "failed" else "has not finished"
        raise ConfigError(f"{p}: the run {state}: only a finished run can be compared")
    samples: dict[str, dict[str, Sample | str]] = {}
    missing = {}
    for metric, sample in trial_samples(rec).items():
        if isinstance(sample, str):
            missing[metric] = sample
        else:
            samples[metric] = {"run": sample}
    settings = {**_comparison_settings(rec.comparison), "CPU": rec.environment.get("cpu_model")}
    return Record("train", str(p), config_label(rec.spec), samples, missing, (), settings)


def _optimize(p: Path, data: Mapping[str, Any]) -> Record:
    variants = [
        VariantRecord.from_dict(v) for v in [*data["variants"], *data.get("references", [])]
    ]
    missing = {
        "energy": "an optimize record measures each variant for a fixed time per round, so its "
        "energy says nothing by itself: compare J/image or time"
    }
    comparison = data.get("comparison")
    description = f"recipe {data['recipe']}"
    if not isinstance(comparison, Mapping):
        why = "inference was not measured (inference_s 0): no J/image, no time per image"
        return Record("optimize", str(p), description, {}, {**missing, "J/image": why, "time": why})
    per_image: dict[str, Sample | str] = {}
    per_time: dict[str, Sample | str] = {}
    for variant in variants:
        stats = comparison["variants"].get(variant.step)
        if not isinstance(stats, Mapping):
            per_image[variant.step] = per_time[variant.step] = "not in the comparison"
            continue
        rounds = [r for r in stats.get("rounds") or [] if isinstance(r, Mapping)]
        noise = [f"noisy: {n}" for n in stats.get("noise") or ()]
        per_image[variant.step] = _sample(
            stats["j_per_image"], "J/image", stats.get("energy_provenance"), (),
            (r.get("j_per_image") for r in rounds), "rounds", noise,
        ) or "no energy reading"  # fmt: skip
        speed = finite(stats.get("images_per_s"))
        per_time[variant.step] = _sample(
            1 / speed if speed else None, "s/image", "measured", _CLOCK,
            (_seconds_per_image(r) for r in rounds), "rounds",
        ) or "no time per image"  # fmt: skip
    samples = {"J/image": per_image, "time": per_time}
    settings = _comparison_settings(comparison)
    return Record("optimize", str(p), description, samples, missing, (), settings)


def _seconds_per_image(round_: Mapping[str, Any]) -> float | None:
    duration, images = finite(round_.get("duration_s")), finite(round_.get("images"))
    return duration / images if duration is not None and images else None


def _study(p: Path) -> Record:
    from wattwise.analysis.metrics import summarize
    from wattwise.analysis.report import load_study  # the study reader (read-only), one place

    study = load_study(p)
    ok = {r.trial_id: r for r in study.ok}
    if not ok:
        raise ConfigError(f"{p}: the study has no finished (ok) trial to compare")
    samples: dict[str, dict[str, Sample | str]] = {metric: {} for metric in METRICS}
    for config in summarize(ok.values()):
        trials = [trial_samples(ok[t]) for t in config.trial_ids]
        for metric in METRICS:
            per_trial = [t[metric] for t in trials]
            one = per_trial[0] if len(per_trial) == 1 else _over_seeds(per_trial)
            samples[metric][config.label] = one
    return Record("study", str(p), f"study {study.study} ({len(ok)} ok trials)", samples)


def _over_seeds(samples: Sequence[Sample | str]) -> Sample | str:
    """A configuration's trials (its seeds) as one sample: their mean, one value per seed."""
    reasons = [s for s in samples if isinstance(s, str)]
    if reasons:
        return f"{len(reasons)} of its {len(samples)} trials: {reasons[0]}"
    known = [s for s in samples if isinstance(s, Sample)]
    kinds = {s.provenance for s in known}
    return Sample(
        value=statistics.fmean(s.value for s in known),
        unit=known[0].unit,
        provenance=kinds.pop() if len(kinds) == 1 else "mixed",
        sources=tuple(sorted({src for s in known for src in s.sources})),
        values=tuple(s.value for s in known),
        over="seeds",
        notes=tuple(dict.fromkeys(n for s in known for n in s.notes)),
    )
