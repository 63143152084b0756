"""ResultsStore: round trip, WAL, resume semantics, atomicity under SIGKILL, concurrent writers,
exports. Needs no torch: specs are plain dicts."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wattwise.config import TrialSpec
from wattwise.errors import WattwiseError
from wattwise.experiment import (
    EXPORT_COLUMNS,
    SCHEMA_VERSION,
    ResultsStore,
    StoreError,
    TrialRecord,
)


def spec(i: int = 0, **changes: Any) -> dict[str, Any]:
    values = {
        "study": "demo",
        "dataset": "digits",
        "model": "small_cnn",
        "technique": "baseline",
        "batch_size": 32,
        "lr": 0.01,
        "epochs": 10,
        "seed": i,
        "gpu_memory_gb": None,
    }
    return values | changes


def ok_record(trial_id: str, **changes: Any) -> TrialRecord:
    values: dict[str, Any] = {
        "trial_id": trial_id,
        "accuracy": 0.9,
        "train_energy_j": 100.0,
        "train_energy_provenance": "measured",
        "duration_s": 3.0,
        "params": 1000,
        "history": [{"epoch": 1, "val_accuracy": 0.9}],
        "phases": {"train": {"name": "train", "total_energy_j": 100.0, "components": []}},
    }
    return TrialRecord(**(values | changes))


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with ResultsStore(tmp_path / "run" / "results.sqlite", study="demo") as s:
        yield s


def test_round_trip(store: ResultsStore) -> None:
    assert store.begin_trial("t1", spec()) == 1
    assert store.status("t1") == "running"
    running = store.get("t1")
    assert running is not None and running.spec == spec() and running.started_unix_s
    stored = store.finish_trial(ok_record("t1"))
    got = store.get("t1")
    assert got == stored
    assert (got.status, got.study, got.attempts, got.accuracy) == ("ok", "demo", 1, 0.9)
    assert got.spec == spec()  # kept from begin_trial: the record gave none
    assert got.finished_unix_s is not None and got.history == ({"epoch": 1, "val_accuracy": 0.9},)
    assert store.get("missing") is None and store.status("missing") is None
    assert len(store) == 1 and store.counts() == {"ok": 1, "failed": 0, "running": 0}


def test_trial_spec_objects(store: ResultsStore) -> None:
    trial = TrialSpec(
        **{k: v for k, v in spec().items()},
        optimizer="sgd",
        precision="fp32",
        image_size=None,
        width=1.0,
        weights=None,
        val_fraction=0.1,
        train={"momentum": 0.9},
        measurement={"sample_hz": 10.0},
    )
    assert store.pending([trial]) == [trial]
    store.begin_trial(trial.trial_id, trial)
    store.finish_trial(ok_record(trial.trial_id))
    assert store.get(trial.trial_id).spec == trial.to_dict()  # type: ignore[union-attr]
    assert store.pending([trial]) == []


def test_wal_and_synchronous_full(store: ResultsStore) -> None:
    other = sqlite3.connect(store.path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.integrity_check() == "ok"


def test_meta_and_one_study_per_store(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    with ResultsStore(path, study="a", config_yaml="name: a\n") as store:
        meta = store.meta()
        assert meta["schema_version"] == str(SCHEMA_VERSION) and "created_unix_s" in meta
        assert (store.study, store.config_yaml) == ("a", "name: a\n")
    with ResultsStore(path, study="a", config_yaml="name: a\nseeds: [0, 1]\n") as store:
        assert store.config_yaml == "name: a\nseeds: [0, 1]\n"
    with pytest.raises(StoreError, match="holds study 'a', not 'b'; use another output folder"):
        ResultsStore(path, study="b")


def test_resume_skips_finished_trials_and_retries_unfinished_ones(store: ResultsStore) -> None:
    ids = ["ok", "failed", "running", "new"]
    for trial_id in ids[:3]:
        store.begin_trial(trial_id, spec())
    store.finish_trial(ok_record("ok"))
    store.fail_trial("failed", "diverged: loss is NaN")
    assert store.pending(ids) == ["running", "new"]
    assert store.pending(ids, retry_failed=True) == ["failed", "running", "new"]
    assert store.pending(reversed(ids)) == ["new", "running"]  # the caller's order
    # a retried trial counts its attempts
    assert store.begin_trial("running", spec()) == 2
    assert store.begin_trial("failed", spec()) == 2
    assert store.get("failed").reason is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="already finished ok; pass rerun=True"):
        store.begin_trial("ok", spec())
    assert store.begin_trial("ok", spec(), rerun=True) == 2
    assert store.finish_trial(ok_record("ok", accuracy=0.5)).attempts == 2


def test_failed_trial_with_reason(store: ResultsStore) -> None:
    store.begin_trial("t", spec())
    record = store.fail_trial("t", "CUDA out of memory.\nTried to allocate 2.00 GiB")
    assert record == store.get("t")
    assert (record.status, record.reason) == (
        "failed",
        "CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    assert record.spec == spec() and record.finished_unix_s is not None
    assert [r.trial_id for r in store.records("failed")] == ["t"]
    # a failure that kept partial measurements goes through finish_trial
    store.begin_trial("u", spec(1))
    partial = ok_record("u", status="failed", reason="diverged at epoch 3", accuracy=None)
    assert store.finish_trial(partial).history == partial.history
    # a trial that never began needs its spec
    with pytest.raises(KeyError, match="pass its spec"):
        store.fail_trial("never", "boom")
    assert store.fail_trial("never", "boom", spec=spec(2)).attempts == 1
    with pytest.raises(ValueError, match="running"):
        store.finish_trial(TrialRecord.running("t", spec()))


def test_records_filters(store: ResultsStore) -> None:
    points = [
        ("a", spec(0)),
        ("b", spec(0, model="resnet18")),
        ("c", spec(0, technique="quantize:int8", gpu_memory_gb=8.0)),
        ("d", spec(1, dataset="cifar10", model="resnet18")),
    ]
    for trial_id, s in points:
        store.begin_trial(trial_id, s)
        store.finish_trial(ok_record(trial_id))
    store.begin_trial("e", spec(2))

    def ids(status: str | None = None, **filters: Any) -> list[str]:
        return [r.trial_id for r in store.records(status, **filters)]

    assert ids() == ["a", "b", "c", "d", "e"]
    assert ids("ok") == ["a", "b", "c", "d"] and ids("running") == ["e"]
    assert ids(model="resnet18") == ["b", "d"]
    assert ids("ok", dataset="digits", model=["small_cnn", "resnet18"]) == ["a", "b", "c"]
    assert ids(technique="quantize:int8") == ["c"]
    assert ids(gpu_memory_gb=8) == ["c"] and ids(gpu_memory_gb=None) == ["a", "b", "d", "e"]
    assert ids(gpu_memory_gb=[None, 8.0], seed=0) == ["a", "b", "c"]
    assert ids(study="other") == []
    with pytest.raises(ValueError, match="unknown filter 'colour'; filters: study, dataset"):
        store.records(colour="red")


def test_export_csv(store: ResultsStore, tmp_path: Path) -> None:
    store.begin_trial("a", spec())
    store.finish_trial(ok_record("a"))
    store.begin_trial("b", spec(1))
    store.fail_trial("b", "boom, with a comma")
    path = tmp_path / "out" / "results.csv"
    assert store.export_csv(path) == 2
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert list(EXPORT_COLUMNS)[:6] == [
        "trial_id",
        "study",
        "status",
        "reason",
        "attempts",
        "dataset",
    ]
    for column in ("accuracy", "train_energy_j", "train_energy_provenance", "lr", "macs"):
        assert column in EXPORT_COLUMNS
    assert rows[0]["trial_id"] == "a" and float(rows[0]["accuracy"]) == 0.9
    assert rows[0]["train_energy_provenance"] == "measured" and rows[0]["gpu_memory_gb"] == ""
    assert (rows[1]["status"], rows[1]["reason"]) == ("failed", "boom, with a comma")
    assert store.export_csv(tmp_path / "ok.csv", "ok", model="small_cnn") == 1


def test_dataframe_and_parquet_need_their_packages(store: ResultsStore, tmp_path: Path) -> None:
    store.begin_trial("a", spec())
    store.finish_trial(ok_record("a"))
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(WattwiseError, match="pip install pandas"):
            store.to_dataframe()
    else:
        frame = store.to_dataframe()
        assert list(frame.columns) == list(EXPORT_COLUMNS) and len(frame) == 1
    try:
        import pyarrow.parquet as pq
    except ImportError:
        with pytest.raises(WattwiseError, match="pip install pyarrow"):
            store.export_parquet(tmp_path / "r.parquet")
    else:
        assert store.export_parquet(tmp_path / "r.parquet") == 1
        assert pq.read_table(tmp_path / "r.parquet").column_names == list(EXPORT_COLUMNS)


def test_a_failed_transaction_writes_nothing(store: ResultsStore) -> None:
    store.begin_trial("a", spec())
    with pytest.raises(RuntimeError), store._write() as conn:
        conn.execute("UPDATE trials SET status = 'ok' WHERE trial_id = 'a'")
        conn.execute("DELETE FROM meta")
        raise RuntimeError("killed half-way")
    assert store.status("a") == "running" and store.study == "demo"


def test_files_that_are_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="is not a usable wattwise results store"):
        ResultsStore(junk)
    newer = tmp_path / "newer.sqlite"
    ResultsStore(newer).close()
    conn = sqlite3.connect(newer)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match=r"newer wattwise \(store schema 99"):
        ResultsStore(newer)


def test_threads_share_a_store(store: ResultsStore) -> None:
    def work(k: int) -> None:
        for i in range(10):
            trial_id = f"{k}-{i}"
            store.begin_trial(trial_id, spec(i))
            store.finish_trial(ok_record(trial_id))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts()["ok"] == 40


# --- several processes ------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from wattwise.experiment import ResultsStore, TrialRecord

    path, prefix, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = ResultsStore(path, study="demo")
    if go != "-":  # start together: say "ready", wait for "go"
        open(f"{go}.{prefix}", "w").close()
        while not os.path.exists(go):
            time.sleep(0.002)
    big = {"blob": "x" * 50_000}  # a larger record makes a kill mid-write more likely
    for trial_id in store.pending([f"{prefix}{i:05d}" for i in range(count)]):
        store.begin_trial(trial_id, {"study": "demo", "dataset": "digits"})
        store.finish_trial(TrialRecord(trial_id, accuracy=0.5, details=big))
        print(trial_id, flush=True)
    """
)


