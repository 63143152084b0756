"""The one decision rule for choosing among measured savings: ties go to the more accurate.

The recommendation (:mod:`wattwise.analysis.recommendation`) and the recipe search
(:mod:`wattwise.optimize.recipe_search`) both choose the cheapest option with a significant
saving; both choose it the same way, here. The leader is the option that saves the most. An
option whose saving interval overlaps the leader's is not distinguishable from it, so among
those the most accurate is chosen, then the larger saving: a rerun that swaps two such savings
on noise does not change the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def choose_with_ties(
    options: Sequence[T],
    saving: Callable[[T], tuple[float, float, float]],
    accuracy: Callable[[T], float],
) -> tuple[T | None, tuple[T, ...]]:
    """The chosen option and the others tied with it.

    Args:
        options: Options that all qualify (within the floor, significant saving).
        saving: ``(estimate, low, high)`` of an option's saving (> 1: less energy).
        accuracy: An option's accuracy.

    Returns:
        ``(chosen, tied)``: ``None`` and ``()`` when there is no option.
    """
    if not options:
        return None, ()
    leader = max(options, key=lambda o: (saving(o)[0], accuracy(o)))
    floor = saving(leader)[1]
    tied = [o for o in options if saving(o)[2] >= floor]
    best = max(tied, key=lambda o: (accuracy(o), saving(o)[0]))
    return best, tuple(o for o in tied if o is not best)
