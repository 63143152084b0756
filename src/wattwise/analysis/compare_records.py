"""Is NEW significantly worse than BASE? Two wattwise records compared: the check behind
``wattwise compare BASE NEW``, an energy-regression gate for CI.

    from wattwise.analysis.compare_records import compare_records

    result = compare_records("base/recipe.json", "new/recipe.json", tolerance=0.05)
    result.regression                  # NEW significantly worse by more than 5 % in some row
    result.verdict                     # "regression"
    result.summary                     # "NEW is worse than BASE beyond the tolerance ..."
    [(row.name, row.ratio, row.low, row.high, row.verdict) for row in result.rows]

**Records**: two records of one kind (:mod:`wattwise.analysis.record_files`): ``monitor``
(``wattwise monitor --json``), ``train`` (a run's ``run.json``), ``optimize`` (its
``recipe.json``) or ``study`` (a study folder). The default metric is J/image for optimize
records and studies, energy (J) for monitor and run records; ``time`` is the command's or the
training's seconds, or an optimize variant's seconds per image.

**Ratio.** ``NEW / BASE`` per row (a variant, a configuration; > 1: NEW costs more). Where both
sides hold repeated measurements of one kind (rounds, epochs or seeds), the estimate is the
ratio of their geometric means with :func:`~wattwise.analysis.intervals.welch_ratio`'s interval
(Welch's t on the logs): two records are independent runs, so their rounds are not paired (they
are paired only within one comparison). Otherwise there is no interval, and that is said.

**Verdict** per row, tolerance ``t``: ``regression`` when the interval's low end is above
``1 + t`` (without an interval: the point ratio), ``improved`` when its high end is below 1
(without: the point ratio below ``1 - t``), ``worse within tolerance`` when its low end is above
1 (without: the point ratio in ``(1, 1 + t]``), else ``no significant change``. The records'
verdict is their worst row's. Every number keeps its provenance (measured, estimated or mixed,
and the meters behind it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.analysis.base import Result, finite
from wattwise.analysis.record_files import (
    DEFAULT_METRIC,
    METRICS,
    NOUNS,
    ROW_NOUNS,
    Record,
    Sample,
    load_record,
)
from wattwise.errors import ConfigError

#: Re-exported: what a caller of :func:`compare_records` names (metrics, records, samples).
__all__ = ["DEFAULT_METRIC", "DEFAULT_TOLERANCE", "METRICS", "NO_INTERVAL", "ROW_NOUNS", "VERDICTS"]
__all__ += ["Record", "RecordComparison", "RowComparison", "Sample", "compare_records"]
__all__ += ["load_record"]

#: How much worse NEW may be, as a fraction, before a significant difference is a regression.
DEFAULT_TOLERANCE = 0.05
#: The verdicts, from best to worst (the records' verdict is their worst row's).
VERDICTS = ("improved", "no significant change", "worse within tolerance", "regression")
#: What a row without repeated measurements on either side says instead of an interval.
NO_INTERVAL = (
    "one measurement per side: no interval; the verdict compares the point ratio with the "
    "tolerance only"
)


@dataclass(frozen=True)
class RowComparison(Result):
    """One row (a variant, a configuration, the command or the run) of both records.

    Attributes:
        ratio: NEW / BASE (> 1: NEW costs more).
        low, high: Its confidence interval, ``None`` without repeats on both sides.
        method: How the ratio and interval were computed, or why there is no interval.
        verdict: One of :data:`VERDICTS`.
    """

    name: str
    base: Sample
    new: Sample
    ratio: float
    low: float | None
    high: float | None
    method: str
    verdict: str
    confidence: float

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"

    def ratio_text(self) -> str:
        """``1.302 (95 % interval 1.271 to 1.334)``, or ``1.302 (no interval)``."""
        if self.low is None or self.high is None:
            return f"{self.ratio:.3f} (no interval)"
        level = f"{self.confidence * 100:g} %"
        return f"{self.ratio:.3f} ({level} interval {self.low:.3f} to {self.high:.3f})"


@dataclass(frozen=True)
class RecordComparison(Result):
    """Two records compared row by row (:func:`compare_records`).

    Attributes:
        kind: The records' kind.
        metric: What was compared (one of :data:`METRICS`), in ``unit``.
        tolerance: How much worse NEW may be (a fraction) before a difference is a regression.
        base, new: The records' paths; ``base_description``/``new_description``: what they are.
        rows: The rows both records hold, in BASE's order.
        only_base, only_new: Rows one record holds only (not compared).
        notes: Provenance, noise and differences in how the two were measured, one line each.
    """

    kind: str
    metric: str
    unit: str
    tolerance: float
    confidence: float
    base: str
    new: str
    base_description: str
    new_description: str
    rows: tuple[RowComparison, ...]
    only_base: tuple[str, ...] = ()
    only_new: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        """The worst row's verdict."""
        return max((row.verdict for row in self.rows), key=VERDICTS.index)

    @property
    def regression(self) -> bool:
        """NEW is significantly worse than BASE by more than the tolerance in some row."""
        return self.verdict == "regression"

    @property
    def estimated(self) -> bool:
        """Some compared number is estimated (or partly), not measured."""
        return any(row.base.estimated or row.new.estimated for row in self.rows)

    @property
    def summary(self) -> str:
        """One line: the verdict in words, with the ratios of the rows that decided it."""
        limit = f"{1 + self.tolerance:g}"
        noun = ROW_NOUNS[self.kind]
        decided = [row for row in self.rows if row.verdict == self.verdict]
        text = "; ".join(f"{row.name}: new/base {row.ratio_text()}" for row in decided)
        return {
            "regression": f"NEW is worse than BASE beyond the tolerance (above {limit}) in "
            f"{len(decided)} of {len(self.rows)} {noun}(s): {text}",
            "worse within tolerance": f"NEW is worse than BASE, but not significantly beyond "
            f"the tolerance ({limit}): {text}",
            "improved": f"NEW is better than BASE in every {noun}: {text}",
            "no significant change": f"NEW is not significantly worse than BASE: {text}",
        }[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, with the verdict, ``regression``, ``estimated`` and the summary."""
        data = super().to_dict()
        data.update(verdict=self.verdict, regression=self.regression, estimated=self.estimated,
                    summary=self.summary)  # fmt: skip
        return data

    def github_benchmark(self) -> list[dict[str, Any]]:
        """github-action-benchmark's ``customSmallerIsBetter`` entries, one per row: ``name``,
        ``unit``, ``value`` (NEW's number), ``range`` (``± sd`` of NEW's repeats, where it has
        them) and ``extra`` (the ratio to BASE, the verdict, the provenance, one per line)."""
        from wattwise.analysis.stats import mean_ci

        tolerance = f"tolerance {self.tolerance * 100:g} %"
        entries = []
        for row in self.rows:
            new = row.new
            entry: dict[str, Any] = {
                "name": f"{row.name} ({self.metric})",
                "unit": new.unit,
                "value": float(new.value),
            }
            spread = mean_ci(new.values).sd if len(new.values) > 1 else None
            if spread is not None:
                entry["range"] = f"± {spread:.3g}"
            lines = [
                f"new/base {row.ratio_text()}: {row.verdict} ({tolerance})",
                f"base {row.base.value:.4g} {row.base.unit}: {row.base.provenance_text}",
                f"new: {new.provenance_text}",
                row.method,
                *new.notes,
            ]
            entry["extra"] = "\n".join(lines)
            entries.append(entry)
        return entries


# --- comparing ------------------------------------------------------------------------------------


def compare_records(
    base: str | Path | Record,
    new: str | Path | Record,
    *,
    metric: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = 0.95,
) -> RecordComparison:
    """BASE and NEW, two records of one kind, compared row by row (see the module docstring).

    Args:
        base, new: Paths of the records (or :func:`load_record` results).
        metric: One of :data:`METRICS`; default :data:`DEFAULT_METRIC` of the records' kind.
        tolerance: How much worse NEW may be, as a fraction (0.05: 5 %).
        confidence: Confidence level of the intervals (that of every interval of the analysis,
            :data:`wattwise.analysis.intervals.CONFIDENCE`, unless told otherwise).

    Raises:
        ConfigError: A record cannot be read or is of no known kind, the two differ in kind,
            the metric or tolerance is invalid, a record does not hold the metric, or the records
            have no row in common.
    """
    fraction = finite(tolerance)
    if fraction is None or fraction < 0:
        raise ConfigError(f"the tolerance must be a number >= 0, got {tolerance!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"the confidence must be in (0, 1), got {confidence!r}")
    if metric is not None and metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}: choose {', '.join(METRICS)}")
    b = base if isinstance(base, Record) else load_record(base)
    n = new if isinstance(new, Record) else load_record(new)
    if b.kind != n.kind:
        raise ConfigError(
            f"cannot compare {b.path}, a {NOUNS[b.kind]}, with {n.path}, a {NOUNS[n.kind]}: "
            "both must be of one kind"
        )
    chosen = metric or DEFAULT_METRIC[b.kind]
    for rec in (b, n):
        if chosen in rec.missing:
            raise ConfigError(f"{rec.path}: {rec.missing[chosen]}")
    ours, theirs = b.samples[chosen], n.samples[chosen]
    rows, skipped = [], []
    for name, one in ours.items():
        other = theirs.get(name)
        if other is None:
            continue
        if isinstance(one, str) or isinstance(other, str):
            why = f"base: {one}" if isinstance(one, str) else f"new: {other}"
            skipped.append(f"{name} not compared ({why})")
            continue
        rows.append(_compare(name, one, other, fraction, confidence))
    if not rows:
        if skipped:
            raise ConfigError(f"nothing to compare: {skipped[0]}")
        raise ConfigError(
            f"{b.path} and {n.path} have no {ROW_NOUNS[b.kind]} in common (base: "
            f"{', '.join(ours) or 'none'}; new: {', '.join(theirs) or 'none'})"
        )
    return RecordComparison(
        kind=b.kind,
        metric=chosen,
        unit=rows[0].base.unit,
        tolerance=fraction,
        confidence=confidence,
        base=b.path,
        new=n.path,
        base_description=b.description,
        new_description=n.description,
        rows=tuple(rows),
        only_base=tuple(k for k in ours if k not in theirs),
        only_new=tuple(k for k in theirs if k not in ours),
        notes=(*_notes(b, n, rows), *skipped),
    )


def _compare(
    name: str, base: Sample, new: Sample, tolerance: float, confidence: float
) -> RowComparison:
    from wattwise.analysis.intervals import welch_ratio

    reason = _no_interval(base, new)
    if reason is None:
        interval = welch_ratio(new.values, base.values, confidence)  # new / base
        ratio, low, high = interval.estimate, interval.low, interval.high
        if ratio is not None and low is not None and high is not None:
            method = (
                f"ratio of the geometric means of {len(new.values)} new and {len(base.values)} "
                f"base {base.over}, Welch t-interval on their logs, {confidence * 100:g} %"
            )
            verdict = _verdict(ratio, low, high, tolerance)
            return RowComparison(name, base, new, ratio, low, high, method, verdict, confidence)
        reason = f"no interval ({interval.reason})"
    ratio = new.value / base.value
    if reason != NO_INTERVAL:
        reason += "; the verdict compares the point ratio with the tolerance only"
    verdict = _verdict(ratio, None, None, tolerance)
    return RowComparison(name, base, new, ratio, None, None, reason, verdict, confidence)


def _no_interval(base: Sample, new: Sample) -> str | None:
    """Why the two sides' repeats give no interval; ``None`` when they do."""
    b, n = len(base.values), len(new.values)
    if b < 2 and n < 2:
        return NO_INTERVAL
    if b < 2 or n < 2:
        return f"no interval (one measurement on the {'base' if b < 2 else 'new'} side)"
    if base.over != new.over:
        return f"no interval (base repeats over {base.over}, new over {new.over})"
    if base.over == "epochs" and b != n:
        return (
            f"no interval (the runs trained {b} and {n} epochs: their per-epoch values do not "
            "compare their totals)"
        )
    return None


def _verdict(ratio: float, low: float | None, high: float | None, tolerance: float) -> str:
    limit = 1 + tolerance
    if low is not None and high is not None:
        if low > limit:
            return "regression"
        if high < 1:
            return "improved"
        return "worse within tolerance" if low > 1 else "no significant change"
    if ratio > limit:
        return "regression"
    if ratio > 1:
        return "worse within tolerance"
    return "improved" if ratio < 1 - tolerance else "no significant change"


def _notes(base: Record, new: Record, rows: Sequence[RowComparison]) -> list[str]:
    """Provenance, flags and differences in how the two records were measured."""
    notes = [
        f"{side}: {note}" for side, rec in (("base", base), ("new", new)) for note in rec.notes
    ]
    kinds = {}
    for side in ("base", "new"):
        samples = [getattr(row, side) for row in rows]
        kinds[side] = {s.provenance for s in samples}
        estimated = sorted({src for s in samples if s.estimated for src in s.sources})
        if estimated:
            notes.append(
                f"{side}: ESTIMATED, not measured ({', '.join(estimated)}): a model made these "
                "numbers, not a meter"
            )
        notes += [
            f"{side}: {row.name}: {note}" for row in rows for note in getattr(row, side).notes
        ]
    noisy = [s for row in rows for s in (row.base, row.new) if s.notes]
    if noisy:
        notes.append(
            f"{len(noisy)} of the {2 * len(rows)} numbers compared were measured under noise "
            "(flagged above): a verdict may then be the machine's, not the code's; rerun on a "
            "quiet machine"
        )
    if kinds["base"] != kinds["new"]:
        notes.append(
            f"base is {'/'.join(sorted(kinds['base']))}, new {'/'.join(sorted(kinds['new']))}: "
            "the ratio compares numbers made in different ways"
        )
    for key, value in base.settings.items():
        other = new.settings.get(key)
        if value is not None and other is not None and value != other:
            notes.append(f"measured with different {key}: base {value}, new {other}")
    if base.kind != "study" and base.description != new.description:
        notes.append(f"the records differ: base {base.description}; new {new.description}")
    return notes
