"""Efficiency metrics, CO2e, Pareto front, the analysis and the recommendation on hand-made
records with known numbers."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest

from tests.analysis.analysis_fixtures import make_record, measurement, variant
from wattwise.analysis import accuracy_per_j_per_image, accuracy_per_kj_train
from wattwise.analysis.intervals import wilson
from wattwise.analysis.metrics import (
    analyze,
    co2e_g,
    energy_per_correct_j,
    pareto_front,
    paybacks,
    summarize,
    trial_metrics,
)
from wattwise.analysis.recommendation import RATIO_CAVEAT, recommend
from wattwise.energy.carbon import CarbonConfig
from wattwise.experiment import record as record_module


def test_formulas_with_units() -> None:
    assert accuracy_per_kj_train(0.9, 1800.0) == pytest.approx(0.5)  # 0.9 / 1.8 kJ
    assert accuracy_per_j_per_image(0.9, 0.003) == pytest.approx(300.0)
    # one formula: the analysis' names are the record's own, behind its properties
    assert accuracy_per_kj_train is record_module.accuracy_per_kj_train
    assert accuracy_per_j_per_image is record_module.accuracy_per_j_per_image
    record = make_record("r", accuracy=0.9, train_energy_j=1800.0, j_per_image=0.003)
    assert record.accuracy_per_kj_train == accuracy_per_kj_train(0.9, 1800.0)
    assert energy_per_correct_j(0.003, 0.75) == pytest.approx(0.004)


@pytest.mark.parametrize("energy", [None, 0.0, -1.0, math.nan, math.inf])
def test_formulas_refuse_unusable_energy(energy: float | None) -> None:
    assert accuracy_per_kj_train(0.9, energy) is None
    assert accuracy_per_j_per_image(0.9, energy) is None
    assert accuracy_per_kj_train(None, 100.0) is None
    assert energy_per_correct_j(0.003, 0.0) is None


def test_trial_metrics_read_a_record_and_its_dict() -> None:
    record = make_record("t1", accuracy=0.8, train_energy_j=2000.0, j_per_image=0.004)
    m = trial_metrics(record)
    assert m.accuracy_per_kj_train == pytest.approx(0.4) == record.accuracy_per_kj_train
    assert m.accuracy_per_j_per_image == pytest.approx(200.0) == record.accuracy_per_j_per_image
    assert m.energy_per_correct_j == pytest.approx(0.005)
    assert m.chance_accuracy == pytest.approx(0.1)  # 10 classes
    assert m.train_energy_provenance == "estimated"
    assert trial_metrics(record.to_dict()) == m


def test_co2e_is_stored_joules_times_intensity_times_pue() -> None:
    # train 1000 J + the technique's 40 J count; the inference windows (10 J and 5 J) do not
    base = make_record("t1", train_energy_j=1000.0, j_per_image=0.002)
    phases = dict(base.phases) | {
        "recipe/quantize:int8": measurement("recipe/quantize:int8", 40.0),
        "inference/baseline": measurement("inference/baseline", 5.0),
    }
    record = make_record("t1", phases=phases)
    kwh = 1040.0 / 3.6e6
    assert co2e_g(record, CarbonConfig(country="DEU", pue=1.2)) == pytest.approx(kwh * 380 * 1.2)
    assert co2e_g(record, CarbonConfig(intensity_g_per_kwh=100.0)) == pytest.approx(kwh * 100)
    assert co2e_g(record) == pytest.approx(kwh * 480)  # default: world average, PUE 1
    # the carbon estimate the monitor attached to a phase (DEU, 380 g/kWh) is not read
    assert co2e_g(record, CarbonConfig(country="FRA")) == pytest.approx(kwh * 55)
    assert trial_metrics(record, CarbonConfig(country="FRA")).co2e_g == pytest.approx(kwh * 55)
    assert co2e_g(make_record("t2", phases={})) is None
    only_inference = {"inference": base.phases["inference"]}
    assert co2e_g(make_record("t3", phases=only_inference)) is None


def test_paybacks_come_from_the_recorded_variants() -> None:
    variants = (
        variant("baseline", 0.95, 0.002),
        variant("quantize:int8", 0.94, 0.001, optimization_energy_j=50.0,
                payback_inferences=50000.0),
        variant("prune:unstructured:0.5", 0.94, 0.003, applied="quantize:int8+prune",
                optimization_energy_j=20.0, payback_inferences=None),
    )  # fmt: skip
    steps = paybacks(make_record("t1", variants=variants))
    assert [p.step for p in steps] == ["baseline", "quantize:int8", "prune:unstructured:0.5"]
    assert steps[1].payback_inferences == pytest.approx(50.0 / (0.002 - 0.001))
    assert steps[1].inference_energy_per_image_j == 0.001
    assert steps[2].payback_inferences is None  # saves nothing per image: never pays back
    assert steps[2].applied == "quantize:int8+prune"
    assert paybacks(make_record("t2")) == []


# --- Pareto front -------------------------------------------------------------------------------


def test_pareto_front_hand_checked() -> None:
    points = [
        (0.90, 10.0),  # 0: front
        (0.95, 20.0),  # 1: front
        (0.80, 5.0),  # 2: front (cheapest)
        (0.85, 15.0),  # 3: dominated by 0 (less accurate, costlier)
        (0.95, 30.0),  # 4: dominated by 1 (same accuracy, costlier)
        (0.99, 50.0),  # 5: front (most accurate)
    ]
    assert pareto_front(points) == [2, 0, 1, 5]  # by increasing energy


def test_pareto_front_ties() -> None:
    # identical points are both kept; same energy keeps the more accurate; same accuracy keeps
    # the cheaper
    assert pareto_front([(0.9, 10.0), (0.9, 10.0)]) == [0, 1]
    assert pareto_front([(0.8, 10.0), (0.9, 10.0)]) == [1]
    assert pareto_front([(0.9, 12.0), (0.9, 10.0)]) == [1]
    assert pareto_front([(0.9, 10.0), (0.9, 10.0), (0.95, 10.0)]) == [2]


def test_pareto_front_skips_missing_values() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(None, 1.0), (0.5, math.nan), (0.7, 3.0)]) == [2]


def test_pareto_front_matches_brute_force() -> None:
    rng = random.Random(7)
    for _ in range(30):
        # few distinct values: many ties
        points = [(rng.choice([0.7, 0.8, 0.9]), rng.choice([1.0, 2.0, 3.0])) for _ in range(12)]

        def dominated(i: int, pts: list[tuple[float, float]] = points) -> bool:
            a, e = pts[i]
            return any(
                a2 >= a and e2 <= e and (a2 > a or e2 < e)
                for j, (a2, e2) in enumerate(pts)
                if j != i
            )

        expected = sorted((i for i in range(len(points)) if not dominated(i)),
                          key=lambda i: (points[i][1], i))  # fmt: skip
        assert pareto_front(points) == expected


# --- variants and the recommendation ------------------------------------------------------------


def test_summarize_averages_seeds_of_a_configuration() -> None:
    records = [
        make_record(f"b{s}", accuracy=acc, train_energy_j=e, seed=s)
        for s, (acc, e) in enumerate([(0.90, 1000.0), (0.92, 1200.0), (0.94, 1100.0)])
    ] + [make_record("q0", technique="quantize:int8", accuracy=0.5), make_record(
        "f0", status="failed", reason="boom")]  # fmt: skip
    variants = summarize(records)
    assert [v.technique for v in variants] == ["baseline", "quantize:int8"]  # failed: ignored
    base = variants[0]
    assert base.n == 3 and base.seeds == (0, 1, 2)
    assert base.accuracy == pytest.approx(0.92)
    assert base.train_energy_j == pytest.approx(1100.0)
    # the seeds' correct predictions pooled: 0.92 of 3 x 360 test images, one Wilson interval
    pooled = wilson(0.92 * 1080, 1080)
    assert (base.accuracy_low, base.accuracy_high) == pytest.approx((pooled.low, pooled.high))
    assert "pooled" in base.accuracy_method and base.accuracy_images == 1080
    single = wilson(0.5 * 360, 360)  # one seed: its own Wilson interval over 360 images
    assert (variants[1].accuracy_low, variants[1].accuracy_high) == pytest.approx(
        (single.low, single.high)
    )


def compared(step: str, acc: float, j: float, saving: tuple[float, float, float], **kw):
    """A trial's variants after an interleaved comparison: its eager baseline (2 mJ/image) and
    ``step`` with its saving (estimate, low, high) against it."""
    est, low, high = saving
    return (variant("baseline", 0.95, 0.002), dataclasses.replace(
        variant(step, acc, j, optimization_energy_j=40.0), saving=est, saving_low=low,
        saving_high=high, saving_significant=low > 1 or high < 1, **kw))  # fmt: skip


#: 10 000 test images: accuracy intervals of about ±0.5 points.
BIG_TEST = {"details": {"dataset": {"num_classes": 10, "test_images": 10_000}}}


def _study() -> list:
    """baseline 0.95 @ 2 mJ/image; prune 0.945 @ 1.2 mJ; quantize 0.93 @ 0.8 mJ; a tiny model
    at chance (0.1 on 10 classes) @ 0.01 mJ: the best ratio by far. Each with a significant
    saving from its interleaved comparison, on 10 000 test images."""
    return [
        make_record("base", accuracy=0.95, j_per_image=0.002, train_energy_j=1000.0, **BIG_TEST),
        make_record("prune", technique="prune:structured:0.5", accuracy=0.945,
                    j_per_image=0.0012, train_energy_j=1200.0, **BIG_TEST,
                    variants=compared("prune:structured:0.5", 0.945, 0.0012, (1.67, 1.6, 1.74))),
        make_record("quant", technique="quantize:int8", accuracy=0.93, j_per_image=0.0008,
                    train_energy_j=1050.0, **BIG_TEST,
                    variants=compared("quantize:int8", 0.93, 0.0008, (2.5, 2.4, 2.6))),
        make_record("tiny", technique="prune:structured:0.99", accuracy=0.1,
                    j_per_image=0.00001, train_energy_j=900.0, **BIG_TEST,
                    variants=compared("prune:structured:0.99", 0.1, 0.00001, (200, 190, 210))),
    ]  # fmt: skip


def test_recommendation_is_the_cheapest_within_the_floor() -> None:
    (rec,) = recommend(summarize(_study()), floor_points=1.0)
    assert rec.reference_kind == "baseline"
    assert rec.reference_accuracy == pytest.approx(0.95)
    assert rec.floor_accuracy == pytest.approx(0.94)
    assert rec.chosen is not None and rec.chosen.technique == "prune:structured:0.5"
    assert rec.saving is not None and rec.saving.method.startswith("interleaved comparison")
    assert (rec.saving.estimate, rec.saving.low, rec.saving.high) == (1.67, 1.6, 1.74)
    assert "— 1.67x less J/image (1.6 to 1.74, 95 %) than the baseline" in rec.message
    # the accuracy change with Newcombe's interval, and the payback with the saving's interval
    change = rec.accuracy_change
    assert change is not None and change.estimate == pytest.approx(-0.005)
    assert change.low < -0.005 < change.high < 0.01  # type: ignore[operator]
    assert "change -0.50 points" in rec.message
    payback = rec.payback  # 40 J / (2 mJ x (1 - 1/saving)) per image
    assert payback is not None and payback.estimate == pytest.approx(40 / (0.002 * (1 - 1 / 1.67)))
    assert payback.low == pytest.approx(40 / (0.002 * (1 - 1 / 1.74)))  # the best saving
    assert payback.high == pytest.approx(40 / (0.002 * (1 - 1 / 1.6)))
    assert "Pays back after 4.99e+04 inferences" in rec.message


def test_floor_moves_the_recommendation() -> None:
    variants = summarize(_study())
    (strict,) = recommend(variants, floor_points=0.0)  # prune's interval ends below 95 %
    assert strict.chosen is None and "no variant is significantly cheaper" in strict.message
    assert "keep the baseline" in strict.message
    (loose,) = recommend(variants, floor_points=3.0)
    assert loose.chosen is not None and loose.chosen.technique == "quantize:int8"


def test_training_energy_is_not_ranked_within_one_training() -> None:
    """prune and quant share dataset, model, training settings and seed with the baseline: their
    training energies (1200 J, 1050 J vs 1000 J) differ by noise only, and are not ranked."""
    (rec,) = recommend(summarize(_study()), floor_points=1.0, by="train")
    assert rec.chosen is None and rec.energy_metric == "train_energy_j"
    assert {label.split(" · ")[2] for label in rec.not_ranked} == {"prune:structured:0.5"}
    assert "ran the identical training as the baseline" in rec.message
    assert "no variant is significantly cheaper" in rec.message


def test_training_energy_ranks_trainings_that_differ() -> None:
    records = [
        make_record(f"{bs}-{s}", batch_size=bs, seed=s, train_energy_j=e * (1 + 0.01 * s),
                    **BIG_TEST)
        for bs, e in ((32, 1000.0), (128, 600.0)) for s in range(3)
    ]  # fmt: skip
    (rec,) = recommend(summarize(records), floor_points=1.0, by="train")
    assert rec.chosen is not None and rec.chosen.batch_size == 128
    assert rec.saving is not None and rec.saving.estimate == pytest.approx(1000 / 600)
    assert rec.saving.low > 1 and "Welch" in rec.saving.method  # type: ignore[operator]


def test_a_saving_that_is_noise_is_no_significant_difference() -> None:
    """Two variants that differ by noise only: the interval of the saving includes 1, so the
    recommendation keeps the baseline and says "no significant difference"."""
    noise = [
        make_record("base", j_per_image=0.002, **BIG_TEST),
        make_record("int8", technique="quantize:int8", j_per_image=0.00197, **BIG_TEST,
                    variants=compared("quantize:int8", 0.95, 0.00197, (1.017, 0.96, 1.08))),
    ]  # fmt: skip
    (rec,) = recommend(summarize(noise))
    assert rec.chosen is None and rec.saving is None and rec.payback is None
    assert "no variant is significantly cheaper than the baseline" in rec.message
    assert "no significant difference in J/image (1.02x, 0.96 to 1.08, 95 %)" in rec.message
    (candidate,) = rec.candidates
    assert not candidate.significant


def test_savings_that_overlap_are_a_tie_and_the_more_accurate_is_chosen() -> None:
    """int8 and structured pruning save 3.0x (2.8-3.2) and 3.1x (2.6-3.6): their intervals
    overlap, so which is cheaper is noise. The choice must not follow the noise: the more
    accurate one is chosen, whichever point estimate is higher, and the tie is stated."""

    def study(int8: float, prune: float) -> list:
        return [
            make_record("base", accuracy=0.95, j_per_image=0.002, **BIG_TEST),
            make_record("int8", technique="quantize:int8", accuracy=0.948, **BIG_TEST,
                        j_per_image=0.002 / int8, variants=compared(
                            "quantize:int8", 0.948, 0.002 / int8, (int8, int8 - 0.2, int8 + 0.2))),
            make_record("prune", technique="prune:structured:0.5", accuracy=0.944, **BIG_TEST,
                        j_per_image=0.002 / prune, variants=compared(
                            "prune:structured:0.5", 0.944, 0.002 / prune,
                            (prune, prune - 0.5, prune + 0.5))),
        ]  # fmt: skip

    for int8, prune in ((3.0, 3.1), (3.1, 3.0)):  # two reruns that swap the point estimates
        (rec,) = recommend(summarize(study(int8, prune)), floor_points=1.0)
        assert rec.chosen is not None and rec.chosen.technique == "quantize:int8"
        assert len(rec.tied) == 1 and "prune:structured:0.5" in rec.tied[0]
        assert "Not significantly different from it (overlapping intervals)" in rec.message
    (clear,) = recommend(summarize(study(3.0, 5.0)), floor_points=1.0)  # 4.5-5.5 vs 2.8-3.2
    assert clear.chosen is not None and clear.chosen.technique == "prune:structured:0.5"
    assert clear.tied == ()


def test_without_a_comparison_seeds_are_tested_by_welch() -> None:
    """Old records (no interleaved comparison): Welch's t over seeds on log J/image decides; a
    noise-only difference over seeds is not significant, a real one is."""

    def trials(tech: str, js: list[float]) -> list:
        return [make_record(f"{tech}{i}", technique=tech, seed=i, j_per_image=j, **BIG_TEST)
                for i, j in enumerate(js)]  # fmt: skip

    base = trials("baseline", [0.0020, 0.0021, 0.0019])
    noise = trials("quantize:int8", [0.00195, 0.00205, 0.0020])
    (rec,) = recommend(summarize(base + noise))
    assert rec.chosen is None and "no significant difference" in rec.message
    assert "Welch t-interval over seeds" in rec.message
    real = trials("prune:structured:0.5", [0.0010, 0.00105, 0.00095])
    (rec,) = recommend(summarize(base + real))
    assert rec.chosen is not None and rec.chosen.technique == "prune:structured:0.5"
    assert rec.saving is not None and rec.saving.low > 1  # type: ignore[operator]
    assert "no interleaved comparison recorded" in rec.saving.method
    one_seed = recommend(summarize(base + trials("quantize:int8", [0.001])))[0]
    assert one_seed.chosen is None and "not testable" in one_seed.message


def test_tiny_useless_model_is_flagged_not_recommended() -> None:
    (rec,) = recommend(summarize(_study()), floor_points=1.0)
    tiny = next(f for f in rec.flagged if "prune:structured:0.99" in f.label)
    assert any(r.startswith("near chance") for r in tiny.reasons)
    assert any(r.startswith("below floor") for r in tiny.reasons)
    # the ratio alone would have picked it, and the output says so
    assert rec.best_ratio_label is not None and "prune:structured:0.99" in rec.best_ratio_label
    assert rec.best_ratio_flagged
    assert "best ratio alone would pick" in rec.message
    assert "chance" in RATIO_CAVEAT and "tiny" in RATIO_CAVEAT
    assert rec.to_dict()["caveat"] == RATIO_CAVEAT


def test_near_chance_is_flagged_even_with_a_generous_floor() -> None:
    (rec,) = recommend(summarize(_study()), floor_points=100.0)
    assert rec.chosen is not None and rec.chosen.technique == "quantize:int8"
    assert any("near chance" in r for f in rec.flagged for r in f.reasons)


def test_without_a_baseline_the_most_accurate_variant_is_the_reference() -> None:
    records = [r for r in _study() if r.spec["technique"] != "baseline"]
    (rec,) = recommend(summarize(records), floor_points=1.0)
    assert rec.reference_kind == "most accurate variant"
    assert rec.reference_accuracy == pytest.approx(0.945)


def test_one_recommendation_per_dataset_and_model() -> None:
    records = [
        *_study(),
        make_record("other", model="resnet18", accuracy=0.97, j_per_image=0.01),
        make_record("cifar", dataset="cifar10", accuracy=0.7, j_per_image=0.02),
    ]
    recs = recommend(summarize(records))
    assert sorted((r.dataset, r.model) for r in recs) == [
        ("cifar10", "small_cnn"), ("digits", "resnet18"), ("digits", "small_cnn"),
    ]  # fmt: skip


def test_the_analysis_computes_fronts_once_for_every_view() -> None:
    records = [*_study(), make_record("failed", status="failed", reason="boom")]
    analysis = analyze(records, CarbonConfig(country="DEU"))
    assert [r.trial_id for r in analysis.records] == ["base", "prune", "quant", "tiny"]
    assert analysis.trials == tuple(trial_metrics(r, analysis.carbon) for r in analysis.records)
    assert analysis.variants == tuple(summarize(analysis.trials))
    # inference: tiny (cheapest), quant, prune, base (most accurate) are all on the front
    labels = [v.label for v in analysis.variants]
    assert [labels[i] for i in analysis.fronts["inference"][0]] == [
        labels[3], labels[2], labels[1], labels[0],
    ]  # fmt: skip
    assert analysis.front_labels("train") == (labels[3], labels[0])  # 900 J, then 1000 J


def test_recommend_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="by must be"):
        recommend([], by="flops")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="floor_points"):
        recommend([], floor_points=-1)


def test_summaries_serialize() -> None:
    import json

    for v, r in itertools.product(summarize(_study()), recommend(summarize(_study()))):
        json.dumps(v.to_dict())
        json.dumps(r.to_dict())
