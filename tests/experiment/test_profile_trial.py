"""A study with ``measurement: {profile: true}``: each trial stores the top operators of a few
training steps and of every variant's inference, and the report shows them beside J/image."""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest

from wattwise.analysis import build_report
from wattwise.analysis.profiles import profiles_markdown, study_profiles
from wattwise.analysis.report import load_study, render_html, report_data
from wattwise.config import StudyConfig
from wattwise.energy import profiler
from wattwise.energy.profiler import ESTIMATED, OperatorProfile
from wattwise.experiment import ResultsStore
from wattwise.experiment.record import TrialRecord, phase_category
from wattwise.experiment.sweep import run_study


def _study(folder: Path, technique: str) -> Path:
    """Runs a one-trial profiled study (1 epoch, quarter width) in ``folder``."""
    study = StudyConfig(
        name="profiled",
        output_dir=str(folder),
        width=0.25,
        techniques=[technique],
        batch_sizes=[64],
        learning_rates=[0.05],
        epochs=[1],
        seeds=[0],
        train={"hflip": False, "augment": False, "num_threads": 1},
        measurement={"inference_s": 0.1, "profile": True},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(profiler, "INFERENCE_MIN_S", 0.05)  # a few batches suffice here
        summary = run_study(study)
    assert summary.ok == 1, summary
    return folder / "profiled"


def _record(study: Path) -> TrialRecord:
    with ResultsStore(study / "results.sqlite", read_only=True) as store:
        (record,) = store.records()
    return record


@pytest.fixture(scope="module")
def profiled_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield _study(tmp_path_factory.mktemp("profiled"), "baseline")


def test_a_profiled_trial_stores_operators_per_phase_and_variant(profiled_study: Path) -> None:
    record = _record(profiled_study)
    profiles = [OperatorProfile.from_dict(p) for p in record.profiles]
    assert [(p.phase, p.variant) for p in profiles] == [("train", None), ("inference", "baseline")]
    assert profiles[0].steps == profiler.TRAIN_STEPS
    for p in profiles:
        assert 0 < len(p.operators) <= profiler.TOP_K
        assert p.energy_label == ESTIMATED and p.method.startswith(ESTIMATED)
        assert sum(op.energy_share or 0 for op in p.operators) <= 1 + 1e-9
        assert p.flops > 0
    # the profiled inference window is a measurement phase; the training steps' window is
    # inside `train` (no phase of its own): every joule in exactly one phase
    assert phase_category("profile/baseline") == "measurement"
    assert "profile/baseline" in record.phases and "profile/train" not in record.phases
    assert record.total_energy_j == pytest.approx(
        sum(e for e in record.phase_energy_j().values() if e is not None)
    )


def test_the_report_shows_the_top_operators_beside_j_per_image(profiled_study: Path) -> None:
    record = _record(profiled_study)
    rows = study_profiles([record])
    assert [(r.phase, r.variant) for r in rows] == [("train", None), ("inference", "baseline")]
    assert rows[1].j_per_image == record.variants[0].inference_energy_per_image_j is not None
    data = report_data(load_study(profiled_study))
    assert data.profiles == rows
    section = render_html(data).split('id="operators"', 1)[1]
    assert "mJ/image" in section and "estimated" in section
    for op in rows[1].profile.operators:
        assert f"<code>{escape(op.name)}</code>" in section
    assert "## Operators" in profiles_markdown(rows)


def test_a_study_without_profiles_has_no_operator_section() -> None:
    assert study_profiles([TrialRecord("0123456789abcdef")]) == ()
    assert profiles_markdown([]) == []


@pytest.mark.slow
def test_each_variant_of_a_recipe_trial_is_profiled_and_reported(tmp_path: Path) -> None:
    study = _study(tmp_path, "prune:structured:0.5")
    record = _record(study)
    variants = [p["variant"] for p in record.profiles if p["phase"] == "inference"]
    assert variants == ["baseline", "prune:structured:0.5"]
    assert {"profile/baseline", "profile/prune:structured:0.5"} <= set(record.phases)
    paths = build_report(study, tmp_path / "report")
    section = paths.html.read_text(encoding="utf-8").split('id="operators"', 1)[1]
    assert "prune:structured:0.5" in section
    assert "## Operators" in paths.markdown.read_text(encoding="utf-8")
