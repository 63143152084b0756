"""EnergyCallback under Lightning's DDP: two CPU processes (gloo), each measuring its own
process tree, log the whole job's figures, the same on every rank, and print one table.

The fit runs as a script (``_ddp_fit.py``) in a subprocess of its own, so that Lightning's
``ddp`` launcher can start rank 1 by running it again, and so that a hang (a collective called
on one rank only) is killed after ``TIMEOUT_S`` instead of blocking the suite. About 20 s on
two busy cores: ``slow``. The merge itself is tested fast in ``test_ranks.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.integrations._ddp import run_ranks

pytest.importorskip("lightning.pytorch")

SCRIPT = Path(__file__).with_name("_ddp_fit.py")
TIMEOUT_S = 180


def _run_ddp_fit(out: Path) -> str:
    """Run the two-rank fit; returns what it printed. Kills the whole process group on a hang."""
    return run_ranks([sys.executable, str(SCRIPT), str(out)], "DDP fit", TIMEOUT_S)


@pytest.mark.slow
def test_ddp_ranks_log_the_whole_jobs_energy_once(tmp_path):
    printed = _run_ddp_fit(tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # Each rank measured its own process tree. Lightning's ``ddp`` launcher makes rank 1 a child
    # of rank 0, so rank 0's tree holds rank 1: the job counts every process once, i.e. the
    # figures of the ranks that no other rank started.
    own = [r["own"] for r in ranks]
    assert all(o["fit"]["energy_j"] > 0 for o in own)
    pids = {r["pid"] for r in ranks}
    outer = [r["own"] for r in ranks if r["ppid"] not in pids]
    assert len(outer) == 1  # rank 0, whose figures include rank 1's

    def job(pick):
        return sum(pick(o) for o in outer)

    # The logged figures are the job's (not rank 0's own), the same on every rank.
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
    assert ranks[0]["params"]["energy/processes"] == 2

    # The same on every rank (ModelCheckpoint / EarlyStopping decide alike everywhere), and on
    # the callback, which holds the job's Measurements.
    assert ranks[1]["logged"] == logged
    energy_keys = [k for k in ranks[0]["callback_metrics"] if k.startswith("energy/")]
    assert energy_keys
    for key in energy_keys:
        assert ranks[1]["callback_metrics"][key] == pytest.approx(ranks[0]["callback_metrics"][key])
    for r in ranks:
        assert r["callback"]["fit"]["energy_j"] == pytest.approx(fit["energy/fit_j"])
        assert [m["name"] for m in r["callback"]["epochs"]] == ["train/epoch1", "train/epoch2"]

    # One table, printed by rank 0, with the job's figures.
    assert printed.count("energy per window") == 1
    assert "2 processes" in printed
    assert "It is recommended to use `self.log('energy/" not in printed
