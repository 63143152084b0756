"""A study's ``recipe_search:`` section: validated with the study, one search per trained
baseline after the trials, resumed without measuring a candidate twice, its joules apart."""

from __future__ import annotations

import json

import pytest

from wattwise.config import StudyConfig, load_study_config
from wattwise.errors import ConfigError
from wattwise.experiment.baselines import BASELINE_DIR, baseline_key
from wattwise.experiment.recipe_searches import (
    SEARCH_DIR,
    read_study_searches,
    run_study_searches,
    search_baselines,
)
from wattwise.experiment.sweep import run_study
from wattwise.recipe_space import RecipeSearchStudy, SearchSpace

SPACE = {
    "ratio_low": 0.3,
    "ratio_high": 0.5,
    "ratio_step": 0.2,
    "importances": ["magnitude"],
    "steps": [1],
    "finetune_epochs": [0],
    "finetune_by": ["labels"],
    "int8": ["none"],
    "channels_last": False,
}


def study(tmp_path, **search) -> StudyConfig:
    path = tmp_path / "study.yaml"
    section = {"budget": 2, "sampler": "grid", "space": SPACE, **search}
    path.write_text(
        json.dumps(
            {
                "name": "rs",
                "output_dir": str(tmp_path / "out"),
                "datasets": ["digits"],
                "models": ["small_cnn"],
                "techniques": ["baseline", "prune:structured:0.5", "distill:small_cnn"],
                "batch_sizes": [32],
                "learning_rates": [0.05],
                "epochs": [1],
                "seeds": [0, 1],
                "train": {"hflip": False, "num_threads": 1},
                "measurement": {"inference_s": 0.1},
                "recipe_search": section,
            }
        )
    )
    return load_study_config(path)


def test_the_section_is_validated_with_the_study(tmp_path):
    config = study(tmp_path, baselines="all")
    assert isinstance(config.recipe_search, RecipeSearchStudy)
    assert config.recipe_search.space == SearchSpace(**{**SPACE, "importances": ("magnitude",),
                                                        "steps": (1,), "finetune_epochs": (0,),
                                                        "finetune_by": ("labels",),
                                                        "int8": ("none",)})  # fmt: skip
    with pytest.raises(ConfigError, match="sampler"):
        study(tmp_path, sampler="random")
    with pytest.raises(ConfigError, match="ratio_hgih"):
        study(tmp_path, space={"ratio_hgih": 0.5})
    assert StudyConfig(name="plain").recipe_search is None


def test_one_search_per_trained_baseline_resumed_without_repeats(tmp_path):
    config = study(tmp_path, baselines="all")
    specs = search_baselines(config)  # one per seed; never the distillation student
    assert [s.seed for s in specs] == [0, 1] and {s.technique for s in specs} == {"baseline"}
    assert [s.seed for s in search_baselines(study(tmp_path))] == [0]  # baselines: first

    out = tmp_path / "out" / "rs"
    summary = run_study(config, study_dir=out)  # the trials, then the searches
    assert [s.key for s in summary.searches] == [baseline_key(s) for s in specs]
    assert summary.search_energy_j == pytest.approx(sum(s.energy_j for s in summary.searches))
    assert summary.total_energy_j == pytest.approx(summary.energy_j + summary.search_energy_j)
    assert summary.search_energy_j > 0
    searches = read_study_searches(out)
    by_key = {s["baseline_key"]: s for s in searches}
    assert set(by_key) == {s.key for s in summary.searches}
    for spec in specs:
        stored = by_key[baseline_key(spec)]
        assert stored["trial_id"] == spec.trial_id
        assert len(stored["candidates"]) == 2 and stored["energy_j"] > 0
        assert (out / SEARCH_DIR / f"{stored['baseline_key']}.sqlite").is_file()

    seen = []
    again = run_study_searches(config, out, on_candidate=lambda c, i, n: seen.append(c))
    assert seen == []  # every candidate was measured already: given back, not measured again
    assert [len(s.result.candidates) for s in again] == [2, 2]
    assert [s.result.to_dict()["candidates"] for s in again] == [
        by_key[s.key]["candidates"] for s in again
    ]


def test_a_missing_baseline_is_a_reason_not_an_error(tmp_path):
    config = study(tmp_path)
    out = tmp_path / "empty"
    (out / BASELINE_DIR).mkdir(parents=True)
    [result] = run_study_searches(config, out)
    assert result.result is None and "no trained baseline" in result.reason
    assert result.energy_j == 0 and result.message.startswith("not run:")
