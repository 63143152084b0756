"""Search recipes under an accuracy floor, on measured energy.

    result = search_recipes(model, data, settings=RecipeSearchSettings(budget=20, floor_points=1))
    result.chosen            # the cheapest recipe within the floor (a significant saving), or None

The space: structured pruning (ratio continuous in ``[ratio_low, ratio_high]``, importance
criterion, iterative steps), fine-tuning epochs after pruning and how (on labels, or by
distillation from the unpruned model: a narrower student taught by its wider self), int8
(none, static PT2E or QAT) and channels_last (float recipes only); it and the settings are
:class:`wattwise.recipe_space.SearchSpace` and
:class:`~wattwise.recipe_space.RecipeSearchSettings` (a study names them in its
``recipe_search:`` section). Every candidate is built as a recipe text in the one grammar and
run by :func:`~wattwise.optimize.recipe.run_recipe`, so it is measured by the
comparison protocol against its own eager baseline (interleaved rounds, paired intervals, noise
flags): the objective is the candidate's **saving** (baseline J/image / candidate J/image; the
speedup where energy is not measured), maximized subject to accuracy >= baseline accuracy −
``floor_points`` / 100.

Samplers: Optuna's constrained TPE (``tpe``, the default for budgets up to 100) or GP (``gp``)
for small budgets, NSGA-II (``nsga2``) for large ones (``auto`` picks), or ``level``: the
accuracy-aware compression-level search NNCF used to ship — one pruning ratio, moved up by a
step when the candidate is within the floor and down when not, the step halved each time.
``grid`` measures every point of :meth:`SearchSpace.grid` in order (the ratio in steps of
``ratio_step``), up to the budget: the exhaustive reference a search is judged against.
Size: about 520 lines: one search — the samplers, the level and grid searches, measuring a
candidate and choosing among them — whose parts share the candidate's shape and the stored
trial's attributes; split, the resume logic would have to be read across files.

Candidates live in an Optuna SQLite file (``storage``), so a resumed search gives the finished
candidates back to the sampler and continues; a proposal that repeats a finished candidate is
recorded as a failed duplicate (ignored by the sampler, not counted) and never measured twice.

The result: every candidate (recipe, accuracy, saving with its interval, feasibility, the joules
it spent), the accuracy-vs-J/image Pareto front, the chosen recipe (among feasible candidates
with a significant saving, the largest saving; candidates whose saving interval overlaps it are
a tie, and the most accurate of them is chosen), and the energy the search itself spent.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from wattwise.data.types import DatasetSplits
from wattwise.decide import choose_with_ties
from wattwise.energy.monitor import EnergyMonitor
from wattwise.errors import ConfigError, WattwiseError
from wattwise.optimize.recipe import RecipeResult, RecipeSettings, run_recipe
from wattwise.recipe_space import RecipeSearchSettings, SearchSpace

#: User attribute of a proposal that repeated a finished candidate (that candidate's number).
DUPLICATE = "duplicate_of"
#: Repeated proposals in a row after which the search stops (the space is exhausted).
MAX_REPEATS = 20
#: Repeated proposals in a row after which the next proposal is drawn at random.
RANDOM_AFTER = 2
#: The point that changes nothing (never measured: it is each candidate's own baseline).
NO_OP = ("baseline", 0)
#: Budgets above this use NSGA-II under ``auto`` (Optuna: TPE/GP for fewer than ~1,000).
NSGA2_ABOVE = 100


@dataclass(frozen=True)
class SearchCandidate:
    """One measured candidate recipe.

    Attributes:
        number: Its Optuna trial number.
        recipe: The recipe text (``baseline`` for none), and ``finetune_epochs`` it ran with.
        accuracy: Test accuracy of its final variant.
        saving, low, high, significant: Its saving against its eager baseline with the 95 %
            interval from the paired rounds (``None`` without energy readings).
        j_per_image: Its median J/image; ``feasible``: accuracy >= the floor.
        energy_j: What measuring it cost: its technique steps and its comparison rounds.
        noisy: Its comparison was flagged noisy; ``reason``: why it failed, if it did.
    """

    number: int
    recipe: str
    finetune_epochs: int
    accuracy: float | None
    saving: float | None
    low: float | None
    high: float | None
    significant: bool
    j_per_image: float | None
    feasible: bool
    energy_j: float
    noisy: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SearchResult:
    """All candidates, the Pareto front (indices, by increasing J/image), the chosen one."""

    sampler: str
    baseline_accuracy: float | None
    floor_accuracy: float | None
    candidates: tuple[SearchCandidate, ...]
    front: tuple[int, ...]
    chosen: int | None
    tied: tuple[int, ...]
    energy_j: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "candidates": [c.to_dict() for c in self.candidates]}


def recipe_of(params: Mapping[str, Any]) -> str:
    """The recipe text of a point of the space (``baseline`` when it changes nothing)."""
    steps = []
    ratio = float(params.get("ratio", 0.0))
    if ratio > 0:
        by = params.get("finetune_by", "labels")
        steps.append(
            f"prune:structured:{ratio:g}:importance={params.get('importance', 'magnitude')}"
            f":steps={int(params.get('steps', 1))}"
            + (f":finetune_by={by}" if by != "labels" else "")
        )
    int8 = params.get("int8", "none")
    if int8 == "static":
        steps.append("quantize:int8")
    elif int8 == "qat":
        steps.append("quantize:int8_qat")
    elif params.get("channels_last"):
        steps.append("channels_last")
    return ",".join(steps) or "baseline"


def search_recipes(
    model: nn.Module,
    data: DatasetSplits,
    *,
    settings: RecipeSearchSettings | None = None,
    space: SearchSpace | None = None,
    recipe_settings: RecipeSettings | None = None,
    model_spec: dict[str, Any] | None = None,
    storage: str | Path | None = None,
    monitor: EnergyMonitor | None = None,
    on_candidate: Callable[[SearchCandidate, int, int], None] | None = None,
    resume: bool = True,
) -> SearchResult:
    """Searches the recipe space of a trained ``model`` (see the module docstring).

    Args:
        model: The trained float model (left untouched).
        data: Its dataset (fine-tuning, calibration, the test accuracy).
        settings: Budget, accuracy floor, sampler, seed.
        space: The recipes to propose.
        recipe_settings: How each candidate is fine-tuned and measured (its comparison).
        model_spec: The model's spec (sizes of pruned variants).
        storage: The search's SQLite file (``None``: in memory, not resumable).
        monitor: The EnergyMonitor every candidate is measured in.
        on_candidate: Called with each measured candidate, its index and the budget.
        resume: Continue the search stored in ``storage`` (``False``: start it again).

    Raises:
        ConfigError: A stored search of another kind, or an empty space.
    """
    settings = settings or RecipeSearchSettings()
    space = space or SearchSpace()
    recipe_settings = recipe_settings or RecipeSettings()
    if space.ratio_low >= space.ratio_high:
        raise ConfigError("the search space needs ratio_low < ratio_high")
    sampler = _sampler_name(settings)
    study = _study(storage, sampler, settings, resume)
    done = _finished(study)
    candidates = [_candidate_of(t) for t in done]
    own = monitor is None
    monitor = monitor or EnergyMonitor()
    base_accuracy = next((t.user_attrs["baseline_accuracy"] for t in done), None)
    try:
        walks = {"level": _Level, "grid": _Grid}  # proposals of their own, not Optuna's
        level = walks[sampler](space, done) if sampler in walks else None
        while len(candidates) < settings.budget:
            proposed = _propose(study, space, level, done)
            if proposed is None:
                break  # every point of the space has been measured
            trial, params = proposed
            candidate, base = _measure(
                trial.number, params, model, data, recipe_settings, model_spec, monitor,
                base_accuracy, settings,
            )  # fmt: skip
            base_accuracy = base_accuracy if base_accuracy is not None else base
            _tell(study, trial, candidate, base_accuracy, settings.floor_points)
            candidates.append(candidate)
            done.append(study.trials[trial.number])
            if level is not None:
                level.update(candidate)
            if on_candidate is not None:
                on_candidate(candidate, len(candidates), settings.budget)
    finally:
        if own:
            monitor.close()
    return _result(sampler, base_accuracy, settings, candidates)


# --- proposing -----------------------------------------------------------------------------


def _sampler_name(settings: RecipeSearchSettings) -> str:
    if settings.sampler != "auto":
        return settings.sampler
    return "nsga2" if settings.budget > NSGA2_ABOVE else "tpe"


def _study(
    storage: str | Path | None, sampler: str, settings: RecipeSearchSettings, resume: bool
) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{Path(storage).resolve()}" if storage is not None else None
    if url is not None and not resume:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name="recipe-search", storage=url)
    startup = min(5, max(2, settings.budget // 4))  # random points before the model guides
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=startup),
        "gp": lambda: optuna.samplers.GPSampler(seed=settings.seed, n_startup_trials=startup),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=settings.seed),
        "level": lambda: optuna.samplers.RandomSampler(seed=settings.seed),
        "grid": lambda: optuna.samplers.RandomSampler(seed=settings.seed),
    }
    study = optuna.create_study(
        study_name="recipe-search",
        storage=url,
        load_if_exists=True,
        direction="maximize",
        sampler=samplers[sampler](),
    )
    kind = study.user_attrs.get("sampler")
    if kind is None:
        study.set_user_attr("sampler", sampler)
    elif kind != sampler:
        raise ConfigError(
            f"{storage} holds a {kind} search, not {sampler}: resume it with the same sampler, "
            "start it again (no resume), or use another output folder"
        )
    return study


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    """Measured candidates (complete, or failed while measuring), in order."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.FAIL) and DUPLICATE not in t.user_attrs
        and "recipe" in t.user_attrs
    ]  # fmt: skip


