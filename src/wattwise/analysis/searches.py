"""The report's view of a study's recipe searches: which training each searched, and every
candidate with its marks.

    searches = study_searches(study_folder)     # <study>/search/*.json, in name order
    searches[0].rows[0].marks                   # "*P": the chosen one, on the front

A study's ``recipe_search:`` section searches its trained baselines after the trials
(:mod:`wattwise.experiment.recipe_searches`) and stores each result in
``<study>/search/<key>.json``. This module reads those files once and turns each into a
:class:`SearchSummary` that the HTML and the Markdown render: the candidates sorted by saving
(failed ones last), each marked ``*`` chosen, ``P`` on the accuracy–saving Pareto front, ``=``
not significantly different from the chosen one, ``-`` measured below the accuracy floor. The
searches' joules are not trials: the study's costs never include them, and the report shows
them as their own line next to the study's total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.analysis.base import Result, finite
from wattwise.analysis.metrics import config_label
from wattwise.experiment.recipe_searches import read_study_searches

#: Mark -> what it says, in the order the marks are written.
MARKS = {
    "*": "chosen",
    "P": "on the accuracy–saving Pareto front",
    "=": "not significantly different from the chosen one (overlapping intervals)",
    "-": "below the accuracy floor",
}


@dataclass(frozen=True)
class SearchRow(Result):
    """One candidate of a search, as the report's table shows it.

    Attributes:
        number: Its number in the search; ``recipe``, ``finetune_epochs`` it ran with.
        accuracy: Test accuracy (fraction; ``None``: it failed).
        saving, low, high: Its J/image saving against the eager baseline with the 95 % interval.
        j_per_image: Its median inference energy per image (J).
        feasible: Its accuracy is within the floor.
        energy_j: What measuring it cost (J).
        marks: Its marks (see :data:`MARKS`), e.g. ``"*P"``.
        reason: Why it failed (``None`` when it did not).
    """

    number: int | None
    recipe: str
    finetune_epochs: int | None
    accuracy: float | None
    saving: float | None
    low: float | None
    high: float | None
    j_per_image: float | None
    feasible: bool
    energy_j: float | None
    noisy: bool
    marks: str
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.reason is not None or self.accuracy is None


@dataclass(frozen=True)
class SearchSummary(Result):
    """One stored recipe search: the training it searched and its candidates by saving.

    Attributes:
        baseline_key: The trained baseline's key (the file's name); ``trial_id``: the trial
            whose training was searched.
        configuration: That trial's configuration (:func:`config_label`); ``seed``: its seed.
        sampler: The sampler that proposed the candidates.
        baseline_accuracy, floor_accuracy: The baseline's accuracy and the floor (fractions).
        message: The search's conclusion, ending with the joules it spent.
        energy_j: What the search spent (J; not in the study's store or costs).
        rows: Every candidate, largest saving first, failed ones last.
        path: The result file.
    """

    baseline_key: str
    trial_id: str | None
    configuration: str
    seed: Any
    sampler: str | None
    baseline_accuracy: float | None
    floor_accuracy: float | None
    message: str
    energy_j: float
    rows: tuple[SearchRow, ...]
    path: str | None = None


def _indices(value: Any) -> set[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return {value}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return {i for i in value if isinstance(i, int) and not isinstance(i, bool)}
    return set()


def _int(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None else None


def _row(index: int, c: Mapping[str, Any], marked: Mapping[str, set[int]]) -> SearchRow:
    """Candidate ``index`` of the stored list; ``marked``: mark -> the indices it marks."""
    accuracy = finite(c.get("accuracy"))
    feasible = bool(c.get("feasible"))
    below = accuracy is not None and not feasible  # a failed candidate was never measured
    marks = "".join(m for m in MARKS if index in marked.get(m, ()) or (m == "-" and below))
    reason = c.get("reason")
    return SearchRow(
        number=_int(c.get("number")),
        recipe=str(c.get("recipe", "—")),
        finetune_epochs=_int(c.get("finetune_epochs")),
        accuracy=accuracy,
        saving=finite(c.get("saving")),
        low=finite(c.get("low")),
        high=finite(c.get("high")),
        j_per_image=finite(c.get("j_per_image")),
        feasible=feasible,
        energy_j=finite(c.get("energy_j")),
        noisy=bool(c.get("noisy")),
        marks=marks,
        reason=str(reason) if reason is not None else None,
    )


def search_summary(result: Mapping[str, Any]) -> SearchSummary:
    """The report's view of one stored search (a dict of
    :func:`~wattwise.experiment.recipe_searches.read_study_searches`)."""
    marked = {"*": _indices(result.get("chosen")), "P": _indices(result.get("front")),
              "=": _indices(result.get("tied"))}  # fmt: skip
    candidates = [c for c in result.get("candidates") or () if isinstance(c, Mapping)]
    rows = [_row(i, c, marked) for i, c in enumerate(candidates)]
    rows.sort(key=lambda r: (r.saving is None, -(r.saving or 0.0), r.number or 0))
    spec = result.get("spec") if isinstance(result.get("spec"), Mapping) else {}
    energy = finite(result.get("energy_j"))
    return SearchSummary(
        baseline_key=str(result.get("baseline_key")),
        trial_id=result.get("trial_id"),
        configuration=config_label(spec),
        seed=spec.get("seed"),
        sampler=result.get("sampler"),
        baseline_accuracy=finite(result.get("baseline_accuracy")),
        floor_accuracy=finite(result.get("floor_accuracy")),
        message=str(result.get("message", "")),
        energy_j=energy if energy is not None else sum(r.energy_j or 0.0 for r in rows),
        rows=tuple(rows),
        path=result.get("path"),
    )


def study_searches(study_dir: str | Path) -> tuple[SearchSummary, ...]:
    """The recipe searches stored in ``study_dir/search/`` (none without that folder), in
    file-name order."""
    return tuple(search_summary(r) for r in read_study_searches(study_dir))
