"""Recipes: steps compose, every variant is measured like the baseline, payback is computed."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from wattwise.cli import main
from wattwise.config import MeasurementSettings
from wattwise.data import load_dataset
from wattwise.errors import ConfigError
from wattwise.experiment.runner import train_and_save
from wattwise.experiment.spec import TrialSpec
from wattwise.models import create_model
from wattwise.optimize import ChannelPruneConfig, StaticInt8Config, load_recipe, parse_recipe
from wattwise.optimize.recipe import (
    RecipeSettings,
    load_recipe_text,
    run_recipe,
)
from wattwise.optimize.variants import _payback
from wattwise.train import TrainConfig, fit

SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}
FAST = RecipeSettings(finetune_epochs=1, finetune_lr=0.02, inference_s=0.2, batch_size=32)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = create_model(**SPEC)
    result = fit(
        model,
        data,
        TrainConfig(epochs=4, lr=0.05, batch_size=32, hflip=False),
    )
    assert result.test_accuracy > 0.85
    return model, data


def test_recipe_text_round_trips_through_yaml(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("steps:\n  - prune:structured:0.50\n  - quantize:int8\n")
    assert load_recipe_text(str(path)) == "prune:structured:0.5,quantize:int8"
    assert load_recipe_text("prune:structured:0.5,quantize:int8") == load_recipe_text(str(path))
    listed = tmp_path / "list.yaml"
    listed.write_text("- bf16\n")
    assert load_recipe_text(str(listed)) == "bf16"
    assert parse_recipe(load_recipe_text(str(path)))[0] == ChannelPruneConfig(ratio=0.5)


def test_yaml_recipe_steps_may_be_mappings_with_every_option(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "steps:\n"
        "  - {step: prune:structured, ratio: 0.5, importance: taylor, steps: 3}\n"
        "  - step: quantize:int8\n"
        "    calibration_batches: 4\n"
    )
    assert load_recipe(str(path)) == (
        ChannelPruneConfig(ratio=0.5, importance="taylor", iterative_steps=3),
        StaticInt8Config(calibration_batches=4),
    )
    text = load_recipe_text(str(path))
    assert (
        text == "prune:structured:0.5:importance=taylor:steps=3,quantize:int8:calibration_batches=4"
    )
    assert load_recipe(text) == load_recipe(str(path))
    path.write_text("- {step: prune:structured, ratio: 0.5, bogus: 1}\n")
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load_recipe(str(path))


@pytest.mark.parametrize("bad", ["- 3\n", "steps: []\n", "{unclosed\n"])
def test_bad_yaml_recipe_is_a_config_error(tmp_path, bad):
    path = tmp_path / "r.yaml"
    path.write_text(bad)
    with pytest.raises(ConfigError):
        load_recipe_text(str(path))


def test_payback_is_spent_over_saving_with_its_interval():
    from wattwise.optimize.compare import Ratio

    def ratio(saving: float, low: float, high: float) -> Ratio:
        return Ratio(
            variant="v",
            reference="baseline",
            saving=saving,
            low=low,
            high=high,
            speedup=saving,
            speedup_low=low,
            speedup_high=high,
            rounds=5,
            confidence=0.95,
            method="t",
            significant=low > 1,
            verdict="",
        )

    # baseline 2 mJ/image, variant 1 mJ/image: 1 mJ saved per image repays 10 J in 10,000
    # (at 4x: 1.5 mJ saved per image, 6,667 images; at 1.5x: 0.67 mJ, 15,000 images)
    assert _payback(10.0, 0.002, ratio(2.0, 1.5, 4.0)) == pytest.approx(
        (10_000, 20_000 / 3, 15_000)
    )
    assert _payback(10.0, 0.002, ratio(2.0, 0.9, 4.0))[2] is None  # never at the low end


def test_settings_are_validated():
    with pytest.raises(ConfigError):
        RecipeSettings(finetune_epochs=-1)
    with pytest.raises(ConfigError):
        RecipeSettings(finetune_lr=0)
    with pytest.raises(ConfigError):
        RecipeSettings(inference_s=-1)


def test_inference_seconds_zero_measures_no_inference(trained):
    model, data = trained
    settings = RecipeSettings(finetune_epochs=0, inference_s=0, batch_size=32)
    result = run_recipe(model, data, "prune:structured:0.5", settings=settings, model_spec=SPEC)
    base, pruned = result.variants
    assert base.stats is None and pruned.inference_energy_per_image_j is None
    assert result.comparison is None and result.benchmark is None
    assert pruned.payback_inferences is None and 0 <= pruned.accuracy <= 1
    assert pruned.step_measurement is not None and pruned.step_energy_j > 0


def test_prune_then_bf16_composes_and_measures_each_variant(trained):
    model, data = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stages: list[str] = []
    result = run_recipe(model, data, "prune:structured:0.5,bf16", settings=FAST, model_spec=SPEC,
                        on_stage=stages.append)  # fmt: skip
    steps = [v.step for v in result.variants]
    assert steps == ["baseline", "prune:structured:0.5", "bf16"]
    assert stages == [  # what a spinner shows while a step runs
        "applying prune:structured:0.5 (step 1 of 2)",
        "applying bf16 (step 2 of 2)",
        f"measuring {len(result.variants) + len(result.references)} variants side by side",
    ]
    assert [m.applied for m in result.models][1:] == ["prune:structured:0.5", result.final.applied]
    base, pruned, bf16 = result.variants
    # the original model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # structured pruning really shrinks the model; bf16 keeps its size
    assert pruned.params < 0.6 * base.params
    assert pruned.macs < 0.6 * base.macs
    assert pruned.model_bytes < base.model_bytes
    assert bf16.params == pruned.params
    # every variant measured by the same protocol, with provenance and a step cost
    for v in result.variants:
        assert 0.0 <= v.accuracy <= 1.0
        assert v.inference_energy_per_image_j > 0 and v.images_per_s > 0
        assert v.inference_energy_provenance in ("measured", "estimated", "mixed")
        assert v.stats is not None and FAST.rounds <= len(v.stats.rounds) <= FAST.max_rounds
    # measured side by side: every variant in every round, one comparison, one benchmark window
    assert result.comparison is not None and set(result.comparison.variants) == set(steps)
    assert result.benchmark is not None and result.benchmark.name == "inference"
    assert pruned.saving is not None and pruned.saving.reference == "baseline"
    assert pruned.saving.low <= pruned.saving.saving <= pruned.saving.high
    assert result.references == []  # no compiled step: no compiled reference
    assert base.step_energy_j == 0.0 and base.payback_inferences == 0.0
    assert pruned.step_energy_j > 0  # fine-tuning was measured
    assert bf16.optimization_energy_j == pytest.approx(pruned.step_energy_j + bf16.step_energy_j)
    assert pruned.accuracy > 0.5  # fine-tuning kept it far above chance (0.1)
    assert result.final.precision == "bf16"
    json.dumps(result.to_dict())  # JSON-ready


def test_prune_after_quantize_is_refused(trained):
    model, data = trained
    with pytest.raises(ConfigError, match=r"prune:structured:0\.3 must come before bf16"):
        run_recipe(model, data, "bf16,prune:structured:0.3", settings=FAST, model_spec=SPEC)


def test_mask_pruning_keeps_macs_and_says_so(trained):
    model, data = trained
    result = run_recipe(model, data, "prune:unstructured:0.5", settings=FAST, model_spec=SPEC)
    base, masked = result.variants
    assert masked.macs == base.macs and masked.params == base.params
    assert any("speedup" in note.lower() for note in masked.notes)
    assert masked.details["masks_made_permanent"] > 0


def test_prune_and_int8_recipe_shrinks_and_keeps_accuracy(trained):
    model, data = trained
    result = run_recipe(
        model, data, "prune:structured:0.3,quantize:int8", settings=FAST, model_spec=SPEC
    )
    base, pruned, int8 = result.variants
    assert int8.model_bytes < pruned.model_bytes < base.model_bytes
    assert int8.params == pruned.params  # int8 computes what its float model computed
    assert int8.accuracy >= pruned.accuracy - 0.03
    assert int8.step_energy_j > 0  # calibration + compile are counted
    assert int8.details["report"]["calibration_batches"] >= 1
    # the fair reference: fp32 compiled by int8's compiler path, shown beside fp32 eager
    (compiled,) = result.references
    assert compiled.step == "fp32 compiled" and compiled.reference
    assert int8.saving_vs_best_fp32 is not None and int8.best_fp32 in ("baseline", "fp32 compiled")
    assert compiled.accuracy == pytest.approx(base.accuracy, abs=0.01)


def test_optimize_cli_runs_a_recipe_on_a_saved_run(tmp_path, capsys):
    spec = TrialSpec(
        study="train",
        dataset="digits",
        model="small_cnn",
        technique="baseline",
        train=TrainConfig(epochs=2, lr=0.05, batch_size=32, hflip=False),
        measurement=MeasurementSettings(inference_s=0.2),
        image_size=None,
        width=1.0,
        weights=None,
        val_fraction=0.1,
    )
    assert train_and_save(spec, tmp_path / "run").status == "ok"
    out = tmp_path / "opt"
    code = main(
        [
            "optimize",
            "--checkpoint",
            str(tmp_path / "run"),
            "--recipe",
            "prune:structured:0.3",
            "--finetune-epochs",
            "1",
            "--inference-seconds",
            "0.2",
            "--rounds",
            "5",
            "--max-rounds",
            "7",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "prune:structured:0.3" in text and "payback" in text
    assert "ranked by J/image" in text and "rank" in text
    saved = json.loads((out / "recipe.json").read_text())
    assert [v["step"] for v in saved["variants"]] == ["baseline", "prune:structured:0.3"]
    assert 5 <= saved["comparison"]["rounds"] <= 7 and saved["comparison"]["stop"]
    ranks = saved["comparison"]["ranks"]
    assert {v["step"]: v["rank"] for v in saved["variants"]} == {
        k: r for k, r in ranks.items() if k in ("baseline", "prune:structured:0.3")
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["optimize", "--checkpoint", "/nonexistent", "--recipe", "quantize:int8"],
        ["optimize", "--checkpoint", "/tmp", "--recipe", "prune:sideways:0.5"],
        ["optimize", "--checkpoint", "/tmp", "--recipe", "shrink"],
    ],
)
def test_optimize_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wattwise: error:")


def test_pruning_fine_tuned_by_distillation_learns_from_the_model_before_the_step(
    trained, monkeypatch
):
    """``finetune_by=distill``: the pruned (narrower) student is fine-tuned by KD from a copy of
    the model as it was before pruning (iterative steps too), and the record says so."""
    distill_module = importlib.import_module("wattwise.optimize.distill")
    model, data = trained
    teachers = []
    real = distill_module.distill

    def spy(student, data, train_config, config, *, teacher=None, **kwargs):
        teachers.append(
            (
                sum(p.numel() for p in teacher.parameters()),
                sum(p.numel() for p in student.parameters()),
            )
        )
        return real(student, data, train_config, config, teacher=teacher, **kwargs)

    monkeypatch.setattr(distill_module, "distill", spy)
    settings = RecipeSettings(finetune_epochs=1, finetune_lr=0.02, inference_s=0, batch_size=32)
    result = run_recipe(model, data, "prune:structured:0.5:steps=2:finetune_by=distill",
                        settings=settings, model_spec=SPEC)  # fmt: skip
    assert len(teachers) == 2  # between the two steps, and after the last
    full = sum(p.numel() for p in model.parameters())
    assert all(t == full and s < t for t, s in teachers)  # the unpruned model teaches
    final = result.variants[-1]
    assert final.details["finetune_by"] == "distill"
    assert final.accuracy > 0.8
    labels = run_recipe(model, data, "prune:structured:0.5", settings=settings, model_spec=SPEC)
    assert "finetune_by" not in labels.variants[-1].details and len(teachers) == 2


def test_fewer_training_images_than_a_batch_is_one_clear_error(trained):
    """The loader drops the last partial batch: with fewer images than ``batch_size`` it had
    none, and run_recipe died with a bare StopIteration and no message."""
    model, data = trained
    settings = RecipeSettings(finetune_epochs=0, inference_s=0, batch_size=len(data.train) + 1)
    with pytest.raises(ConfigError, match="batch size"):
        run_recipe(model, data, "prune:structured:0.5", settings=settings, model_spec=SPEC)
