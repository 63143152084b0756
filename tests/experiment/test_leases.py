"""Claims on running trials: sweeps that share a store (PostgreSQL from several machines) never
run a trial twice, a killed sweep's trials are taken over when its claim lapses (at once on its
own host), and a record that lost the race is dropped, not stored over the winner's."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.experiment.test_store import ok_record, spec
from wattwise.experiment.leases import Leases, lease_owner, live
from wattwise.experiment.store import Store, TrialAlreadyDone, open_store

HOST = socket.gethostname()


def dead_pid() -> int:
    """A pid that no process has (a finished child's)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_claim_keeps_other_sweeps_off_until_it_finishes(store: Store) -> None:
    a, b = "elsewhere/1/a", "elsewhere/2/b"  # other hosts: only expiry or release ends them
    assert store.claim_trial("t1", spec(1), owner=a) == 1
    assert store.claim_trial("t1", spec(1), owner=b) is None  # a holds it
    assert store.status("t1") == "running"
    assert store.pending(["t1", "t2"], owner=b) == ["t2"]
    assert store.pending(["t1", "t2"], owner=a) == ["t1", "t2"]  # its own claim
    assert store.held_elsewhere(b) == {"t1"}
    store.finish_trial(ok_record("t1", spec=spec(1)))
    assert store.held_elsewhere(b) == set()
    assert store.claim_trial("t1", spec(1), owner=b) is None  # done
    assert store.claim_trial("t1", spec(1), owner=b, rerun=True) == 2  # asked to redo it


def test_an_expired_claim_is_taken_over_and_the_late_record_is_dropped(store: Store) -> None:
    a, b = "elsewhere/1/a", "elsewhere/2/b"
    assert store.claim_trial("t1", spec(1), owner=a, lease_s=0.05) == 1
    time.sleep(0.1)  # a's sweep stopped renewing: killed, or its machine lost
    assert store.pending(["t1"], owner=b) == ["t1"]
    assert store.claim_trial("t1", spec(1), owner=b) == 2
    store.finish_trial(ok_record("t1", spec=spec(1), accuracy=0.5))
    with pytest.raises(TrialAlreadyDone, match="already finished ok"):
        store.finish_trial(ok_record("t1", spec=spec(1), accuracy=0.9))  # a comes back late
    assert store.get("t1").accuracy == 0.5  # type: ignore[union-attr]


def test_renewed_claims_hold_and_released_ones_do_not(store: Store) -> None:
    a, b = "elsewhere/1/a", "elsewhere/2/b"
    store.claim_trial("t1", spec(1), owner=a, lease_s=0.05)
    store.claim_trial("t2", spec(2), owner=a, lease_s=0.05)
    store.renew_leases(a, ["t1"], lease_s=60)
    store.renew_leases(b, ["t2"], lease_s=60)  # not b's: changes nothing
    time.sleep(0.1)
    assert store.held_elsewhere(b) == {"t1"}
    store.release_leases(a)  # a's sweep ended (Ctrl-C): its running trials are free at once
    assert store.claim_trial("t1", spec(1), owner=b) == 2


def test_on_this_host_a_claim_of_a_process_that_is_gone_is_not_live() -> None:
    later = time.time() + 60
    assert lease_owner().startswith(f"{HOST}/{os.getpid()}/") and lease_owner() != lease_owner()
    assert live(f"{HOST}/{os.getppid()}/x", later, "me", time.time())  # alive: holds
    assert not live(f"{HOST}/{dead_pid()}/x", later, "me", time.time())  # killed: resumable
    assert not live(f"{HOST}/{os.getpid()}/old", later, "me", time.time())  # this process's
    assert live(f"elsewhere/{os.getpid()}/x", later, "me", time.time())  # another host's pid
    assert not live("me", later, "me", time.time())  # one's own
    assert not live("elsewhere/1/x", time.time() - 1, "me", time.time())  # expired


def test_the_leases_thread_renews_until_the_sweep_ends(store: Store) -> None:
    leases = Leases(store, "elsewhere/9/t", lease_s=0.2)  # this process's own would not hold
    with leases:
        assert store.claim_trial("t1", spec(1), owner=leases.owner, lease_s=0.2) == 1
        leases.hold("t1")
        time.sleep(0.5)  # outlives the first lease: renewed every 0.05 s
        assert store.held_elsewhere("elsewhere/2/b") == {"t1"}
    assert store.held_elsewhere("elsewhere/2/b") == set()  # released at the end


def test_a_store_of_before_gains_the_leases_table(tmp_path: Path) -> None:
    """A store written before claims existed: opened for writing it gains ``leases``."""
    import sqlite3

    path = tmp_path / "results.sqlite"
    with open_store(path, study="demo") as s:
        s.begin_trial("t1", spec(1))
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE leases")
    conn.commit()
    conn.close()
    with open_store(path, read_only=True) as s:
        assert s.pending(["t1"]) == ["t1"]  # a reader needs no leases
    with open_store(path, study="demo") as s:
        assert s.claim_trial("t1", spec(1), owner="elsewhere/1/a") == 2


# --- sweeps -----------------------------------------------------------------------------------
def tiny_study(tmp_path: Path, **changes: Any) -> Any:
    from wattwise.config import StudyConfig

    values: dict[str, Any] = {
        "name": "shared",
        "output_dir": str(tmp_path),
        "width": 0.25,
        "batch_sizes": [64],
        "learning_rates": [0.05, 0.1],
        "epochs": [1],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0},
    }
    return StudyConfig(**(values | changes))


