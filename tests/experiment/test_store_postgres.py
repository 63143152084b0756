"""The PostgreSQL results store: what differs from SQLite's (the store contract itself runs on
both backends in tests/experiment/test_store.py). Passwords are masked everywhere they could
show, a claim of one trial by two processes leaves one result, a study sweeps (grid and Optuna)
into a database and the CLI reads it back. The server comes from
:mod:`tests.experiment.postgres_server` (skipped where none can start)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.experiment.postgres_server import PostgresServer
from wattwise.config import StudyConfig
from wattwise.errors import ConfigError
from wattwise.experiment import StoreError
from wattwise.experiment.store import check_study, open_store
from wattwise.experiment.store_postgres import PostgresStore, masked_url, url_without_password


@pytest.fixture
def server(request: pytest.FixtureRequest) -> PostgresServer:
    """The session's server (:func:`~tests.experiment.postgres_server.postgres_server`)."""
    return request.getfixturevalue("postgres_server")


def with_password(url: str, password: str = "s3cret") -> str:
    """``url`` with a password (the test server trusts local users: any password connects)."""
    return url.replace("wattwise@", f"wattwise:{password}@", 1)


def test_passwords_are_masked_in_what_is_shown_and_dropped_from_what_is_kept() -> None:
    assert (
        masked_url("postgresql://ann:pw@db:5432/results") == "postgresql://ann:***@db:5432/results"
    )
    assert masked_url("postgres://ann@db/results") == "postgres://ann@db/results"
    assert masked_url("postgresql://db/r?sslmode=require&password=pw") == (
        "postgresql://db/r?sslmode=require&password=***"
    )
    assert masked_url("postgresql://a:p%40ss@h1:1,h2:2/r") == "postgresql://a:***@h1:1,h2:2/r"
    assert url_without_password("postgresql://ann:pw@db/r?password=x&sslmode=require") == (
        "postgresql://ann@db/r?sslmode=require"
    )
    assert url_without_password("postgresql://ann@db/r") == "postgresql://ann@db/r"


def test_a_server_that_cannot_be_reached_is_one_line_without_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect to postgresql://ann:\\*\\*\\*@") as err:
        open_store("postgresql://ann:s3cret@127.0.0.1:1/results", timeout_s=5)
    assert "s3cret" not in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - started < 5


def test_a_missing_psycopg_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(StoreError, match=r"pip install 'wattwise\[postgres\]'") as err:
        open_store("postgresql://ann@db/results")
    assert "\n" not in str(err.value)


def test_a_study_names_a_postgresql_store_or_none() -> None:
    assert StudyConfig(name="s").store is None
    url = "postgresql://ann@db:5432/results"
    assert StudyConfig(name="s", store=url).store == url
    for bad in ("results.sqlite", "mysql://db/r", "postgresql:/db"):
        with pytest.raises(ConfigError, match=r"store: .*postgresql://"):
            StudyConfig(name="s", store=bad)


def test_a_database_without_a_store_is_refused_read_only_and_written_nothing(
    server: PostgresServer,
) -> None:
    url = with_password(server.database())
    with pytest.raises(StoreError, match="is not a wattwise results store") as err:
        open_store(url, read_only=True)
    assert "s3cret" not in str(err.value) and "\n" not in str(err.value)
    check_study(url, "demo")  # no store there: passes, and creates none
    with pytest.raises(StoreError, match="is not a wattwise results store"):
        open_store(url, read_only=True)
    with open_store(url, study="demo") as store:
        assert isinstance(store, PostgresStore) and "s3cret" not in repr(store)
        assert store.location == masked_url(url)
    with pytest.raises(StoreError, match="holds study 'demo', not 'other'; use another database"):
        check_study(url, "other")
    with open_store(url, read_only=True) as reader:
        assert reader.study == "demo"
        with pytest.raises(StoreError, match="is open read-only"):
            reader.begin_trial("t", {"study": "demo"})


def test_a_store_of_a_newer_layout_is_refused(server: PostgresServer) -> None:
    url = server.database()
    with open_store(url) as store, store._write() as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(StoreError, match=r"newer wattwise \(store schema 99"):
            open_store(url, read_only=read_only)


def test_a_claim_waits_for_the_claim_another_process_holds(server: PostgresServer) -> None:
    url = server.database()
    with open_store(url, study="demo") as holder, open_store(url, timeout_s=0.3) as other:
        with holder._write("t") as conn:  # a claim of trial t in progress, not committed yet
            conn.execute("SELECT 1")
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"stayed locked by another writer for 0\.3 s"):
                other.begin_trial("t", {"study": "demo"})
            assert time.monotonic() - started >= 0.25
            assert other.begin_trial("u", {"study": "demo"}) == 1  # another trial: no wait
        assert other.begin_trial("t", {"study": "demo"}) == 1  # released: the claim goes through


CLAIMER = textwrap.dedent(
    """
    import os, sys, time
    from wattwise.experiment import StoreError, TrialRecord, open_store

    url, name, go, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = open_store(url, study="demo")
    open(f"{go}.{name}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    for i in range(count):  # every process claims every trial, at once
        trial_id = f"t{i:03d}"
        try:
            store.begin_trial(trial_id, {"study": "demo", "seed": i})
        except ValueError:  # another process already finished it: nothing to run
            print("refused", trial_id, flush=True)
            continue
        try:
            store.finish_trial(TrialRecord(trial_id, accuracy=float(name[1:])))
        except StoreError:  # another process's result was stored first
            print("lost", trial_id, flush=True)
        else:
            print("won", trial_id, flush=True)
    """
)