def writer(
    tmp_path: Path, db: Path, prefix: str, count: int, go: str = "-"
) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(db), prefix, str(count), go],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_loop_then_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    db = tmp_path / "killed.sqlite"
    committed: list[str] = []
    for kills, delay_s in enumerate((0.0, 0.007, 0.013), 1):  # at different points of a cycle
        proc = writer(tmp_path, db, "k", 60)
        assert proc.stdout is not None
        committed += [proc.stdout.readline().strip() for _ in range(4)]
        time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        committed += proc.stdout.read().split()  # printed before the kill landed
        with ResultsStore(db) as store:
            assert store.integrity_check() == "ok"
            status = dict(store._query("SELECT trial_id, status FROM trials"))
            assert all(status[t] == "ok" for t in committed)
            assert list(status.values()).count("running") <= 1  # the trial it was killed in
            # each kill may leave one trial running, or one committed but not yet printed
            assert len(status) - len(committed) <= kills
            assert all(r.details["blob"] == "x" * 50_000 for r in store.records("ok"))
    # resume: the rest runs, an interrupted trial runs again, a finished one never
    proc = writer(tmp_path, db, "k", 60)
    rest = proc.communicate(timeout=120)[0].split()
    assert proc.returncode == 0
    printed = committed + rest
    assert len(printed) == len(set(printed)) >= 60 - 3  # nothing finished ran twice
    with ResultsStore(db) as store:
        assert store.integrity_check() == "ok"
        assert store.counts() == {"ok": 60, "failed": 0, "running": 0}
        rows = store._query("SELECT trial_id, COUNT(*) FROM trials GROUP BY trial_id")
        assert len(rows) == 60 and {n for _, n in rows} == {1}
        assert {r.attempts for r in store.records()} <= {1, 2}


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"  # both create the schema: neither finds it there
    go = tmp_path / "go"
    procs = [writer(tmp_path, db, prefix, 40, str(go)) for prefix in ("a", "b")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{p}").exists() for p in "ab") and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both write at once: one waits on SQLite's lock while the other commits
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [len(o) for o in outputs] == [40, 40]
    with ResultsStore(db) as store:
        assert store.integrity_check() == "ok"
        assert store.counts() == {"ok": 80, "failed": 0, "running": 0}
        assert {r.attempts for r in store.records()} == {1}
        assert store.config_yaml is None and store.study == "demo"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(store: ResultsStore) -> None:
    store.begin_trial("t", spec())
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's SQLite connection
        code = 1
        try:
            store.finish_trial(ok_record("t"))
            code = 0
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert store.status("t") == "ok" and store.integrity_check() == "ok"


def test_importing_the_store_and_config_is_torch_free() -> None:
    code = "import sys, wattwise.config, wattwise.experiment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
