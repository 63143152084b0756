"""ResultsStore: round trip, WAL, resume semantics, atomicity under SIGKILL, concurrent writers,
exports, read-only opens that write nothing, and stores of the previous layout (schema 1).
Needs no torch: specs are plain dicts.

The store's contract (the tests taking ``store`` or ``location``) runs against both backends:
SQLite and PostgreSQL (:mod:`tests.experiment.postgres_server`, skipped where no server can
start); the tests marked ``only_sqlite`` are about SQLite's file."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from wattwise.experiment import (
    EXPORT_COLUMNS,
    SCHEMA_VERSION,
    STORE_FILE,
    ResultsStore,
    StoreError,
    TrialRecord,
)
from wattwise.experiment.spec import TrialSpec
from wattwise.experiment.store import Store, open_store

#: A store written by the previous wattwise (schema 1), as ``sqlite3`` ``iterdump()`` text: two ok
#: trials (baseline; quantize:int8 with its variants) and a failed one, study "legacy".
SCHEMA_1_DUMP = Path(__file__).parents[1] / "analysis" / "data" / "results_v1.sql"


def schema_1_store(path: Path) -> Path:
    """The previous version's store at ``path``, in WAL mode as that version left it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1_DUMP.read_text(encoding="utf-8"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return path


def untouched(path: Path) -> tuple[bytes, int, list[str]]:
    """What a reader must leave as it was: the file's bytes and mtime, and the folder listing."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


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
        "gpu_memory_gib": None,
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


#: A test about SQLite's file: the ``store`` and ``location`` fixtures (tests/experiment/
#: conftest.py) give SQLite only.
only_sqlite = pytest.mark.parametrize("location", ["sqlite"], indirect=True)


def stored_columns(store: Store) -> set[str]:
    """The columns the store's ``trials`` table has."""
    return set(store._table_columns())


def sound(store: Store) -> bool:
    """SQLite's integrity check passes (PostgreSQL keeps no file of ours to check)."""
    return not isinstance(store, ResultsStore) or store.integrity_check() == "ok"


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
    trial = TrialSpec.from_dict(
        {
            **spec(),
            "optimizer": "sgd",
            "precision": "fp32",
            "image_size": None,
            "width": 1.0,
            "weights": None,
            "val_fraction": 0.1,
            "train": {"momentum": 0.9},
            "measurement": {"sample_hz": 10.0},
        }
    )
    assert store.pending([trial]) == [trial]
    store.begin_trial(trial.trial_id, trial)
    store.finish_trial(ok_record(trial.trial_id))
    assert store.get(trial.trial_id).spec == trial.to_dict()  # type: ignore[union-attr]
    assert store.pending([trial]) == []


@only_sqlite
def test_wal_and_synchronous_full(store: ResultsStore) -> None:
    other = sqlite3.connect(store.path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.integrity_check() == "ok"


def test_meta_and_one_study_per_store(location: str | Path) -> None:
    with open_store(location, study="a", config_yaml="name: a\n") as store:
        meta = store.meta()
        assert meta["schema_version"] == str(SCHEMA_VERSION) and "created_unix_s" in meta
        assert (store.study, store.config_yaml) == ("a", "name: a\n")
    with open_store(location, study="a", config_yaml="name: a\nseeds: [0, 1]\n") as store:
        assert store.config_yaml == "name: a\nseeds: [0, 1]\n"
    where = "output folder" if isinstance(location, Path) else "database"
    with pytest.raises(StoreError, match=f"holds study 'a', not 'b'; use another {where}"):
        open_store(location, study="b")


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


def test_a_finished_ok_record_is_never_replaced_by_a_later_finish(store: ResultsStore) -> None:
    """Two runs of one trial (two sweeps that both began it): the first ``ok`` stays."""
    store.begin_trial("t", spec())
    store.begin_trial("t", spec(), rerun=True)  # a second run starts before the first ends
    first = store.finish_trial(ok_record("t", accuracy=0.9))
    with pytest.raises(StoreError, match="already finished ok") as err:
        store.finish_trial(ok_record("t", accuracy=0.1))
    assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="already finished ok"):
        store.finish_trial(ok_record("t", status="failed", reason="boom", accuracy=None))
    assert store.get("t") == first
    # a run begun after the ok record (rerun=True, --no-resume) may replace it
    store.begin_trial("t", spec(), rerun=True)
    assert store.finish_trial(ok_record("t", accuracy=0.5)).accuracy == 0.5


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
        ("c", spec(0, technique="quantize:int8", gpu_memory_gib=8.0)),
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
    assert ids(gpu_memory_gib=8) == ["c"] and ids(gpu_memory_gib=None) == ["a", "b", "d", "e"]
    assert ids(gpu_memory_gib=[None, 8.0], seed=0) == ["a", "b", "c"]
    assert ids(study="other") == []
    with pytest.raises(ValueError, match="unknown filter 'colour'; filters: study, dataset"):
        store.records(colour="red")


