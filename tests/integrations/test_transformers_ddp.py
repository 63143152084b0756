"""EnergyCallback for Hugging Face under ``torchrun``: two CPU processes (gloo), each measuring
its own process tree, log the whole job's figures through ``Trainer.log``, the same on every
rank, and print one table.

The training runs as a script (``_ddp_train.py``) under ``python -m torch.distributed.run`` in
a process group of its own, so that a hang (a collective called on one rank only) is killed
after ``TIMEOUT_S`` instead of blocking the suite. About 20 s on two busy cores: ``slow``. The
merge itself is tested fast in ``test_ranks.py``; the exchange at each window end is tested fast
here, with the Trainer's events called by hand and a stand-in for the second rank.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tests.integrations._ddp import run_ranks
from wattwise.energy.monitor import MonitorConfig
from wattwise.integrations._ranks import RankWindow
from wattwise.integrations.transformers import EnergyCallback

SCRIPT = Path(__file__).with_name("_ddp_train.py")
TIMEOUT_S = 240


def _run_torchrun(out: Path) -> str:
    """Run the two-rank training; returns what it printed. Kills the process group on a hang."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(SCRIPT), str(out)]
    return run_ranks(command, "torchrun training", TIMEOUT_S, {"OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_torchrun_ranks_log_the_whole_jobs_energy_once(tmp_path):
    printed = _run_torchrun(tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # torchrun starts both ranks as children of its launcher: neither is in the other's tree,
    # so the job's per-process energy is the sum of both ranks' own.
    own = [r["own"] for r in ranks]
    assert all(o["fit"]["energy_j"] > 0 for o in own)
    pids = {r["pid"] for r in ranks}
    assert not any(r["ppid"] in pids for r in ranks)

    def job(pick):
        return sum(pick(o) for o in own)

    logged = ranks[0]["logged"]
    train_j = [m["energy/train_epoch_j"] for m in logged if "energy/train_epoch_j" in m]
    assert train_j == pytest.approx(
        [job(lambda o, e=e: o["epochs"][e]["energy_j"]) for e in (0, 1)]
    )
    val_j = [m["energy/validation_j"] for m in logged if "energy/validation_j" in m]
    assert val_j == pytest.approx(
        [job(lambda o, e=e: o["validations"][e]["energy_j"]) for e in (0, 1)]
    )
    fit = next(m for m in logged if "energy/fit_j" in m)
    assert fit["energy/fit_j"] == pytest.approx(job(lambda o: o["fit"]["energy_j"]))
    assert fit["energy/fit_duration_s"] == pytest.approx(max(o["fit"]["duration_s"] for o in own))
    assert fit["energy/fit_peak_rss_bytes"] == job(lambda o: o["fit"]["peak_rss_bytes"])
    assert "energy/fit_peak_power_w" not in fit  # no sampler saw the job's total power
    assert fit["energy/processes"] == 2

    # The same on every rank: in log_history, in the metrics that the callbacks after this one
    # (EarlyStopping...) read, and on the callback, which holds the job's Measurements while
    # ``rank`` keeps this process's own.
    assert ranks[1]["logged"] == logged
    assert ranks[0]["evaluate_metrics"] == ranks[1]["evaluate_metrics"]
    assert [m["energy/validation_j"] for m in ranks[0]["evaluate_metrics"]] == val_j
    for r in ranks:
        assert r["callback"]["fit"]["energy_j"] == pytest.approx(fit["energy/fit_j"])
        assert [m["name"] for m in r["callback"]["epochs"]] == ["train/epoch1", "train/epoch2"]
        assert r["rank_record"]["fit"]["energy_j"] == pytest.approx(r["own"]["fit"]["energy_j"])

    # One table, printed by rank 0, with the job's figures.
    assert printed.count("energy per window") == 1
    assert "whole job: 2 processes" in printed


class _LoggingTrainer:
    """What the callback needs of a Trainer: ``log`` and the callback list."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []
        self.callback_handler = SimpleNamespace(callbacks=[])

    def add_callback(self, callback: Any) -> None:
        self.callback_handler.callbacks.append(callback)

    def log(self, logs: dict[str, Any]) -> None:
        self.logged.append(logs)


def test_every_window_end_exchanges_once_and_logs_the_jobs_figures(monkeypatch):
    gathers: list[str | None] = []

    def all_gather_object(out: list[Any], mine: RankWindow) -> None:
        # Rank 1: a sibling process on the same machine that measured twice as much.
        gathers.append(mine.measurement.name if mine.measurement is not None else None)
        twice = None
        if mine.measurement is not None:
            components = tuple(
                replace(c, energy_j=2 * c.energy_j) for c in mine.measurement.components
            )
            twice = replace(mine.measurement, components=components)
        out[:] = [mine, RankWindow(1, mine.host, mine.pid + 1, frozenset({mine.pid + 1}), twice)]

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    trainer = _LoggingTrainer()
    energy = EnergyCallback(config=MonitorConfig(meters=("cpu-estimate",)), print_table=False)
    energy.attach(trainer)
    args = SimpleNamespace(eval_on_start=False)
    control = SimpleNamespace(should_evaluate=False, should_log=False)

    def state(epoch: float) -> SimpleNamespace:
        return SimpleNamespace(epoch=epoch, is_world_process_zero=True)

    energy.on_evaluate(args, state(0), control, metrics={})  # outside train(): no exchange
    energy.on_train_begin(args, state(0), control)
    energy.on_epoch_begin(args, state(0), control)
    sum(i * i for i in range(200_000))
    control.should_evaluate = True
    energy.on_epoch_end(args, state(1), control)
    metrics: dict[str, float] = {}
    energy.on_evaluate(args, state(1), control, metrics=metrics)
    control.should_evaluate = False
    energy.on_train_end(args, state(1), control)

    assert gathers == ["train/epoch1", "validation/epoch1", "fit"]
    own = energy.rank
    assert own.epochs[0].total_energy_j > 0
    assert energy.epochs[0].total_energy_j == pytest.approx(3 * own.epochs[0].total_energy_j)
    assert energy.fit is not None
    assert energy.fit.total_energy_j == pytest.approx(3 * own.fit.total_energy_j)
    key = "energy/train_epoch_j"
    logged_j = [log[key] for log in trainer.logged if key in log]
    assert logged_j == [pytest.approx(energy.epochs[0].total_energy_j)]
    assert metrics["energy/validation_j"] == pytest.approx(energy.validations[0].total_energy_j)
    fit = trainer.logged[-1]
    assert fit["energy/fit_j"] == pytest.approx(energy.fit.total_energy_j)
    assert fit["energy/processes"] == 2 and "energy/fit_peak_power_w" not in fit