def _point_key(params: Mapping[str, Any]) -> tuple[str, int]:
    return recipe_of(params), int(params.get("finetune", 0))


def _propose(
    study: optuna.Study,
    space: SearchSpace,
    level: _Level | _Grid | None,
    done: Sequence[FrozenTrial],
) -> tuple[optuna.trial.Trial, dict[str, Any]] | None:
    """The next point to measure with its trial (``None``: the space is exhausted).

    The unchanged model is never a candidate (it is every candidate's own baseline). A repeat
    is told the measured result (:func:`_tell_repeat`); after :data:`RANDOM_AFTER` repeats in a
    row the next proposal is drawn at random: a sampler that keeps proposing measured points
    stopped a search at 5 of 8 candidates on ResNet-18."""
    seen = {_point_key(t.user_attrs["point"]): t for t in done}
    sampler = study.sampler
    for repeats in range(MAX_REPEATS):
        if level is not None:
            params = level.next_point()
            if params is None:
                return None
            trial = study.ask()
        else:
            if repeats >= RANDOM_AFTER:
                study.sampler = optuna.samplers.RandomSampler(seed=len(study.trials))
            try:  # the sampler answers each suggest call: keep it until the point is drawn
                trial = study.ask()
                params = _suggest(trial, space)
            finally:
                study.sampler = sampler
        trial.set_user_attr("point", params)
        key = _point_key(params)
        if key not in seen and key != NO_OP:
            return trial, params
        _tell_repeat(study, trial, seen.get(key))
        if isinstance(level, _Level):
            return None  # the level search converged on a ratio it has measured
    return None


