"""The recipe search: candidates measured by the comparison protocol under an accuracy floor,
resumed without repeats, the level search's halving steps, the choice among ties."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from wattwise.data import load_dataset
from wattwise.models import create_model
from wattwise.optimize.recipe import RecipeSettings
from wattwise.optimize.recipe_search import (
    SearchCandidate,
    _choose,
    recipe_of,
    search_recipes,
)
from wattwise.recipe_space import RecipeSearchSettings, SearchSpace
from wattwise.train import TrainConfig, fit

SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}
FAST = RecipeSettings(finetune_lr=0.02, inference_s=0.15, rounds=3, max_rounds=3, batch_size=32)
#: Float recipes only (int8 compiles: seconds per candidate).
FLOAT = SearchSpace(importances=("magnitude",), steps=(1,), finetune_epochs=(0, 1),
                    finetune_by=("labels",), int8=("none",), channels_last=False)  # fmt: skip


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = create_model(**SPEC)
    fit(model, data, TrainConfig(epochs=3, lr=0.05, batch_size=32, hflip=False))
    return model, data


def test_recipe_of_writes_each_point_in_the_grammar():
    assert recipe_of({"ratio": 0.0, "int8": "none"}) == "baseline"
    assert recipe_of({"ratio": 0.35, "importance": "taylor", "steps": 2, "int8": "static"}) == (
        "prune:structured:0.35:importance=taylor:steps=2,quantize:int8"
    )
    assert recipe_of({"ratio": 0.0, "int8": "qat"}) == "quantize:int8_qat"
    assert recipe_of({"ratio": 0.5, "finetune_by": "distill", "int8": "none"}) == (
        "prune:structured:0.5:importance=magnitude:steps=1:finetune_by=distill"
    )
    assert recipe_of({"ratio": 0.0, "int8": "none", "channels_last": True}) == "channels_last"


def test_a_search_measures_its_budget_and_resumes_without_repeating(trained, tmp_path):
    model, data = trained
    storage = tmp_path / "search.sqlite"
    seen = []
    first = search_recipes(
        model, data, settings=RecipeSearchSettings(budget=3, floor_points=2, sampler="tpe"),
        space=FLOAT, recipe_settings=FAST, model_spec=SPEC, storage=storage,
        on_candidate=lambda c, i, n: seen.append((i, n)),
    )  # fmt: skip
    assert seen == [(1, 3), (2, 3), (3, 3)] and len(first.candidates) == 3
    keys = [(c.recipe, c.finetune_epochs) for c in first.candidates]
    assert len(set(keys)) == 3  # never the same point twice
    assert first.baseline_accuracy is not None and first.floor_accuracy == pytest.approx(
        first.baseline_accuracy - 0.02
    )
    for c in first.candidates:
        assert c.accuracy is not None and c.saving is not None and c.energy_j > 0
        assert c.feasible == (c.accuracy >= first.floor_accuracy - 1e-12)
        assert c.recipe == "baseline" or (c.low is not None and c.low <= c.saving <= c.high)
    assert first.energy_j == pytest.approx(sum(c.energy_j for c in first.candidates))
    assert set(first.front) <= set(range(3)) and first.front
    if first.chosen is not None:
        best = first.candidates[first.chosen]
        assert best.feasible and best.significant and best.recipe in first.message
    else:
        assert "no candidate of 3 is significantly cheaper" in first.message
    assert f"the search spent {first.energy_j:.4g} J" in first.message
    json.dumps(first.to_dict())

    resumed = search_recipes(
        model, data, settings=RecipeSearchSettings(budget=5, floor_points=2, sampler="tpe"),
        space=FLOAT, recipe_settings=FAST, model_spec=SPEC, storage=storage,
    )  # fmt: skip
    assert resumed.candidates[:3] == first.candidates  # given back, not measured again
    keys = [(c.recipe, c.finetune_epochs) for c in resumed.candidates]
    assert len(resumed.candidates) == 5 and len(set(keys)) == 5


def test_repeated_proposals_fall_back_to_random_and_the_no_op_is_never_measured(
    trained, tmp_path, monkeypatch
):
    """TPE that keeps proposing measured points (its repeats are failed trials, which it
    ignores) stopped a search at 5 of 8 candidates; the unchanged model was a candidate."""
    import optuna

    from wattwise.optimize import recipe_search as rs

    stubborn = {"ratio": 0.0, "int8": "none", "channels_last": True}  # one point, proposed forever

    def suggest(trial, space):
        if isinstance(trial.study.sampler, optuna.samplers.RandomSampler):
            ratio = round(trial.suggest_float("r", 0.2, 0.6), 2)
            return {"ratio": ratio, "importance": "magnitude", "steps": 1, "finetune": 0,
                    "finetune_by": "labels", "int8": "none"}  # fmt: skip
        return dict(stubborn)

    monkeypatch.setattr(rs, "_suggest", suggest)
    result = search_recipes(model := trained[0], trained[1],
                            settings=RecipeSearchSettings(budget=3, sampler="tpe"), space=FLOAT,
                            recipe_settings=FAST, model_spec=SPEC,
                            storage=tmp_path / "s.sqlite")  # fmt: skip
    del model
    recipes = [c.recipe for c in result.candidates]
    assert len(recipes) == 3 and recipes[0] == "channels_last"  # the budget is measured
    assert all(r.startswith("prune:structured:") for r in recipes[1:])  # drawn at random
    stubborn.update(channels_last=False)  # now the no-op: never measured
    again = search_recipes(trained[0], trained[1],
                           settings=RecipeSearchSettings(budget=4, sampler="tpe"), space=FLOAT,
                           recipe_settings=FAST, model_spec=SPEC,
                           storage=tmp_path / "s.sqlite")  # fmt: skip
    assert "baseline" not in [c.recipe for c in again.candidates]


def test_the_level_search_moves_one_ratio_by_halving_steps(trained, tmp_path):
    model, data = trained
    space = SearchSpace(ratio_low=0.1, ratio_high=0.9, importances=("magnitude",), steps=(1,),
                        finetune_epochs=(1,), int8=("none",), channels_last=False)  # fmt: skip
    result = search_recipes(
        model, data, settings=RecipeSearchSettings(budget=3, floor_points=1, sampler="level"),
        space=space, recipe_settings=FAST, model_spec=SPEC, storage=tmp_path / "level.sqlite",
    )  # fmt: skip
    ratios = [float(c.recipe.split(":")[2]) for c in result.candidates]
    assert ratios[0] == 0.5 and result.sampler == "level"
    step = 0.2
    for before, after, c in zip(ratios, ratios[1:], result.candidates, strict=False):
        assert after == pytest.approx(before + (step if c.feasible else -step))
        step /= 2


def test_the_grid_lists_every_point_once_and_is_measured_in_order_then_resumed(trained, tmp_path):
    space = SearchSpace(ratio_low=0.1, ratio_high=0.9, importances=("magnitude",), steps=(1,),
                        finetune_epochs=(1, 2), finetune_by=("labels",), int8=("none", "static"),
                        channels_last=False)  # fmt: skip
    points = space.grid()
    with_kd = replace(space, finetune_by=("labels", "distill")).grid()
    assert len(with_kd) == 9 * 2 * 2 * 2 + 1
    assert sum(recipe_of(p).endswith("finetune_by=distill") for p in with_kd) == 18
    # the grid: ratio 0.1-0.9 step 0.1 x int8 on/off x 2 fine-tune lengths, plus int8 alone
    assert len(points) == 9 * 2 * 2 + 1
    assert len({(recipe_of(p), p.get("finetune", 0)) for p in points}) == len(points)
    assert {p["ratio"] for p in points} == {0.0, *(round(r / 10, 1) for r in range(1, 10))}
    assert "baseline" not in {recipe_of(p) for p in points}

    model, data = trained
    small = SearchSpace(ratio_low=0.2, ratio_high=0.4, ratio_step=0.2, importances=("magnitude",),
                        steps=(1,), finetune_epochs=(0,), finetune_by=("labels",), int8=("none",),
                        channels_last=True)  # fmt: skip
    expected = [(recipe_of(p), p.get("finetune", 0)) for p in small.grid()]
    assert expected == [
        ("prune:structured:0.2:importance=magnitude:steps=1", 0),
        ("prune:structured:0.4:importance=magnitude:steps=1", 0),
        ("channels_last", 0),
        ("prune:structured:0.2:importance=magnitude:steps=1,channels_last", 0),
        ("prune:structured:0.4:importance=magnitude:steps=1,channels_last", 0),
    ]
    storage = tmp_path / "grid.sqlite"
    settings = RecipeSearchSettings(budget=2, sampler="grid")
    first = search_recipes(model, data, settings=settings, space=small, recipe_settings=FAST,
                           model_spec=SPEC, storage=storage)  # fmt: skip
    assert [(c.recipe, c.finetune_epochs) for c in first.candidates] == expected[:2]
    rest = search_recipes(model, data, settings=replace(settings, budget=10), space=small,
                          recipe_settings=FAST, model_spec=SPEC, storage=storage)  # fmt: skip
    assert [(c.recipe, c.finetune_epochs) for c in rest.candidates] == expected  # then stops
    assert rest.candidates[:2] == first.candidates


def candidate(number, saving, low, high, accuracy) -> SearchCandidate:
    return SearchCandidate(number, f"r{number}", 1, accuracy, saving, low, high, low > 1, 0.001,
                           True, 1.0)  # fmt: skip


def test_overlapping_savings_are_a_tie_and_the_more_accurate_is_chosen():
    cands = [candidate(0, 3.1, 2.6, 3.6, 0.940), candidate(1, 3.0, 2.8, 3.2, 0.950),
             candidate(2, 1.5, 1.3, 1.7, 0.960)]  # fmt: skip
    chosen, tied = _choose(cands, [0, 1, 2])
    assert chosen == 1 and tied == (0,)  # 2's interval does not reach 0's or 1's


def test_optimize_search_cli_prints_the_candidates_and_resumes(tmp_path, capsys):
    from wattwise.cli import main
    from wattwise.config import MeasurementSettings
    from wattwise.experiment.runner import train_and_save
    from wattwise.experiment.spec import TrialSpec

    spec = TrialSpec(study="train", dataset="digits", model="small_cnn", technique="baseline",
                     train=TrainConfig(epochs=2, lr=0.05, batch_size=32, hflip=False),
                     measurement=MeasurementSettings(inference_s=0.2), image_size=None,
                     width=1.0, weights=None, val_fraction=0.1)  # fmt: skip
    assert train_and_save(spec, tmp_path / "run").status == "ok"
    argv = ["optimize", "--checkpoint", str(tmp_path / "run"), "--search", "--sampler", "level",
            "--budget", "2", "--floor", "3", "--inference-s", "0.15", "--rounds", "3",
            "--max-rounds", "3"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[1/2] prune:structured:0.5" in out and "[2/2]" in out
    assert "2 candidate(s) by saving" in out and "the search spent" in out
    saved = json.loads((tmp_path / "run" / "search" / "search.json").read_text())
    assert len(saved["candidates"]) == 2 and saved["sampler"] == "level"
    assert main([*argv[:-8], "--budget", "3", *argv[-6:]]) == 0  # continues: one more
    out = capsys.readouterr().out
    assert "[3/3]" in out and "[1/3]" not in out
    with pytest.raises(SystemExit) as refused:  # a recipe or a search: one is needed
        main(["optimize", "--checkpoint", str(tmp_path / "run")])
    assert refused.value.code == 2
    assert "one of the arguments --recipe --search is required" in capsys.readouterr().err
