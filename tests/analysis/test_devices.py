"""Energy from different devices is never pooled: the analysis groups by ``device_id``.

Variants, Pareto fronts, recommendations and technique comparisons are per device, the energy
model has the device as a factor, and the report says in one line that the study mixes devices.
A study on one device (or an old store that recorded none) is analysed as before.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.analysis_fixtures import grid_records, make_record, write_study
from wattwise.analysis.markdown import render_markdown
from wattwise.analysis.metrics import analyze
from wattwise.analysis.recommendation import recommend
from wattwise.analysis.report import device_banner, load_study, render_html, report_data
from wattwise.analysis.stats import COMPARED_METRICS, study_statistics
from wattwise.experiment import TrialRecord

CPU = "cpu:AMD EPYC 9654 96-Core Processor@vm1"
GPU = "cuda:NVIDIA H100 80GB HBM3:GPU-ab12cd34-1111-2222-3333-444455556666"


def on(device: str | None, record: TrialRecord) -> TrialRecord:
    """``record`` as run on ``device`` (``None``: an old record without a device_id)."""
    env = {k: v for k, v in record.environment.items() if k != "device_id"}
    return replace(record, environment=env if device is None else env | {"device_id": device})


def two_devices(cpu: str | None = CPU) -> list[TrialRecord]:
    """Baseline and int8, 3 seeds each, on a CPU and on a GPU that spends a tenth of the energy."""
    records = []
    for device, scale in ((cpu, 1.0), (GPU, 0.1)):
        for technique, accuracy, per_image in (("baseline", 0.95, 0.002), ("quantize:int8", 0.94,
                                                                           0.001)):  # fmt: skip
            for seed in range(3):
                record = make_record(
                    f"{'gpu' if device == GPU else 'cpu'}-{technique[:5]}-{seed}",
                    technique=technique,
                    accuracy=accuracy + 0.002 * seed,
                    train_energy_j=1000.0 * scale * (1 + 0.01 * seed),
                    j_per_image=per_image * scale * (1 + 0.02 * seed),
                    seed=seed,
                )
                records.append(on(device, record))
    return records


def test_two_devices_are_summarized_apart() -> None:
    analysis = analyze(two_devices())
    assert len(analysis.variants) == 4  # 2 techniques x 2 devices, never pooled
    by = {(v.technique, v.device_id): v for v in analysis.variants}
    assert set(by) == {(t, d) for t in ("baseline", "quantize:int8") for d in (CPU, GPU)}
    assert all(v.n == 3 for v in analysis.variants)
    assert by["baseline", CPU].train_energy_j == pytest.approx(1010.0)
    assert by["baseline", GPU].train_energy_j == pytest.approx(101.0)
    assert by["baseline", GPU].inference_energy_per_image_j == pytest.approx(0.0002 * 1.02)
    assert by["baseline", CPU].label.endswith(f" · {CPU}")  # the label says which device
    assert len({v.label for v in analysis.variants}) == 4
    for front in analysis.fronts["train"] + analysis.fronts["inference"]:
        assert len({analysis.variants[i].device_id for i in front}) == 1
    assert len(analysis.fronts["train"]) == 2  # one per dataset × model × device
    assert analysis.devices == ((CPU, 6), (GPU, 6))


def test_technique_comparisons_stay_within_one_device() -> None:
    rows = [t.to_dict() for t in analyze(two_devices()).trials]
    stats = study_statistics(rows)
    assert len(stats.comparisons) == 2 * len(COMPARED_METRICS)
    for comp in stats.comparisons:
        assert (CPU in comp.metric) != (GPU in comp.metric)
        assert sum(comp.sizes) == 6  # the 6 trials of one device
    assert "C(device_id)" in (stats.inference_model.formula or "")  # the device is a factor


def test_recommendations_are_per_device() -> None:
    recs = recommend(analyze(two_devices()).variants)
    assert [r.device for r in recs] == [CPU, GPU]
    for r in recs:
        assert r.reference_label.endswith(r.device or "?")
        assert r.message.startswith(f"digits · small_cnn · {r.device}: ")
        assert all(c.label.endswith(r.device or "?") for c in r.candidates)


def test_the_report_says_in_one_line_that_the_study_mixes_devices(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "study", two_devices(), study="mixed")
    data = report_data(load_study(folder))
    assert data.devices == (
        f"Energy from 2 devices: {CPU} (6 trials), {GPU} (6 trials); variants, Pareto fronts, "
        "recommendations and technique comparisons are per device, the energy model has the "
        "device as a factor, and only the study totals add the devices up."
    )
    markdown = render_markdown(data)
    assert markdown.index(data.devices) < markdown.index("## Headline")
    html = render_html(data)
    assert html.index(data.devices) < html.index('id="headline"')
    assert f"<td>{GPU}</td>" in html  # the variants table has a device column


def _without_device(item: Any) -> dict[str, Any]:
    return {k: v for k, v in item.to_dict().items() if k != "device_id"}


def test_one_device_is_analysed_as_an_old_store_without_devices() -> None:
    old = grid_records()
    new = [on(CPU, r) for r in old]
    before, after = analyze(old), analyze(new)
    assert [_without_device(v) for v in after.variants] == [
        _without_device(v) for v in before.variants
    ]
    assert {v.device_id for v in after.variants} == {CPU}
    assert {v.device_id for v in before.variants} == {None}
    assert after.fronts == before.fronts
    assert device_banner(after) == device_banner(before) == ""
    assert [r.message for r in recommend(after.variants)] == [
        r.message for r in recommend(before.variants)
    ]
    cpu = [r for r in two_devices() if r.environment["device_id"] == CPU]  # small: tests are slow
    old_stats = study_statistics([t.to_dict() for t in analyze([on(None, r) for r in cpu]).trials])
    new_stats = study_statistics([t.to_dict() for t in analyze(cpu).trials])
    assert [c.to_dict() for c in new_stats.comparisons] == [
        c.to_dict() for c in old_stats.comparisons
    ]


def test_records_without_a_device_id_are_one_unknown_device() -> None:
    analysis = analyze(two_devices(cpu=None))
    assert analysis.devices == ((None, 6), (GPU, 6))
    assert len(analysis.variants) == 4
    assert {v.label.rsplit(" · ", 1)[1] for v in analysis.variants} == {"unknown device", GPU}
    assert device_banner(analysis).startswith(
        f"Energy from 2 devices: unknown device (6 trials), {GPU} (6 trials);"
    )
