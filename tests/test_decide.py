"""The one tie rule: overlapping savings are not distinguishable; the more accurate wins."""

from __future__ import annotations

from wattwise.decide import choose_with_ties

#: name -> ((saving, low, high), accuracy)
OPTIONS = {"a": ((3.1, 2.6, 3.6), 0.94), "b": ((3.0, 2.8, 3.2), 0.95), "c": ((1.5, 1.3, 1.7), 0.99)}


def choose(names: list[str]) -> tuple[str | None, tuple[str, ...]]:
    return choose_with_ties(names, lambda n: OPTIONS[n][0], lambda n: OPTIONS[n][1])


def test_the_more_accurate_of_overlapping_savings_is_chosen_whatever_the_order():
    assert choose(["a", "b", "c"]) == ("b", ("a",))  # c saves clearly less: not tied
    assert choose(["c", "b", "a"]) == ("b", ("a",))


def test_a_clearly_larger_saving_wins_over_accuracy_and_nothing_is_no_choice():
    assert choose(["a", "c"]) == ("a", ())
    assert choose([]) == (None, ())