def test_a_sweep_leaves_a_trial_another_sweep_holds_and_runs_it_once_free(tmp_path: Path) -> None:
    from wattwise.experiment.spec import expand_grid
    from wattwise.experiment.sweep import run_study

    config = tiny_study(tmp_path)
    held, free = expand_grid(config)
    path = tmp_path / "shared" / "results.sqlite"
    with open_store(path, study="shared") as other:  # another machine's sweep runs `held`
        assert other.claim_trial(held.trial_id, held, owner="elsewhere/1/a") == 1
    summary = run_study(config)
    assert (summary.ran, summary.elsewhere, summary.ok, summary.running) == (1, 1, 1, 1)
    with open_store(path, read_only=True) as s:
        assert s.status(free.trial_id) == "ok" and s.status(held.trial_id) == "running"
        assert s.get(held.trial_id).attempts == 1  # type: ignore[union-attr]  # untouched
    with open_store(path, study="shared") as other:
        other.release_leases("elsewhere/1/a")  # that sweep was stopped with Ctrl-C
    again = run_study(config)
    assert (again.ran, again.elsewhere, again.ok) == (1, 0, 2)


@pytest.mark.slow
def test_two_sweep_processes_on_one_postgresql_study_run_each_trial_once(
    tmp_path: Path, postgres_server: Any
) -> None:
    """Two `wattwise sweep` processes, two folders, one database: every trial is stored once,
    by whichever sweep claimed it, and none is run twice."""
    url = postgres_server.database()
    grid = """
        name: shared
        store: {url}
        width: 0.25
        batch_sizes: [32, 64]
        learning_rates: [0.05, 0.1]
        epochs: [1]
        train: {{hflip: false, augment: false, num_threads: 1}}
        measurement: {{inference_s: 0}}
    """
    sweeps = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "study.yaml").write_text(textwrap.dedent(grid.format(url=url)))
        command = [sys.executable, "-m", "wattwise", "sweep", str(folder / "study.yaml")]
        sweeps.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [p.communicate(timeout=300)[0].decode() for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], outputs
    with open_store(url, read_only=True) as s:
        records = s.records()
    assert len(records) == 4 and {r.status for r in records} == {"ok"}
    assert [r.attempts for r in records] == [1, 1, 1, 1]  # nobody ran a trial twice
    ran = [int(re.search(r"run now\D+(\d+)", out).group(1)) for out in outputs]  # type: ignore[union-attr]
    assert sum(ran) == 4, outputs  # each trial counted by the sweep that ran it
