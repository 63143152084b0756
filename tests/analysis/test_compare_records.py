"""Comparing two records (``compare_records``): which number is compared, its interval from the
records' repeated measurements, the verdict against the tolerance, provenance, refusals.

The records are written in the exact format wattwise writes them, by the writers themselves:
``CommandResult.to_dict`` (``wattwise monitor --json``), ``TrialRecord.to_dict`` (a run's
``run.json``), ``RecipeResult.to_dict`` (``wattwise optimize``'s recipe.json) and a results
store (a study folder). The helpers here are shared with tests/cli/test_compare.py.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.analysis.analysis_fixtures import make_record, measurement, write_store
from wattwise.analysis.compare_records import NO_INTERVAL, RecordComparison, compare_records
from wattwise.analysis.intervals import welch_ratio
from wattwise.analysis.record_files import load_record
from wattwise.energy.command import CommandResult
from wattwise.errors import ConfigError, WattwiseError
from wattwise.experiment.record import TrialRecord
from wattwise.optimize.base import PreparedModel
from wattwise.optimize.comparison import (
    CompareSettings,
    Comparison,
    RoundStat,
    VariantStats,
    interval_method,
    paired_ratio,
)
from wattwise.optimize.recipe import RecipeResult
from wattwise.optimize.variants import VariantResult

#: Per-round wobble around 1: a spread that gives intervals a few percent wide.
WOBBLE = (1.00, 1.02, 0.98, 1.01, 0.99, 1.015, 0.985, 1.005)
#: Another wobble of the same size (a second, independent run).
WOBBLE2 = (0.99, 1.01, 1.00, 0.98, 1.02, 0.995, 1.005, 1.01)
IMAGES = 640


# --- records, written by wattwise's own writers --------------------------------------------------


def rounds(j_per_image: float, wobble: Sequence[float] = WOBBLE) -> list[float]:
    """Per-round J/image: ``j_per_image`` times each factor of ``wobble``."""
    return [j_per_image * w for w in wobble]


def optimize_record(
    per_round: Mapping[str, Sequence[float]],
    *,
    provenance: str = "measured",
    round_s: Mapping[str, Sequence[float]] | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """What ``wattwise optimize`` writes (``RecipeResult.to_dict()``): the variants named in
    ``per_round`` (the first is the baseline), each with these per-round J/image in its
    comparison (and these round lengths in seconds, default 0.5 s for :data:`IMAGES` images)."""
    count = len(next(iter(per_round.values())))
    settings = CompareSettings(rounds=count, target_half_width=None)
    stats = {}
    for name, values in per_round.items():
        lengths = (round_s or {}).get(name, [0.5] * count)
        made = [
            RoundStat(
                round=i,
                order=i % len(per_round),
                batches=10,
                images=IMAGES,
                duration_s=length,
                energy_j=j * IMAGES,
                j_per_image=j,
                images_per_s=IMAGES / length,
                latency_p50_ms=length * 100,
                latency_p95_ms=length * 120,
                external_cpu_cores=0.0,
            )
            for i, (j, length) in enumerate(zip(values, lengths, strict=True))
        ]
        stats[name] = VariantStats(
            name=name,
            rounds=tuple(made),
            j_per_image=statistics.median(values),
            images_per_s=statistics.median(r.images_per_s for r in made),
            latency_p50_ms=statistics.median(r.latency_p50_ms for r in made),
            latency_p95_ms=statistics.median(r.latency_p95_ms for r in made),
            cv_j_per_image=statistics.stdev(values) / statistics.fmean(values),
            cv_images_per_s=None,
            energy_provenance=provenance,
            external_cpu_cores=0.0,
            noisy=False,
            noise=(),
        )
    names = list(per_round)
    ratios = tuple(paired_ratio(stats[n], stats[names[0]], settings) for n in names[1:])
    comparison = Comparison(
        settings=settings,
        threads=threads,
        batch_size=64,
        device="cpu",
        variants=stats,
        ratios=ratios,
        noisy=False,
        noise=(),
        method=interval_method(count),
        rounds=count,
        stop=f"fixed: {count} rounds",
    )
    variants = [
        VariantResult(
            step=name,
            applied=name,
            accuracy=0.9,
            params=1000,
            macs=2000,
            model_bytes=4000,
            model_bytes_note="bytes on disk (shapes + state_dict)",
            stats=stats[name],
            saving=None if i == 0 else ratios[i - 1],
            best_fp32=names[0],
        )
        for i, name in enumerate(names)
    ]
    result = RecipeResult(
        recipe=",".join(names[1:]) or "baseline",
        variants=variants,
        final=PreparedModel(torch.nn.Identity(), applied=names[-1]),
        comparison=comparison,
    )
    return result.to_dict()


def monitor_record(
    energy_j: float, *, measured: bool = True, duration_s: float = 10.0, exit_code: int = 0
) -> dict[str, Any]:
    """What ``wattwise monitor --json`` writes (``CommandResult.to_dict()``)."""
    m = measurement("python -c pass", energy_j, measured=measured)
    m = dataclasses.replace(m, duration_s=duration_s)
    return CommandResult(("python", "-c", "pass"), exit_code, m).to_dict()


def train_record(epoch_energies: Sequence[float], *, measured: bool = True) -> dict[str, Any]:
    """What ``wattwise train`` writes to ``run.json`` (``TrialRecord.to_dict()``), with these
    per-epoch energies (J) in its history."""
    label = "measured:rapl" if measured else "estimated:tdp"
    history = tuple(
        {
            "epoch": e,
            "train_loss": 1.0,
            "train_accuracy": 0.8,
            "val_loss": 1.0,
            "val_accuracy": 0.8,
            "lr": 0.01,
            "images": 1000,
            "duration_s": 2.0 + 0.01 * e,
            "energy_j": energy,
            "energy_provenance": label.split(":")[0],
            "components": {"cpu": {"energy_j": energy, "provenance": label}},
            "peak_rss_bytes": None,
            "peak_cuda_allocated_bytes": None,
        }
        for e, energy in enumerate(epoch_energies, start=1)
    )
    record = make_record(
        "run-1",
        study="train",
        epochs=len(epoch_energies),
        train_energy_j=sum(epoch_energies),
        measured=measured,
        history=history,
    )
    return record.to_dict()


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def recipe(path: Path, per_round: Mapping[str, Sequence[float]], **options: Any) -> Path:
    """:func:`optimize_record` written to ``path``."""
    return write_json(path, optimize_record(per_round, **options))


def study(path: Path, scale: float = 1.0, *, techniques: Sequence[str] = ("baseline",)) -> Path:
    """A study folder: each technique with 3 seeds, J/image ``scale`` times a fixed value."""
    records: list[TrialRecord] = []
    for t, technique in enumerate(techniques):
        for seed in range(3):
            records.append(
                make_record(
                    f"{technique}-{seed}",
                    technique=technique,
                    seed=seed,
                    j_per_image=0.002 * (1 + 0.5 * t) * scale * WOBBLE[seed],
                    train_energy_j=1000.0 * WOBBLE2[seed],
                    measured=True,
                )
            )
    write_store(path / "results.sqlite", records)
    return path


# --- optimize records: J/image per variant, over the comparison's rounds -------------------------


def test_a_clear_j_per_image_regression_of_one_variant_is_a_regression(tmp_path):
    base = recipe(
        tmp_path / "base.json", {"baseline": rounds(1e-3), "prune:structured:0.5": rounds(5e-4)}
    )
    new = recipe(
        tmp_path / "new.json",
        {"baseline": rounds(1e-3, WOBBLE2), "prune:structured:0.5": rounds(6.5e-4, WOBBLE2)},
    )
    result = compare_records(base, new)
    assert isinstance(result, RecordComparison)
    assert (result.kind, result.metric, result.unit) == ("optimize", "J/image", "J/image")
    rows = {row.name: row for row in result.rows}
    assert list(rows) == ["baseline", "prune:structured:0.5"]
    assert rows["baseline"].verdict == "no significant change"
    pruned = rows["prune:structured:0.5"]
    assert pruned.verdict == "regression"
    assert pruned.low > 1 + result.tolerance and pruned.ratio == pytest.approx(1.3, rel=0.02)
    assert result.regression and result.verdict == "regression"
    assert "prune:structured:0.5" in result.summary


def test_the_interval_is_welch_ratio_of_the_per_round_values(tmp_path):
    base_rounds, new_rounds = rounds(1e-3), rounds(1.1e-3, WOBBLE2)
    base = write_json(tmp_path / "base.json", optimize_record({"baseline": base_rounds}))
    new = write_json(tmp_path / "new.json", optimize_record({"baseline": new_rounds}))
    (row,) = compare_records(base, new).rows
    expected = welch_ratio(new_rounds, base_rounds)  # new / base
    assert (row.ratio, row.low, row.high) == (expected.estimate, expected.low, expected.high)
    assert row.base.values == tuple(base_rounds) and row.base.over == "rounds"
    assert "Welch" in row.method


@pytest.mark.parametrize(
    ("factor", "verdict"),
    [(0.7, "improved"), (1.0, "no significant change"), (1.03, "worse within tolerance")],
)
def test_improvement_no_change_and_worse_within_tolerance_are_no_regression(
    tmp_path, factor, verdict
):
    base = write_json(tmp_path / "base.json", optimize_record({"baseline": rounds(1e-3)}))
    tight = [1 + (w - 1) / 10 for w in WOBBLE]  # 0.2 % spread: 3 % worse is significant
    new = recipe(
        tmp_path / "new.json",
        {"baseline": rounds(1e-3 * factor, tight if factor != 1.0 else WOBBLE)},
    )
    result = compare_records(base, new, tolerance=0.05)
    assert result.rows[0].verdict == verdict
    assert result.verdict == verdict and not result.regression


def test_the_tolerance_decides_against_the_low_end_of_the_interval(tmp_path):
    base = write_json(tmp_path / "base.json", optimize_record({"baseline": rounds(1e-3)}))
    new = write_json(tmp_path / "new.json", optimize_record({"baseline": rounds(1.2e-3, WOBBLE2)}))
    low = compare_records(base, new).rows[0].low
    assert compare_records(base, new, tolerance=low - 1 - 0.01).regression
    assert not compare_records(base, new, tolerance=low - 1 + 0.01).regression


def test_time_compares_seconds_per_image_over_the_rounds(tmp_path):
    base = write_json(tmp_path / "base.json", optimize_record({"baseline": rounds(1e-3)}))
    slow = {"baseline": [0.5 * 1.5 * w for w in WOBBLE2]}
    new = write_json(
        tmp_path / "new.json", optimize_record({"baseline": rounds(1e-3)}, round_s=slow)
    )
    result = compare_records(base, new, metric="time")
    (row,) = result.rows
    assert result.unit == "s/image" and row.base.provenance == "measured"
    assert row.base.value == pytest.approx(0.5 / IMAGES)
    assert row.ratio == pytest.approx(1.5, rel=0.02) and row.verdict == "regression"


def test_variants_in_one_record_only_are_listed_not_compared(tmp_path):
    base = recipe(tmp_path / "base.json", {"baseline": rounds(1e-3), "quantize:int8": rounds(4e-4)})
    new = recipe(
        tmp_path / "new.json", {"baseline": rounds(1e-3, WOBBLE2), "channels_last": rounds(9e-4)}
    )
    result = compare_records(base, new)
    assert [row.name for row in result.rows] == ["baseline"]
    assert result.only_base == ("quantize:int8",) and result.only_new == ("channels_last",)


def test_records_without_a_variant_in_common_are_refused(tmp_path):
    base = write_json(tmp_path / "base.json", optimize_record({"baseline": rounds(1e-3)}))
    other = optimize_record({"baseline": rounds(1e-3)})
    other["variants"][0]["step"] = "renamed"
    other["comparison"]["variants"] = {"renamed": other["comparison"]["variants"]["baseline"]}
    new = write_json(tmp_path / "new.json", other)
    with pytest.raises(ConfigError, match="in common"):
        compare_records(base, new)


# --- one measurement per side: monitor records ---------------------------------------------------


@pytest.mark.parametrize(
    ("new_j", "verdict"),
    [(12.0, "regression"), (10.3, "worse within tolerance"), (10.0, "no significant change"),
     (9.8, "no significant change"), (8.0, "improved")],
)  # fmt: skip
def test_one_measurement_per_side_has_no_interval(tmp_path, new_j, verdict):
    base = write_json(tmp_path / "base.json", monitor_record(10.0))
    new = write_json(tmp_path / "new.json", monitor_record(new_j))
    result = compare_records(base, new)
    (row,) = result.rows
    assert (result.kind, result.metric, result.unit) == ("monitor", "energy", "J")
    assert row.ratio == pytest.approx(new_j / 10.0)
    assert row.low is None and row.high is None
    assert row.method == NO_INTERVAL
    assert "one measurement per side: no interval" in NO_INTERVAL
    assert row.verdict == verdict and result.regression == (verdict == "regression")


def test_monitor_time_is_the_commands_wall_time(tmp_path):
    base = write_json(tmp_path / "base.json", monitor_record(10.0, duration_s=2.0))
    new = write_json(tmp_path / "new.json", monitor_record(10.0, duration_s=3.0))
    (row,) = compare_records(base, new, metric="time").rows
    assert row.ratio == pytest.approx(1.5) and row.verdict == "regression"
    assert row.new.unit == "s" and row.new.provenance == "measured"


def test_estimated_energy_is_said_on_every_number(tmp_path):
    base = write_json(tmp_path / "base.json", monitor_record(10.0, measured=True))
    new = write_json(tmp_path / "new.json", monitor_record(10.0, measured=False))
    result = compare_records(base, new)
    (row,) = result.rows
    assert row.base.provenance == "measured" and "measured:rapl" in row.base.sources
    assert row.new.provenance == "estimated" and "estimated:tdp" in row.new.sources
    assert result.estimated
    assert any("estimated" in note and "new" in note for note in result.notes)


def test_noisy_numbers_are_flagged_with_their_reasons(tmp_path):
    base = recipe(tmp_path / "base.json", {"baseline": rounds(1e-3)})
    data = optimize_record({"baseline": rounds(1.5e-3, WOBBLE2)})
    why = "other processes used up to 1.54 cores during its rounds (threshold 0.25)"
    data["comparison"]["variants"]["baseline"].update(noisy=True, noise=[why])
    result = compare_records(base, write_json(tmp_path / "new.json", data))
    assert result.rows[0].new.notes == (f"noisy: {why}",)
    assert any(why in note and note.startswith("new: baseline") for note in result.notes)
    assert any("rerun on a quiet machine" in note for note in result.notes)
    (entry,) = result.github_benchmark()
    assert why in entry["extra"]


def test_a_failed_command_is_noted(tmp_path):
    base = write_json(tmp_path / "base.json", monitor_record(10.0))
    new = write_json(tmp_path / "new.json", monitor_record(10.0, exit_code=3))
    notes = compare_records(base, new).notes
    assert any("exited with code 3" in note for note in notes)


# --- train records: per-epoch energies -----------------------------------------------------------


def test_train_records_compare_their_per_epoch_energies(tmp_path):
    base = write_json(tmp_path / "base.json", train_record(rounds(100.0)))
    new = write_json(tmp_path / "new.json", train_record(rounds(130.0, WOBBLE2)))
    result = compare_records(base, new)
    (row,) = result.rows
    assert (result.kind, result.metric, result.unit) == ("train", "energy", "J")
    assert row.base.value == pytest.approx(sum(rounds(100.0))) and row.base.over == "epochs"
    expected = welch_ratio(rounds(130.0, WOBBLE2), rounds(100.0))
    assert (row.low, row.high) == (expected.low, expected.high)
    assert row.verdict == "regression"


def test_runs_of_different_epoch_counts_compare_their_totals_without_an_interval(tmp_path):
    base = write_json(tmp_path / "base.json", train_record(rounds(100.0)))
    new = write_json(tmp_path / "new.json", train_record(rounds(100.0)[:4]))
    (row,) = compare_records(base, new).rows
    assert row.low is None and "8 and 4 epochs" in row.method
    assert row.ratio == pytest.approx(sum(rounds(100.0)[:4]) / sum(rounds(100.0)))
    assert row.verdict == "improved"


def test_runs_measured_on_different_machines_are_noted(tmp_path):
    base = write_json(tmp_path / "base.json", train_record(rounds(100.0)))
    other = train_record(rounds(100.0, WOBBLE2))
    other["environment"]["cpu_model"] = "Other CPU"
    notes = compare_records(base, write_json(tmp_path / "new.json", other)).notes
    assert "measured with different CPU: base Test CPU, new Other CPU" in notes


def test_a_failed_run_is_refused(tmp_path):
    failed = TrialRecord.from_dict(train_record([100.0, 100.0])).failed("diverged at epoch 2")
    base = write_json(tmp_path / "base.json", failed.to_dict())
    new = write_json(tmp_path / "new.json", train_record([100.0, 100.0]))
    with pytest.raises(ConfigError, match="diverged at epoch 2"):
        compare_records(base, new)


# --- studies: per configuration, over its seeds --------------------------------------------------


def test_study_configurations_are_matched_and_compared_over_seeds(tmp_path):
    base = study(tmp_path / "base", techniques=("baseline", "prune:structured:0.5"))
    new = study(tmp_path / "new", 1.4, techniques=("baseline", "prune:structured:0.5", "qat"))
    result = compare_records(base, new)
    assert (result.kind, result.metric) == ("study", "J/image")
    assert len(result.rows) == 2 and all(row.verdict == "regression" for row in result.rows)
    for row in result.rows:
        assert row.base.over == "seeds" and len(row.base.values) == 3
        assert row.ratio == pytest.approx(1.4)
        assert row.low is not None and row.low > 1.05
    assert len(result.only_new) == 1 and "qat" in result.only_new[0]
    unchanged = compare_records(base, study(tmp_path / "same", techniques=("baseline",)))
    assert unchanged.verdict == "no significant change"


def test_a_study_file_and_its_folder_are_the_same_record(tmp_path):
    folder = study(tmp_path / "base")
    assert load_record(folder).samples == load_record(folder / "results.sqlite").samples


# --- refusals: one clear line --------------------------------------------------------------------


def test_mismatched_kinds_are_refused(tmp_path):
    monitor = write_json(tmp_path / "m.json", monitor_record(10.0))
    folder = study(tmp_path / "study")
    with pytest.raises(ConfigError, match=r"monitor record .* study") as caught:
        compare_records(monitor, folder)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not a wattwise record"),
        ('{"hello": 1}', "not a wattwise record"),
        ('{"sampler": "tpe", "candidates": []}', "search"),
        ('{"trial_id": "x", "spec": {}, "status": "ok", "attempts": "many"}', "run record"),
        ('{"recipe": "x", "variants": [{"step": 1}], "comparison": null}', "optimize record"),
        ('{"name": "x", "duration_s": 1.0, "components": [{"x": 1}]}', "monitor record"),
    ],
)
def test_missing_garbage_and_unknown_files_are_refused_in_one_line(tmp_path, content, match):
    good = write_json(tmp_path / "good.json", monitor_record(10.0))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    for base, new in ((bad, good), (good, bad)):
        with pytest.raises(WattwiseError, match=match) as caught:
            compare_records(base, new)
        assert str(bad) in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_without_a_store_is_refused(tmp_path):
    good = write_json(tmp_path / "good.json", monitor_record(10.0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WattwiseError, match=r"results\.sqlite"):
        compare_records(tmp_path / "empty", good)


@pytest.mark.parametrize(
    ("record", "metric", "match"),
    [
        (monitor_record(10.0), "J/image", "not images"),
        (optimize_record({"baseline": rounds(1e-3)}), "energy", "J/image or time"),
    ],
)
def test_a_metric_the_record_does_not_hold_is_refused(tmp_path, record, metric, match):
    path = write_json(tmp_path / "r.json", record)
    with pytest.raises(ConfigError, match=match):
        compare_records(path, path, metric=metric)


@pytest.mark.parametrize(
    ("metric", "tolerance"), [("joules", 0.05), ("energy", -0.1), ("energy", float("nan"))]
)
def test_bad_metric_or_tolerance_is_refused(tmp_path, metric, tolerance):
    path = write_json(tmp_path / "r.json", monitor_record(10.0))
    with pytest.raises(ConfigError):
        compare_records(path, path, metric=metric, tolerance=tolerance)


def test_a_monitor_record_without_energy_is_refused(tmp_path):
    data = monitor_record(10.0)
    for comp in data["components"]:
        comp["energy_j"] = None
        comp["provenance"] = {"kind": "unavailable", "detail": "no meter"}
    path = write_json(tmp_path / "r.json", data)
    with pytest.raises(ConfigError, match="no energy"):
        compare_records(path, path)


# --- outputs -------------------------------------------------------------------------------------


def test_the_comparison_is_plain_json(tmp_path):
    base = write_json(tmp_path / "base.json", optimize_record({"baseline": rounds(1e-3)}))
    new = write_json(tmp_path / "new.json", optimize_record({"baseline": rounds(2e-3)}))
    data = json.loads(json.dumps(compare_records(base, new).to_dict()))
    assert data["verdict"] == "regression" and data["regression"] is True
    assert data["rows"][0]["base"]["values"] == rounds(1e-3)
    assert data["metric"] == "J/image" and data["tolerance"] == 0.05


def test_github_benchmark_entries_are_custom_smaller_is_better(tmp_path):
    base = recipe(tmp_path / "base.json", {"baseline": rounds(1e-3), "quantize:int8": rounds(4e-4)})
    new = recipe(
        tmp_path / "new.json", {"baseline": rounds(1e-3, WOBBLE2), "quantize:int8": rounds(6e-4)}
    )
    entries = compare_records(base, new).github_benchmark()
    assert json.loads(json.dumps(entries)) == entries
    assert [e["name"] for e in entries] == ["baseline (J/image)", "quantize:int8 (J/image)"]
    for entry in entries:
        assert set(entry) <= {"name", "unit", "value", "range", "extra"}
        assert {"name", "unit", "value"} <= set(entry)
        assert entry["unit"] == "J/image" and isinstance(entry["value"], float)
        assert isinstance(entry["range"], str) and entry["range"].startswith("± ")
        assert isinstance(entry["extra"], str)
    assert entries[1]["value"] == pytest.approx(6e-4, rel=0.02)
    assert "regression" in entries[1]["extra"] and "measured" in entries[1]["extra"]


def test_github_benchmark_without_repeats_has_no_range(tmp_path):
    base = write_json(tmp_path / "base.json", monitor_record(10.0))
    new = write_json(tmp_path / "new.json", monitor_record(11.0, measured=False))
    (entry,) = compare_records(base, new).github_benchmark()
    assert "range" not in entry and entry["unit"] == "J" and entry["value"] == pytest.approx(11.0)
    assert "estimated" in entry["extra"] and "no interval" in entry["extra"]
