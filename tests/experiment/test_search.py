"""The Optuna search over a study's grid evaluates each point once, resumed or not."""

from __future__ import annotations

import dataclasses

from tests.analysis.analysis_fixtures import make_record
from wattwise.config import StudyConfig
from wattwise.experiment.search import DUPLICATE, OptunaSearch


def study(n_trials: int) -> StudyConfig:
    return StudyConfig(name="s", batch_sizes=[32, 64], learning_rates=[0.05, 0.1], epochs=[1],
                       search={"kind": "optuna", "n_trials": n_trials})  # fmt: skip


def run(search: OptunaSearch) -> list[tuple]:
    """Asks and tells until the search is done; the points it handed out."""
    handed = []
    while search.remaining > 0:
        for point in search.ask(2):
            (spec,) = point.specs
            handed.append((spec.batch_size, spec.lr))
            record = dataclasses.replace(make_record(spec.trial_id), spec=spec.to_dict(),
                                         accuracy=0.5 + spec.lr)  # fmt: skip
            search.tell(point, [record])
    return handed


def test_a_search_never_repeats_a_point_and_stops_when_the_grid_is_exhausted(tmp_path):
    path = tmp_path / "optuna.sqlite"
    search = OptunaSearch(study(9), path)
    assert search.remaining == 4 and search.total == 4  # 9 asked, the grid has 4 points
    handed = run(search)
    assert sorted(handed) == [(32, 0.05), (32, 0.1), (64, 0.05), (64, 0.1)]  # each once
    resumed = OptunaSearch(study(9), path)
    assert resumed.remaining == 0 and len(resumed.finished) == 4 and run(resumed) == []
    trials = resumed._study.get_trials()
    counted = [t for t in trials if DUPLICATE not in t.user_attrs]
    assert len(counted) == 4 and all(t.state.name == "COMPLETE" for t in counted)


def test_a_resumed_search_continues_with_new_points_only(tmp_path):
    path = tmp_path / "optuna.sqlite"
    first = run(OptunaSearch(study(2), path))
    assert len(set(first)) == 2
    search = OptunaSearch(study(3), path)
    assert search.remaining == 1 and len(search.finished) == 2
    (third,) = run(search)
    assert third not in first
