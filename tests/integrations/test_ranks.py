"""The job's Measurement of a window from its ranks' (DDP): per-process energy adds up with each
process counted once, a machine's device-wide energy counts once, time is the longest rank's,
and a rank's own device-wide energy is marked shared with the ranks beside it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wattwise.energy.base import ComponentEnergy, Measurement, Provenance
from wattwise.integrations._ranks import (
    RankWindow,
    job_measurement,
    mark_ranks_shared,
    own_record,
    ranks_beside,
)
from wattwise.integrations._windows import WindowRecord, window_metrics

CPU = Provenance.estimated("tdp", "4 W per busy CPU", scope="process")
GPU = Provenance.measured("nvml", scope="device")


def _m(cpu_j: float, gpu_j: float | None, duration_s: float = 1.0, rss: int = 100) -> Measurement:
    return Measurement(
        name="train/epoch1",
        start_unix_s=1000.0 + duration_s,
        duration_s=duration_s,
        components=(
            ComponentEnergy("cpu", cpu_j, CPU, peak_power_w=9.0),
            ComponentEnergy("gpu:0", gpu_j, GPU, peak_power_w=90.0),
        ),
        peak_power_w=99.0,
        peak_rss_bytes=rss,
        peak_cuda_allocated_bytes=rss * 10,
    )


def _rank(rank: int, host: str, m: Measurement | None, tree: set[int] = frozenset()) -> RankWindow:
    return RankWindow(
        rank, host, pid=100 + rank, tree_pids=frozenset({100 + rank, *tree}), measurement=m
    )


def test_siblings_add_up_and_each_machines_device_counts_once():
    job = job_measurement(
        [
            _rank(0, "a", _m(2.0, 50.0, duration_s=1.0, rss=100)),
            _rank(1, "a", _m(3.0, 60.0, duration_s=2.0, rss=200)),  # the same GPU, wider window
            _rank(2, "b", _m(4.0, 70.0, duration_s=1.5, rss=300)),
        ]
    )
    assert job is not None and job.name == "train/epoch1"
    assert job.component("cpu").energy_j == pytest.approx(9.0)  # 2 + 3 + 4
    assert job.component("gpu:0").energy_j == pytest.approx(60.0 + 70.0)  # a's highest, b's
    assert job.total_energy_j == pytest.approx(139.0)
    assert job.duration_s == 2.0 and job.start_unix_s == 1001.0
    assert job.avg_power_w == pytest.approx(139.0 / 2.0)
    assert job.peak_rss_bytes == 600 and job.peak_cuda_allocated_bytes == 3000
    assert job.peak_power_w is None and job.component("cpu").peak_power_w is None
    metrics = window_metrics("train_epoch", job)
    assert metrics["energy/train_epoch_j"] == pytest.approx(139.0)
    assert "energy/train_epoch_peak_power_w" not in metrics  # no sampler saw the job's power


def test_a_rank_inside_another_ranks_tree_is_counted_by_that_rank():
    # Lightning's ``ddp`` launcher: rank 1 is a child of rank 0, whose tree measures it too.
    job = job_measurement(
        [_rank(0, "a", _m(5.0, 50.0, rss=300), tree={101}), _rank(1, "a", _m(2.0, 50.0))]
    )
    assert job is not None
    assert job.component("cpu").energy_j == pytest.approx(5.0)
    assert job.peak_rss_bytes == 300


def test_one_rank_is_its_own_job_and_no_window_is_none():
    m = _m(1.0, 2.0)
    assert job_measurement([_rank(0, "a", m)]) is m
    assert job_measurement([_rank(0, "a", None), _rank(1, "a", None)]) is None


def test_an_unreadable_device_is_unavailable_for_the_job():
    job = job_measurement([_rank(0, "a", _m(1.0, None)), _rank(1, "b", _m(1.0, 5.0))])
    assert job is not None and job.component("gpu:0").energy_j is None
    assert job.total_energy_j == pytest.approx(2.0)


def test_different_windows_are_refused():
    other = replace(_m(1.0, 1.0), name="fit")
    with pytest.raises(ValueError, match="different windows"):
        job_measurement([_rank(0, "a", _m(1.0, 1.0)), _rank(1, "a", other)])


def test_a_ranks_device_wide_energy_is_shared_with_the_ranks_beside_it():
    marked = mark_ranks_shared(_m(1.0, 2.0), ranks_here=2)
    assert "2 processes of this distributed job" in marked.component("gpu:0").provenance.shared
    assert marked.component("cpu").provenance.shared == ""  # its own process tree
    alone = _m(1.0, 2.0)
    assert mark_ranks_shared(alone, ranks_here=1) is alone


def test_the_ranks_on_a_machine_are_counted_from_what_they_sent():
    ranks = [_rank(0, "a", None), _rank(1, "a", _m(1.0, 1.0)), _rank(2, "b", None)]
    assert ranks_beside(ranks, 0) == 2
    assert ranks_beside(ranks, 2) == 1


def test_a_ranks_own_record_marks_its_device_wide_energy_shared():
    windows = WindowRecord()
    windows.epochs = [_m(1.0, 2.0)]
    windows.fit = replace(_m(3.0, 4.0), name="fit")
    own = own_record(windows, ranks_here=2)
    assert [m.name for m in own.epochs] == ["train/epoch1"] and own.validations == []
    assert own.fit is not None and own.fit.total_energy_j == pytest.approx(7.0)
    assert "distributed job" in own.fit.component("gpu:0").provenance.shared
    assert "distributed job" in own.epochs[0].component("gpu:0").provenance.shared
    assert own_record(WindowRecord(), ranks_here=2).fit is None