def _tell_repeat(
    study: optuna.Study, trial: optuna.trial.Trial, measured: FrozenTrial | None
) -> None:
    """A proposal of a point measured before: told that point's result (its value and
    constraint: the sampler learns the point again, as Optuna's FAQ does for repeats), marked
    :data:`DUPLICATE` (never a candidate, not counted); a repeat of a failed point, or of the
    no-op, is a failed trial."""
    trial.set_user_attr(DUPLICATE, measured.number if measured is not None else -1)
    if measured is None or measured.state != TrialState.COMPLETE or not measured.values:
        study.tell(trial.number, state=TrialState.FAIL)
        return
    for name, value in (measured.constraints or {}).items():
        trial.set_constraint(name, value)
    study.tell(trial.number, measured.values[0])


def _suggest(trial: optuna.trial.Trial, space: SearchSpace) -> dict[str, Any]:
    """A point of the space. Every parameter is suggested on every trial (a static space) and
    the ones that do not apply are left out of the point: GP and multivariate TPE model a static
    space only, and sampled conditional parameters at random (Optuna warned so)."""
    prune = trial.suggest_categorical("prune", [True, False])
    drawn = {
        "ratio": round(trial.suggest_float("ratio", space.ratio_low, space.ratio_high), 2),
        "importance": trial.suggest_categorical("importance", list(space.importances)),
        "steps": trial.suggest_categorical("steps", list(space.steps)),
        "finetune": trial.suggest_categorical("finetune", list(space.finetune_epochs)),
        "finetune_by": trial.suggest_categorical("finetune_by", list(space.finetune_by)),
    }
    int8 = trial.suggest_categorical("int8", list(space.int8))
    layout = trial.suggest_categorical("channels_last", [True, False] if space.channels_last
                                       else [False])  # fmt: skip
    params: dict[str, Any] = {**drawn} if prune else {"ratio": 0.0}
    params["int8"] = int8
    if int8 == "none" and layout:
        params["channels_last"] = True
    return params