def test_export_csv(store: ResultsStore, tmp_path: Path) -> None:
    store.begin_trial("a", spec())
    store.finish_trial(ok_record("a", environment={"device_id": "cpu:EPYC@vm"}))
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
    for column in ("accuracy", "train_energy_j", "train_energy_provenance", "lr", "macs",
                   "images_per_s", "accuracy_per_kj_train",
                   "accuracy_per_j_per_image"):  # fmt: skip
        assert column in EXPORT_COLUMNS
    assert "throughput_images_per_s" not in EXPORT_COLUMNS  # one name per quantity
    assert rows[0]["trial_id"] == "a" and float(rows[0]["accuracy"]) == 0.9
    assert rows[0]["params"] == "1000" and rows[0]["accuracy_per_kj_train"] == "9.0"
    assert rows[0]["train_energy_provenance"] == "measured" and rows[0]["gpu_memory_gib"] == ""
    assert (rows[1]["status"], rows[1]["reason"]) == ("failed", "boom, with a comma")
    assert rows[0]["device_id"] == "cpu:EPYC@vm" and rows[1]["device_id"] == ""
    assert store.export_csv(tmp_path / "ok.csv", "ok", model="small_cnn") == 1


def test_dataframe_and_parquet(store: ResultsStore, tmp_path: Path) -> None:
    store.begin_trial("a", spec())
    store.finish_trial(ok_record("a", inference_energy_per_image_j=0.003, images_per_s=500.0))
    store.fail_trial("b", "boom", spec=spec(1))
    frame = store.to_dataframe()
    assert list(frame.columns) == list(EXPORT_COLUMNS) and len(frame) == 2
    # ratios are computed from the stored primitives, with the record's own properties
    assert frame["accuracy_per_kj_train"][0] == pytest.approx(0.9 / 0.1)
    record = store.get("a")
    assert record is not None
    assert frame["accuracy_per_j_per_image"][0] == pytest.approx(record.accuracy_per_j_per_image)
    assert frame["images_per_s"][0] == 500.0 and pd.isna(frame["accuracy_per_kj_train"][1])
    assert str(frame["params"].dtype) == "Int64" and pd.isna(frame["params"][1])
    assert "accuracy_per_kj_train" not in stored_columns(store)  # not stored twice
    assert {"params", "record_json"} <= stored_columns(store)
    assert store.export_parquet(tmp_path / "r.parquet") == 2
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == list(EXPORT_COLUMNS)
    assert str(table.schema.field("params").type) == "int64"
    assert table.column("accuracy_per_kj_train").to_pylist()[0] == pytest.approx(9.0)


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


# --- reading only ------------------------------------------------------------------------------


@only_sqlite
def test_a_read_only_open_writes_nothing(store: ResultsStore) -> None:
    store.begin_trial("a", spec())
    stored = store.finish_trial(ok_record("a"))
    store.close()  # the last writer closes: SQLite folds the WAL into the file and removes it
    before = untouched(store.path)
    with ResultsStore(store.path, read_only=True) as reader:
        assert reader.read_only and reader.study == "demo" and len(reader) == 1
        assert reader.get("a") == stored and reader.integrity_check() == "ok"
        assert len(reader.to_dataframe()) == 1
        for write in (
            lambda: reader.begin_trial("b", spec()),
            lambda: reader.finish_trial(ok_record("a")),
            lambda: reader.fail_trial("a", "no"),
        ):
            with pytest.raises(StoreError, match="is open read-only"):
                write()
    assert untouched(store.path) == before  # no -wal/-shm created, not a byte changed
    with pytest.raises(ValueError, match="read-only store takes no study"):
        ResultsStore(store.path, read_only=True, study="demo")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
@only_sqlite
def test_a_read_only_open_works_in_a_read_only_folder(store: ResultsStore) -> None:
    store.begin_trial("a", spec())
    store.close()
    folder = store.path.parent
    folder.chmod(0o555)
    try:
        with ResultsStore(store.path, read_only=True) as reader:
            assert reader.status("a") == "running"
    finally:
        folder.chmod(0o755)


def test_a_reader_sees_what_an_open_writer_committed(store: Store, location: Any) -> None:
    store.begin_trial("a", spec())  # the writer stays open (SQLite: its WAL holds the commit)
    assert not isinstance(store, ResultsStore) or Path(f"{store.path}-wal").exists()
    with open_store(location, read_only=True) as reader:
        assert reader.status("a") == "running"
        store.finish_trial(ok_record("a"))
        assert reader.status("a") == "ok"


