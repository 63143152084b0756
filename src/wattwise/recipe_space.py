"""The recipe search's settings and space, and a study's ``recipe_search:`` section.

    from wattwise.recipe_space import RecipeSearchSettings, SearchSpace
    SearchSpace(ratio_low=0.3, int8=("static",)).grid()     # every point, ratio in steps of 0.1

Kept apart from :mod:`wattwise.optimize.recipe_search` (the search: Optuna, the measurements)
and light (no torch, no Optuna), so that a study file validates its ``recipe_search:`` section
(:class:`RecipeSearchStudy`, in :class:`wattwise.config.StudyConfig`) without importing them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import field
from typing import Any, Literal

from wattwise.validation import (
    NonNegativeInt,
    NonNegativeNumber,
    OpenFraction,
    PositiveInt,
    config_dataclass,
)

#: Samplers of the recipe search (see :mod:`wattwise.optimize.recipe_search`).
Sampler = Literal["auto", "tpe", "gp", "nsga2", "level", "grid"]


@config_dataclass
class SearchSpace:
    """The recipes a recipe search (:mod:`wattwise.optimize.recipe_search`) may propose.

    Attributes:
        ratio_low, ratio_high: Structured pruning ratio range (0 is also tried: no pruning).
        importances: Importance criteria (``magnitude``, ``bn_scale``, ``taylor``).
        steps: Iterative pruning steps.
        finetune_epochs: Fine-tuning epochs after pruning.
        finetune_by: How pruning is fine-tuned: ``labels``, and/or ``distill`` (knowledge
            distillation from the unpruned model: distillation into a narrower student).
        int8: ``none``, ``static`` (``quantize:int8``) and/or ``qat`` (``quantize:int8_qat``).
        channels_last: Also try channels_last on float recipes.
        ratio_step: The ``grid`` sampler's step over ``[ratio_low, ratio_high]``.
    """

    ratio_low: OpenFraction = 0.1
    ratio_high: OpenFraction = 0.9
    importances: tuple[str, ...] = ("magnitude", "taylor")
    steps: tuple[PositiveInt, ...] = (1, 2)
    finetune_epochs: tuple[NonNegativeInt, ...] = (1, 2)
    finetune_by: tuple[Literal["labels", "distill"], ...] = ("labels", "distill")
    int8: tuple[Literal["none", "static", "qat"], ...] = ("none", "static", "qat")
    channels_last: bool = True
    ratio_step: OpenFraction = 0.1

    def grid(self) -> list[dict[str, Any]]:
        """Every point of the space with the ratio in steps of ``ratio_step`` (and 0: no
        pruning, where fine-tuning, importance and steps do not apply), in a fixed order; the
        no-op point (no pruning, no int8, no channels_last) is left out."""
        count = math.floor((self.ratio_high - self.ratio_low) / self.ratio_step + 1e-9)
        ratios = [round(self.ratio_low + i * self.ratio_step, 4) for i in range(count + 1)]
        points: list[dict[str, Any]] = []
        for int8 in self.int8:
            layouts = [False, True] if int8 == "none" and self.channels_last else [False]
            for channels_last in layouts:
                tail = {"int8": int8, **({"channels_last": True} if channels_last else {})}
                if int8 != "none" or channels_last:
                    points.append({"ratio": 0.0, **tail})
                for ratio, importance, steps, finetune, by in itertools.product(
                    ratios, self.importances, self.steps, self.finetune_epochs, self.finetune_by
                ):
                    points.append({"ratio": ratio, "importance": importance, "steps": steps,
                                   "finetune": finetune, "finetune_by": by, **tail})  # fmt: skip
        return points


@config_dataclass
class RecipeSearchSettings:
    """How a recipe search (:func:`wattwise.optimize.recipe_search.search_recipes`) runs.

    Attributes:
        budget: Candidates to measure (duplicates are not counted).
        floor_points: Accuracy points (1 point = 0.01) a candidate may lose against the baseline.
        sampler: ``auto``, ``tpe``, ``gp``, ``nsga2``, ``level`` or ``grid`` (see
            :mod:`wattwise.optimize.recipe_search`).
        seed: The sampler's seed.
    """

    budget: PositiveInt = 20
    floor_points: NonNegativeNumber = 1.0
    sampler: Sampler = "auto"
    seed: NonNegativeInt = 0


@config_dataclass
class RecipeSearchStudy(RecipeSearchSettings):
    """A study's ``recipe_search:`` section: after its trials, search the recipe space of its
    trained baselines (:mod:`wattwise.experiment.recipe_searches`).

    Attributes:
        baselines: ``first`` (the first trained baseline of the grid, e.g. seed 0 of the first
            configuration) or ``all`` (every distinct trained baseline: one search each).
        space: The recipes to propose (:class:`SearchSpace`).
    """

    baselines: Literal["first", "all"] = "first"
    space: SearchSpace = field(default_factory=SearchSpace)