class _Level:
    """The compression-level search: one ratio, up a step within the floor, down below it, the
    step halved each time (replayed from the finished candidates on resume)."""

    def __init__(self, space: SearchSpace, done: Sequence[FrozenTrial]) -> None:
        self.low, self.high = space.ratio_low, space.ratio_high
        self.ratio = round((self.low + self.high) / 2, 2)
        self.step = (self.high - self.low) / 4
        self.fixed = {
            "importance": space.importances[0],
            "steps": space.steps[0],
            "finetune": max(space.finetune_epochs),
            "finetune_by": space.finetune_by[0],
            "int8": space.int8[0],
        }
        for t in done:
            self.update(_candidate_of(t))

    def next_point(self) -> dict[str, Any] | None:
        if self.step < 0.005:
            return None
        return {**self.fixed, "ratio": self.ratio}

    def update(self, candidate: SearchCandidate) -> None:
        moved = self.ratio + (self.step if candidate.feasible else -self.step)
        self.ratio = round(min(self.high, max(self.low, moved)), 2)
        self.step /= 2


class _Grid:
    """The points of :meth:`SearchSpace.grid` not measured yet, in order."""

    def __init__(self, space: SearchSpace, done: Sequence[FrozenTrial]) -> None:
        self.points = space.grid()
        self.measured = {_point_key(t.user_attrs["point"]) for t in done}

    def next_point(self) -> dict[str, Any] | None:
        return next((p for p in self.points if _point_key(p) not in self.measured), None)

    def update(self, candidate: SearchCandidate) -> None:
        self.measured.add((candidate.recipe, candidate.finetune_epochs))


# --- measuring -----------------------------------------------------------------------------


def _measure(
    number: int,
    params: Mapping[str, Any],
    model: nn.Module,
    data: DatasetSplits,
    recipe_settings: RecipeSettings,
    model_spec: dict[str, Any] | None,
    monitor: EnergyMonitor,
    base_accuracy: float | None,
    settings: RecipeSearchSettings,
) -> tuple[SearchCandidate, float | None]:
    recipe = recipe_of(params)
    finetune = int(params.get("finetune", 0))
    rs = replace(recipe_settings, finetune_epochs=finetune)
    try:
        result = run_recipe(model, data, recipe, settings=rs, model_spec=model_spec,
                            monitor=monitor)  # fmt: skip
    except WattwiseError as err:
        failed = SearchCandidate(number, recipe, finetune, None, None, None, None, False, None,
                                 False, 0.0, reason=str(err).splitlines()[0])  # fmt: skip
        return failed, base_accuracy
    base = result.baseline.accuracy
    floor = (base_accuracy if base_accuracy is not None else base) - settings.floor_points / 100
    return _candidate(number, recipe, finetune, result, floor), base


def _candidate(
    number: int, recipe: str, finetune: int, result: RecipeResult, floor: float
) -> SearchCandidate:
    final = result.variants[-1]
    ratio = final.saving
    saving = low = high = None
    significant = False
    if ratio is not None:
        if ratio.saving is not None:
            saving, low, high = ratio.saving, ratio.low, ratio.high
        else:  # no energy readings: the speedup, labelled by the comparison's verdict
            saving, low, high = ratio.speedup, ratio.speedup_low, ratio.speedup_high
        significant = low is not None and high is not None and low > 1
    elif recipe == "baseline":
        saving, low, high = 1.0, 1.0, 1.0
    spent = sum(v.step_energy_j for v in result.variants)
    if result.benchmark is not None:
        spent += result.benchmark.total_energy_j
    return SearchCandidate(
        number=number,
        recipe=recipe,
        finetune_epochs=finetune,
        accuracy=final.accuracy,
        saving=saving,
        low=low,
        high=high,
        significant=significant,
        j_per_image=final.inference_energy_per_image_j,
        feasible=final.accuracy >= floor - 1e-12,
        energy_j=spent,
        noisy=final.noisy,
    )