def test_a_reader_of_an_immutable_snapshot_follows_a_later_writer(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    with ResultsStore(path, study="demo") as writer:
        writer.begin_trial("a", spec())
    with ResultsStore(path, read_only=True) as reader:
        assert reader.counts()["running"] == 1
        with ResultsStore(path) as writer:  # opens, commits and closes: the file changes
            writer.finish_trial(ok_record("a"))
        assert reader.counts() == {"ok": 1, "failed": 0, "running": 0}


def test_a_read_only_open_refuses_what_is_not_a_store_in_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("trial_id,accuracy\na,0.9\n")
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    cases = [
        (text, "is not a wattwise results store (not a SQLite file)"),
        (other, "is not a wattwise results store (no trials table)"),
        (tmp_path / "missing.sqlite", "no such results store"),
    ]
    for path, message in cases:
        before = untouched(path) if path.exists() else None
        with pytest.raises(StoreError, match=re.escape(message)) as err:
            ResultsStore(path, read_only=True)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
        assert (untouched(path) if path.exists() else None) == before
    assert not (tmp_path / "missing.sqlite").exists()


def cap_quant_trial(path: Path, gib: float) -> None:
    """Gives the quantize:int8 trial of a schema-1 store a GPU memory cap, as that version
    wrote one: the ``gpu_memory_gb`` column, spec key and memory-cap key (the dump has none)."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE trials SET gpu_memory_gb = ?, "
            "spec_json = replace(spec_json, '\"gpu_memory_gb\":null', ?), "
            "record_json = replace(record_json, '\"gpu_memory_gb\":null', ?) "
            "WHERE trial_id = 'quant-0'",
            (gib, *[f'"gpu_memory_gb":{gib}'] * 2),
        )
    conn.close()


def test_a_schema_1_store_opens_read_only_and_reads(tmp_path: Path) -> None:
    path = schema_1_store(tmp_path / "study" / STORE_FILE)
    cap_quant_trial(path, 8.0)
    before = untouched(path)
    with ResultsStore(path, read_only=True) as reader:
        assert reader.meta()["schema_version"] == "1" and reader.study == "legacy"
        assert reader.counts() == {"ok": 2, "failed": 1, "running": 0}
        base, quant = reader.records("ok")
        assert base.images_per_s == 5000.0 and quant.images_per_s == 9000.0
        assert [v.step for v in quant.variants] == ["baseline", "quantize:int8"]
        assert quant.variants[1].applied == "quantize"
        assert quant.variants[1].inference_energy_per_image_j == 0.0008
        assert quant.variants[1].model_bytes == 21000
        assert quant.memory_cap is not None and quant.memory_cap.enforced is False
        assert "variants" not in quant.details and "memory_cap" not in quant.details
        assert quant.accuracy_per_j_per_image == pytest.approx(0.93 / 0.0008)
        assert quant.spec["gpu_memory_gib"] == 8.0 and "gpu_memory_gb" not in quant.spec
        assert quant.memory_cap is not None and quant.memory_cap.gpu_memory_gib == 8.0
        assert [r.trial_id for r in reader.records(gpu_memory_gib=8)] == ["quant-0"]
        frame = reader.to_dataframe()
        assert list(frame.columns) == list(EXPORT_COLUMNS)
        assert list(frame["images_per_s"][:2]) == [5000.0, 9000.0]
        assert frame["gpu_memory_gib"][1] == 8.0 and "gpu_memory_gb" not in frame.columns
        assert list(reader.to_dataframe(gpu_memory_gib=8.0)["trial_id"]) == ["quant-0"]
        assert frame["accuracy_per_kj_train"][0] == pytest.approx(0.95)
        assert reader.export_csv(tmp_path / "old.csv", "ok") == 2
    assert untouched(path) == before


def test_a_schema_1_store_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    path = schema_1_store(tmp_path / STORE_FILE)
    cap_quant_trial(path, 8.0)
    with ResultsStore(path, read_only=True) as reader:
        old = reader.records()
    with ResultsStore(path, study="legacy") as store:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert store.records() == old  # same records, same order
        columns = {r[1] for r in store._query("PRAGMA table_info(trials)")}
        assert "images_per_s" in columns and "throughput_images_per_s" not in columns
        assert "gpu_memory_gib" in columns and "gpu_memory_gb" not in columns
        assert store._query("SELECT trial_id FROM trials WHERE gpu_memory_gib = 8") == [
            ("quant-0",)
        ]
        (spec_json,) = store._query("SELECT spec_json FROM trials WHERE trial_id = 'quant-0'")[0]
        assert json.loads(spec_json)["gpu_memory_gib"] == 8.0 and "gpu_memory_gb" not in spec_json
        assert store.records(gpu_memory_gib=8)[0].spec["gpu_memory_gib"] == 8.0
        assert not columns & {"accuracy_per_kj_train", "accuracy_per_j_per_image"}
        stored = json.loads(store._query("SELECT record_json FROM trials")[1][0])
        assert "variants" in stored and "variants" not in stored["details"]
        assert store.integrity_check() == "ok"
        store.begin_trial("new", spec())  # and it takes new trials
        assert store.records(technique="quantize:int8")[0].variants == old[1].variants
    indexes = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    assert {"trials_status", "trials_point"} <= {r[0] for r in indexes}


# --- several processes ------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from wattwise.experiment import TrialRecord, open_store

    path, prefix, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = open_store(path, study="demo")
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
    tmp_path: Path, db: str | Path, prefix: str, count: int, go: str = "-"
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


@only_sqlite  # test_store_postgres.py races three processes on PostgreSQL
def test_two_processes_write_concurrently(tmp_path: Path, location: str | Path) -> None:
    db = location  # both create the schema: neither finds it there
    go = tmp_path / "go"
    procs = [writer(tmp_path, db, prefix, 40, str(go)) for prefix in ("a", "b")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{p}").exists() for p in "ab") and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both write at once: one waits on the store's lock while the other commits
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [len(o) for o in outputs] == [40, 40]
    with open_store(db) as store:
        assert sound(store)
        assert store.counts() == {"ok": 80, "failed": 0, "running": 0}
        assert {r.attempts for r in store.records()} == {1}
        assert store.config_yaml is None and store.study == "demo"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(store: Store) -> None:
    store.begin_trial("t", spec())
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        code = 1
        try:
            store.finish_trial(ok_record("t"))
            code = 0
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert store.status("t") == "ok" and sound(store)
    store.begin_trial("u", spec())  # the parent's connection still works


def test_importing_the_store_and_config_is_torch_free() -> None:
    code = "import sys, wattwise.config, wattwise.experiment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_exports_carry_the_costs_and_the_final_saving(store: ResultsStore, tmp_path: Path) -> None:
    """Technique and measurement energy, the total, and the final variant's saving with its
    interval and flags are export columns, computed from the stored record (not stored twice)."""
    from wattwise.experiment import VariantRecord

    def variant(step: str, **changes: Any) -> VariantRecord:
        values = dict(step=step, applied=step, accuracy=0.9, params=1, macs=1, model_bytes=1,
                      model_bytes_note="", latency_p50_ms=1.0, latency_p95_ms=1.0,
                      images_per_s=1.0, inference_energy_per_image_j=0.001,
                      inference_energy_provenance="measured", peak_rss_bytes=1,
                      step_energy_j=0.0, step_duration_s=0.0, optimization_energy_j=0.0,
                      payback_inferences=0.0)  # fmt: skip
        return VariantRecord(**(values | changes))

    def phase(name: str, energy_j: float) -> dict[str, Any]:
        return {"name": name, "total_energy_j": energy_j, "components": []}

    phases = {"train": phase("train", 100.0), "recipe/quantize:int8": phase("r", 40.0),
              "inference": phase("i", 5.0), "compare/a/round0": phase("c", 2.0)}  # fmt: skip
    final = variant("quantize:int8", saving=2.3, saving_low=2.1, saving_high=2.5,
                    saving_significant=True, noisy=True, noise=("external CPU 40 %",))  # fmt: skip
    reference = variant("fp32 compiled", reference=True, saving=1.5, saving_low=1.4,
                        saving_high=1.6, saving_significant=True)  # fmt: skip
    store.finish_trial(ok_record("a", spec=spec(), phases=phases,
                                 variants=(variant("baseline"), final, reference)))  # fmt: skip
    store.finish_trial(ok_record("b", spec=spec(1)))  # no comparison: empty cells
    columns = ("technique_energy_j", "measurement_energy_j", "total_energy_j", "saving",
               "saving_low", "saving_high", "saving_significant", "noisy")  # fmt: skip
    assert set(columns) <= set(EXPORT_COLUMNS)
    stored = stored_columns(store)
    assert not stored & set(columns)  # computed on export, the store's schema is unchanged
    frame = store.to_dataframe()
    a, b = frame.iloc[0], frame.iloc[1]
    assert (a["technique_energy_j"], a["measurement_energy_j"], a["total_energy_j"]) == (
        40.0, 7.0, 147.0,
    )  # fmt: skip
    assert (a["saving"], a["saving_low"], a["saving_high"]) == (2.3, 2.1, 2.5)  # not the reference
    assert bool(a["saving_significant"]) and bool(a["noisy"])
    assert pd.isna(b["saving"]) and pd.isna(b["saving_significant"]) and not b["noisy"]
    assert b["total_energy_j"] == 100.0
    store.export_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows[0]["saving_low"] == "2.1" and rows[0]["noisy"] == "True"
    store.export_parquet(tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").column("saving_high").to_pylist() == [2.5, None]