def test_processes_claiming_the_same_trials_store_one_result_each(
    tmp_path: Path, server: PostgresServer
) -> None:
    url, go, count = server.database(), tmp_path / "go", 25
    # nothing there yet: the processes race to create the store's tables too
    script = tmp_path / "claimer.py"
    script.write_text(CLAIMER)
    names = ("p1", "p2")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, name, str(go), str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{n}").exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=120)[0].split("\n") for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    events: dict[str, dict[str, list[str]]] = {}  # trial -> outcome -> processes
    for name, lines in zip(names, outputs, strict=True):
        for line in filter(None, lines):
            outcome, trial_id = line.split()
            events.setdefault(trial_id, {}).setdefault(outcome, []).append(name)
    with open_store(url, read_only=True) as store:
        assert store.counts() == {"ok": count, "failed": 0, "running": 0}
        for record in store.records():
            seen = events[record.trial_id]
            assert len(seen.get("won", [])) == 1  # exactly one result per trial...
            assert record.accuracy == float(seen["won"][0][1:])  # ...the winner's, kept
            begun = len(seen.get("won", [])) + len(seen.get("lost", []))
            assert record.attempts == begun  # every claim counted: none lost to a race
            assert begun + len(seen.get("refused", [])) == len(names)


# --- a study on PostgreSQL -----------------------------------------------------------------------


def study(tmp_path: Path, url: str, **changes: Any) -> StudyConfig:
    """One tiny trial (as tests/experiment/test_sweep.py runs them), stored at ``url``."""
    values: dict[str, Any] = {
        "name": "pg",
        "output_dir": str(tmp_path),
        "store": url,
        "width": 0.25,
        "batch_sizes": [64],
        "learning_rates": [0.05],
        "epochs": [1],
        "seeds": [0],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        "measurement": {"inference_s": 0},
    }
    return StudyConfig(**(values | changes))


def test_a_sweep_stores_into_postgresql_and_the_cli_reads_it_back(
    tmp_path: Path, server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from wattwise.cli import main
    from wattwise.experiment.sweep import run_study

    plain = server.database()
    url = with_password(plain)
    summary = run_study(study(tmp_path, url))
    folder = tmp_path / "pg"
    assert (summary.ok, summary.ran, summary.total) == (1, 1, 1)
    assert summary.store_path == masked_url(url) and not (folder / "results.sqlite").exists()
    recorded = (folder / "study.yaml").read_text()
    assert f"store: {plain}" in recorded and "s3cret" not in recorded  # kept without it
    with open_store(url, read_only=True) as store:
        assert store.study == "pg" and "s3cret" not in (store.config_yaml or "")
        assert all("s3cret" not in json.dumps(r.to_dict()) for r in store.records())
        before = store.records()
    again = run_study(study(tmp_path, url))  # resumes from the database: nothing runs
    assert (again.ran, again.skipped, again.ok) == (0, 1, 1)
    with open_store(url, read_only=True) as store:
        assert store.records() == before
    csv_path = tmp_path / "r.csv"
    shown = {url: "pg: postgresql://wattwise:***@", str(folder): f"pg: {plain}"}
    for target, title in shown.items():  # the URL, or the folder whose study.yaml names it
        assert main(["results", target, "--status", "ok", "--csv", str(csv_path)]) == 0
        out = capsys.readouterr().out
        assert title in out and "s3cret" not in out and "1 rows written" in out


@pytest.mark.slow
def test_the_report_of_a_study_stored_in_postgresql(
    tmp_path: Path, server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from wattwise.cli import main
    from wattwise.experiment.sweep import run_study

    url = with_password(server.database())
    run_study(study(tmp_path, url))
    assert main(["report", str(tmp_path / "pg")]) == 0  # the folder's study.yaml names the store
    assert "s3cret" not in capsys.readouterr().out
    assert (tmp_path / "pg" / "report" / "report.html").exists()
    assert main(["report", url, "--out", str(tmp_path / "r")]) == 0  # a bare URL: --out
    assert "s3cret" not in (tmp_path / "r" / "report.md").read_text()


def test_an_optuna_search_keeps_its_state_in_the_study_database(
    tmp_path: Path, server: PostgresServer
) -> None:
    import optuna

    from wattwise.experiment.search import optuna_storage
    from wattwise.experiment.sweep import run_study

    url = with_password(server.database())
    searched = study(tmp_path, url, batch_sizes=[32, 64], search={"kind": "optuna", "n_trials": 1})
    summary = run_study(searched)
    assert (summary.ok, summary.search) == (1, "optuna")
    assert not (tmp_path / "pg" / "optuna.sqlite").exists()
    storage = optuna_storage(searched, tmp_path / "pg")
    assert isinstance(storage, optuna.storages.RDBStorage)
    trials = optuna.load_study(study_name="pg", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"]
    assert run_study(searched).ran == 0  # resumed from the database