def _tell(
    study: optuna.Study,
    trial: optuna.trial.Trial,
    candidate: SearchCandidate,
    base_accuracy: float | None,
    floor_points: float,
) -> None:
    """Stores the candidate with its trial and tells the sampler: the objective is the log of
    the saving, the constraint ``floor - accuracy`` (<= 0: within the floor)."""
    for key, value in candidate.to_dict().items():
        trial.set_user_attr(key if key != "number" else "candidate", value)
    trial.set_user_attr("baseline_accuracy", base_accuracy)
    if candidate.accuracy is None or not candidate.saving or base_accuracy is None:
        study.tell(trial.number, state=TrialState.FAIL)
        return
    floor = base_accuracy - floor_points / 100
    trial.set_constraint("floor", floor - candidate.accuracy)
    study.tell(trial.number, math.log(candidate.saving))


def _candidate_of(trial: FrozenTrial) -> SearchCandidate:
    a = trial.user_attrs
    return SearchCandidate(
        number=trial.number, recipe=a["recipe"], finetune_epochs=a["finetune_epochs"],
        accuracy=a["accuracy"], saving=a["saving"], low=a["low"], high=a["high"],
        significant=a["significant"], j_per_image=a["j_per_image"], feasible=a["feasible"],
        energy_j=a["energy_j"], noisy=a.get("noisy", False), reason=a.get("reason"),
    )  # fmt: skip


# --- the result ----------------------------------------------------------------------------


def _result(
    sampler: str,
    base_accuracy: float | None,
    settings: RecipeSearchSettings,
    candidates: list[SearchCandidate],
) -> SearchResult:
    floor = base_accuracy - settings.floor_points / 100 if base_accuracy is not None else None
    measured = [i for i, c in enumerate(candidates) if c.accuracy is not None and c.saving]
    front = _front(candidates, measured)
    eligible = [i for i in measured if candidates[i].feasible and candidates[i].significant]
    chosen, tied = _choose(candidates, eligible)
    energy = sum(c.energy_j for c in candidates)
    if chosen is None:
        message = (
            f"no candidate of {len(candidates)} is significantly cheaper than the baseline within "
            f"{settings.floor_points:g} accuracy point(s); keep the baseline"
        )
    else:
        c = candidates[chosen]
        message = (
            f"choose {c.recipe} (fine-tuning {c.finetune_epochs} epoch(s)): {c.saving:.2f}x less "
            f"J/image ({c.low:.2f} to {c.high:.2f}, 95 %), accuracy {c.accuracy:.2%} (floor "
            f"{floor:.2%})"
        )
        if tied:
            names = ", ".join(candidates[i].recipe for i in tied)
            message += f"; not significantly different: {names} (the most accurate was chosen)"
    message += f"; the search spent {energy:.4g} J on {len(candidates)} candidate(s)"
    return SearchResult(sampler, base_accuracy, floor, tuple(candidates), front, chosen, tied,
                        energy, message)  # fmt: skip


def _front(candidates: Sequence[SearchCandidate], measured: Sequence[int]) -> tuple[int, ...]:
    """Accuracy vs saving: candidates no other beats on both (higher accuracy, larger saving)."""
    front = []
    for i in measured:
        a, s = candidates[i].accuracy, candidates[i].saving
        dominated = any(
            (candidates[j].accuracy >= a and candidates[j].saving >= s)  # type: ignore[operator]
            and (candidates[j].accuracy > a or candidates[j].saving > s)  # type: ignore[operator]
            for j in measured
            if j != i
        )
        if not dominated:
            front.append(i)
    return tuple(sorted(front, key=lambda i: -(candidates[i].saving or 0.0)))


def _choose(
    candidates: Sequence[SearchCandidate], eligible: Sequence[int]
) -> tuple[int | None, tuple[int, ...]]:
    """The chosen candidate's index and the indices tied with it
    (:func:`wattwise.decide.choose_with_ties`)."""
    return choose_with_ties(
        list(eligible),
        lambda i: (candidates[i].saving, candidates[i].low, candidates[i].high),  # type: ignore[return-value]
        lambda i: candidates[i].accuracy or 0.0,
    )
