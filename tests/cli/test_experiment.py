"""``wattwise sweep / results / demo``: exit codes, one-line errors, and studies that survive
SIGKILL and Ctrl-C at random moments."""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from wattwise.cli import main
from wattwise.cli._base import Parser
from wattwise.cli.experiment import register
from wattwise.config import load_study_config
from wattwise.experiment import ResultsStore
from wattwise.experiment import demo as demo_module
from wattwise.experiment.spec import expand_grid

STUDY = """\
name: {name}
output_dir: {out}
datasets: [digits]
models: [small_cnn]
width: 0.25
techniques: [baseline]
batch_sizes: [64]
learning_rates: [0.05, 0.1]
epochs: [{epochs}]
seeds: {seeds}
train: {{hflip: false, augment: false, num_threads: 1}}
measurement: {{inference_s: {inference_s}, inference_batch_size: 32}}
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich: no wrapped names


def write_study(
    tmp_path: Path, name: str = "cli", seeds: str = "[0]", epochs: int = 1, inference_s: float = 0.1
) -> Path:
    path = tmp_path / f"{name}.yaml"
    out = tmp_path / "results"
    text = STUDY.format(name=name, out=out, seeds=seeds, epochs=epochs, inference_s=inference_s)
    path.write_text(text)
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_sweep_then_results_with_filters_and_exports(tmp_path, capsys):
    study = write_study(tmp_path)
    code, out, err = run(["sweep", str(study)], capsys)
    assert code == 0, err
    assert "best accuracy" in out and "lowest training energy" in out
    folder = tmp_path / "results" / "cli"
    csv_path, parquet_path = tmp_path / "x.csv", tmp_path / "x.parquet"
    argv = ["results", str(folder), "--csv", str(csv_path), "--parquet", str(parquet_path)]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "(2 trials)" in out and "small_cnn" in out and "energy: estimated" in out
    assert "2 rows written" in out and csv_path.is_file() and parquet_path.is_file()
    code, out, _ = run(["results", str(folder / "results.sqlite"), "--status", "failed"], capsys)
    assert code == 0 and "(0 trials)" in out
    code, out, _ = run(
        ["results", str(folder), "--dataset", "digits", "--technique", "baseline"], capsys
    )
    assert "(2 trials)" in out
    code, out, _ = run(["sweep", str(study)], capsys)  # resumes: nothing to run
    assert code == 0 and "2 finished earlier, 0 to run" in out


LONG_TECHNIQUE = "distill:resnet50,prune:structured:0.5:importance=taylor,quantize:int8"


def _narrow_store(folder: Path) -> None:
    """Two finished trials, one with a 69-character technique."""
    from wattwise.experiment.record import TrialRecord

    with ResultsStore(folder / "results.sqlite", study="narrow") as store:
        for i, technique in enumerate(("baseline", LONG_TECHNIQUE)):
            spec = {
                "study": "narrow",
                "dataset": "digits",
                "model": "resnet18",
                "technique": technique,
                "batch_size": 64,
                "lr": 0.05,
                "epochs": 5,
                "seed": i,
            }
            trial_id = f"{i}123456789abcdef"
            store.begin_trial(trial_id, spec)
            store.finish_trial(
                TrialRecord(
                    trial_id,
                    spec=spec,
                    accuracy=0.9523 - i / 100,
                    train_energy_j=12345.6,
                    train_energy_provenance="estimated",
                    inference_energy_per_image_j=0.000123 * (i + 1),
                    inference_energy_provenance="estimated",
                )
            )


def test_results_reads_at_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    _narrow_store(tmp_path)
    code, out, err = run(["results", str(tmp_path)], capsys)
    assert code == 0, err
    assert "…" not in out
    header = next(line for line in out.splitlines() if "status" in line)
    for name in ("id", "technique", "seed", "accuracy", "mJ/image"):
        assert name in header
    assert len(header) <= 80 and "0123456789abcdef" in out and "94.23%" in out
    assert f"T1 = {LONG_TECHNIQUE}" in out and "0.246" in out
    code, out, err = run(["results", str(tmp_path), "--columns", "lr,id,train_energy"], capsys)
    assert code == 0, err
    header = next(line for line in out.splitlines() if " id " in line)
    assert header.split() == ["┃", "lr", "┃", "id", "┃", "train", "energy", "┃"]
    assert "12.346 kJ" in out


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("id,colour", "unknown column 'colour'"),
        ("id,,seed", "empty column name"),
        ("id,id", "column 'id' twice"),
    ],
)
def test_results_refuses_a_bad_column_in_one_line(tmp_path, capsys, columns, message):
    _narrow_store(tmp_path)
    code, _, err = run(["results", str(tmp_path), "--columns", columns], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert "id, dataset, model, technique" in err  # the valid names


def test_sweep_out_and_executor_flags(tmp_path, capsys):
    study = write_study(tmp_path, seeds="[0]")
    out_dir = tmp_path / "elsewhere"
    code, _, err = run(["sweep", str(study), "--out", str(out_dir), "--executor", "local"], capsys)
    assert code == 0, err
    assert (out_dir / "results.sqlite").is_file() and (out_dir / "study.yaml").is_file()


BAD = [
    ("colour: blue", "unknown key; allowed keys"),
    ("models: [resnet19]", "unknown model 'resnet19'"),
    ("datasets: [imagenet]", "unknown dataset 'imagenet'"),
    ("techniques: [prune:magic:0.5]", "prune takes"),
    ("techniques: [sharpen]", "unknown technique step 'sharpen'"),
    ("batch_sizes: [big]", "expected an integer"),
    ("epochs: []", "must not be empty"),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_bad_study_is_one_line_and_exit_2(tmp_path, capsys, line, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\noutput_dir: {tmp_path}\n{line}\n")
    code, _, err = run(["sweep", str(path)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("wattwise: error: ") and message in err
    assert "Traceback" not in err and not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "{tmp}/missing.yaml"], "cannot read the study config"),
        (["sweep", "{study}", "--out", "{tmp}/file/sub"], "cannot create the study folder"),
        (["sweep", "{study}", "--address", "ray://x:1"], "--address is for the ray executor"),
        (["results", "{tmp}/nothing"], "no study folder or results store"),
        (["results", "{tmp}"], "holds no results.sqlite"),
        (["results", "{tmp}/file", "--technique", "sharpen"], "unknown technique step"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("x")
    study = write_study(tmp_path)
    argv = [a.format(tmp=tmp_path, study=study) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_unwritable_output_dir_in_the_study(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    study = write_study(tmp_path)
    study.write_text(
        study.read_text().replace(
            f"output_dir: {tmp_path / 'results'}", f"output_dir: {tmp_path / 'file'}"
        )
    )
    code, _, err = run(["sweep", str(study)], capsys)
    assert code == 2 and "cannot create the study folder" in err


def test_demo_command_runs_the_bundled_study_into_out(tmp_path, capsys, monkeypatch):
    small = replace(
        demo_module.demo_config(),
        image_size=16,
        width=0.125,
        seeds=(0,),
        epochs=(1,),
        techniques=("baseline",),
    )
    monkeypatch.setattr(demo_module, "demo_config", lambda: small)
    code, out, err = run(["demo", "--out", str(tmp_path / "d"), "--search-budget", "0"], capsys)
    assert code == 0, err
    assert (tmp_path / "d" / "results.csv").is_file()
    assert f"results folder:  {tmp_path / 'd'}" in out and "wattwise results" in out


def test_register_adds_the_commands_to_another_parser():
    parser = argparse.ArgumentParser(prog="wattwise")
    sub = parser.add_subparsers(dest="cmd", parser_class=Parser)  # help notes need its parser
    register(sub)
    args = parser.parse_args(
        ["sweep", "s.yaml", "--no-resume", "--retry-failed", "--executor", "ray"]
    )
    assert (args.no_resume, args.retry_failed, args.executor) == (True, True, "ray")
    assert parser.parse_args(["results", "d", "--status", "ok"]).status == "ok"
    assert parser.parse_args(["demo"]).out is None


# --- killed and interrupted sweeps ------------------------------------------------------------


def _snapshot(store: Path) -> dict[str, tuple[str, str]]:
    """trial id -> (status, record_json), read-only."""
    if not store.exists():
        return {}
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT trial_id, status, record_json FROM trials").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _sweep(study: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "wattwise", "sweep", str(study)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _kill_and_resume(tmp_path: Path, sig: signal.Signals, rounds: int, seeds: int) -> list[str]:
    """``rounds`` times: start ``wattwise sweep``, wait for its first finished trial, send
    ``sig`` 1 to 4 s later; then resume to the end and check the store."""
    # 2 x seeds trials of about a second each: the signal lands in a trial or between two
    name = f"crash-{sig.name.lower()}"
    seed_list = str(list(range(seeds)))
    study = write_study(tmp_path, name=name, seeds=seed_list, epochs=2, inference_s=0.6)
    config = load_study_config(study)
    store = tmp_path / "results" / config.name / "results.sqlite"
    expected = {s.trial_id for s in expand_grid(config)}
    rng = random.Random()
    finished: dict[str, str] = {}  # measured before a kill: must survive byte for byte
    log: list[str] = []
    for _ in range(rounds):
        proc = _sweep(study)
        assert proc.stdout is not None
        for line in proc.stdout:  # a trial has finished in this run: the sweep is under way
            if line.startswith(("ok ", "failed ")):
                break
        delay = rng.uniform(1.0, 4.0)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        log.append(f"{sig.name} after {delay:.2f} s -> exit {proc.returncode}")
        snapshot = _snapshot(store)
        done = all(snapshot.get(t, ("",))[0] == "ok" for t in expected)
        if sig == signal.SIGKILL:
            assert proc.returncode in (-signal.SIGKILL, 0), log
        else:  # Ctrl-C: 130 after committing, unless it had already finished
            assert proc.returncode == 130 or (proc.returncode == 0 and done), (
                log,
                err,
            )
            if proc.returncode == 130:
                assert "interrupted" in err and "Traceback" not in err, err
            assert all(status != "failed" for status, _ in snapshot.values()), log
        for trial_id, (status, text) in snapshot.items():
            if trial_id in finished:
                assert text == finished[trial_id], (log, trial_id)
            elif status == "ok":
                finished[trial_id] = text
        if done:
            break
    proc = _sweep(study)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (log, err)
    final = _snapshot(store)
    assert set(final) == expected, log  # every trial exactly once (trial_id is the key)
    assert all(status == "ok" for status, _ in final.values()), log
    for trial_id, text in finished.items():
        assert final[trial_id][1] == text, (log, trial_id)
    with ResultsStore(store) as results:
        assert results.integrity_check() == "ok"
        n = len(expected)
        assert len(results) == n and results.counts() == {"ok": n, "failed": 0, "running": 0}
    return log


def test_sigkill_at_random_moments_then_resume(tmp_path):
    _kill_and_resume(tmp_path, signal.SIGKILL, rounds=2, seeds=3)


@pytest.mark.slow
def test_sigkill_many_times_then_resume(tmp_path):
    _kill_and_resume(tmp_path, signal.SIGKILL, rounds=5, seeds=5)


def test_ctrl_c_at_random_moments_exits_130_then_resume(tmp_path):
    _kill_and_resume(tmp_path, signal.SIGINT, rounds=1, seeds=2)


# --- one sweep per study, signals, the study file -----------------------------------------------

#: Runs a study whose executor starts nothing and sleeps: a sweep that holds its study.
HOLDER = """\
import sys, time
from wattwise.config import load_study_config
from wattwise.experiment.executors import LocalExecutor
from wattwise.experiment.sweep import run_study

class Sleepy(LocalExecutor):
    def run(self, specs, **kwargs):
        print("running", flush=True)
        time.sleep(120)

run_study(load_study_config(sys.argv[1]), executor=Sleepy())
"""


def test_a_second_sweep_of_a_running_study_refuses_in_one_line_and_changes_nothing(
    tmp_path, capsys
):
    study = write_study(tmp_path, inference_s=0)
    assert run(["sweep", str(study)], capsys)[0] == 0
    store = tmp_path / "results" / "cli" / "results.sqlite"
    before = _snapshot(store)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(study)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "running"
        code, _, err = run(["sweep", str(study), "--no-resume"], capsys)
        assert code == 2, err
        (line,) = err.strip().splitlines()
        assert line.startswith("wattwise: error: study cli is being run by another sweep")
        assert f"pid {holder.pid} on " in line and " since " in line and "--wait" in line
        assert _snapshot(store) == before  # no ok record replaced
        # --wait: waits for the holder (killed: the OS releases its lock), then resumes
        killer = threading.Timer(0.5, holder.kill)
        killer.start()
        code, out, err = run(["sweep", str(study), "--wait"], capsys)
        killer.join()
        assert code == 0, err
        assert f"waiting for the sweep of study cli (pid {holder.pid} on " in out
        assert "2 finished earlier, 0 to run" in out
        assert _snapshot(store) == before
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_study_resumed_from_another_folder_runs_nothing_again(tmp_path, capsys, monkeypatch):
    studies = tmp_path / "studies"
    studies.mkdir()
    study = studies / "cli.yaml"  # output_dir: results, relative to this file
    study.write_text(STUDY.format(name="cli", out="results", seeds="[0]", epochs=1, inference_s=0))
    store = studies / "results" / "cli" / "results.sqlite"
    for cwd in ("a", "b"):
        (tmp_path / cwd).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    code, out, err = run(["sweep", str(study)], capsys)
    assert code == 0, err
    assert f"starting {store}: none of 2 trials done yet" in out
    monkeypatch.chdir(tmp_path / "b")
    code, out, err = run(["sweep", "../studies/cli.yaml"], capsys)
    assert code == 0, err
    assert "2 finished earlier, 0 to run" in out
    assert f"resumed {store}: 2 of 2 trials already done" in out
    assert not (tmp_path / "a" / "results").exists() and not (tmp_path / "b" / "results").exists()


def test_a_fifo_or_a_folder_as_the_study_is_one_line_and_exit_2(tmp_path, capsys):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, why in ((fifo, "not a regular file (a FIFO)"), (tmp_path, "Is a directory")):
        code, _, err = run(["sweep", str(path)], capsys)
        assert code == 2 and err.count("\n") == 1 and why in err, err


def _sweep_until_a_trial_is_done(study: Path) -> subprocess.Popen[str]:
    proc = _sweep(study)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(("ok ", "failed ")):
            break
    return proc


def test_sigterm_stops_a_sweep_like_ctrl_c_with_exit_143(tmp_path):
    study = write_study(tmp_path, name="term", seeds="[0, 1]", epochs=2, inference_s=0.3)
    proc = _sweep_until_a_trial_is_done(study)
    proc.send_signal(signal.SIGTERM)  # 3 trials left: it lands in one
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    (line,) = err.strip().splitlines()
    assert line.startswith("wattwise: interrupted by SIGTERM: ") and "of 4 trials" in line
    snapshot = _snapshot(tmp_path / "results" / "term" / "results.sqlite")
    statuses = sorted(status for status, _ in snapshot.values())
    assert "ok" in statuses and "failed" not in statuses


#: A signal that arrives while Python shuts down, after the sweep has finished (the late Ctrl-C
#: that made a finished sweep "exit" by SIGINT): an object whose finalizer sends it.
LATE_SIGNAL = """\
import os, signal, sys
from wattwise.cli import main
from wattwise.cli._base import Parser

class Late:  # deleted as the modules are torn down, after Python reset its signal handlers
    def __del__(self, kill=os.kill, pid=os.getpid(), sig=signal.SIGINT):
        kill(pid, sig)

late = Late()
sys.exit(main(["sweep", sys.argv[1]]))
"""


def test_a_ctrl_c_after_the_sweep_finished_does_not_change_its_exit_code(tmp_path, capsys):
    study = write_study(tmp_path, inference_s=0)
    assert run(["sweep", str(study)], capsys)[0] == 0
    result = subprocess.run(
        [sys.executable, "-c", LATE_SIGNAL, str(study)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "2 finished earlier, 0 to run" in result.stdout


def test_dry_run_prints_the_plan_runs_nothing_and_a_sweep_reuses_trainings(tmp_path, capsys):
    study = write_study(tmp_path, name="plan")
    text = study.read_text().replace("techniques: [baseline]",
                                      "techniques: [baseline, prune:structured:0.5]")  # fmt: skip
    study.write_text(text)
    code, out, err = run(["sweep", str(study), "--dry-run"], capsys)
    assert code == 0 and err == ""
    assert "study plan: 4 trial(s), 4 to run" in out
    assert "trainings after reuse: 2 for 4 trial(s) (2 still to train)" in out
    assert "ready to run" in out and not (tmp_path / "results").exists()  # nothing written
    code, out, _ = run(["sweep", str(study)], capsys)
    assert code == 0 and "reuse avoided" in out
    with ResultsStore(tmp_path / "results" / "plan" / "results.sqlite", read_only=True) as s:
        reused = [r for r in s.records() if not r.details["baseline"]["trained_here"]]
    assert len(reused) == 2 and all("train" not in r.phases for r in reused)
    assert len(list((tmp_path / "results" / "plan" / "baselines").glob("*.pt"))) == 2
    code, out, _ = run(["sweep", str(study), "--dry-run"], capsys)
    assert "4 trial(s), 0 to run" in out and "estimate for the pending trials: 0 min" in out


def test_missing_data_is_refused_before_any_trial_runs(tmp_path, capsys):
    study = write_study(tmp_path, name="nodata")
    study.write_text(study.read_text().replace("datasets: [digits]", "datasets: [fashion_mnist]")
                     + f"data_root: {tmp_path / 'data'}\n")  # fmt: skip
    code, out, err = run(["sweep", str(study), "--dry-run"], capsys)
    assert code == 2 and "problem: Fashion-MNIST: expected file" in out
    assert err.count("\n") == 1 and "1 problem(s)" in err
    code, out, err = run(["sweep", str(study)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "Fashion-MNIST" in err and "or set download: true in the study" in err
    assert not (tmp_path / "results" / "nodata").exists()  # no trial, no store


def test_failed_trials_are_listed_with_the_retry_hint(tmp_path, capsys, monkeypatch):
    from wattwise.experiment import runner

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(runner, "fit", boom)
    study = write_study(tmp_path, name="fails")
    code, out, _ = run(["sweep", str(study)], capsys)
    assert code == 0
    assert out.count("injected failure") >= 2
    assert f"2 failed trial(s); run them again: wattwise sweep {study} --retry-failed" in out


def test_a_sweep_with_a_recipe_search_prints_its_candidates_and_its_energy_apart(tmp_path, capsys):
    study = write_study(tmp_path, name="rs")
    with open(study, "a") as file:
        file.write(
            "recipe_search: {budget: 1, sampler: grid, space: {ratio_low: 0.3, ratio_high: 0.5,"
            " importances: [magnitude], steps: [1], finetune_epochs: [0], finetune_by: [labels],"
            " int8: [none], channels_last: false}}\n"
        )
    code, out, err = run(["sweep", str(study)], capsys)
    assert code == 0, err
    assert "recipe search [1/1] prune:structured:0.3" in out
    assert "recipe search energy" in out and "study energy (trials + search)" in out
    assert list((tmp_path / "results" / "rs" / "search").glob("*.json"))
    code, out, err = run(["sweep", str(study)], capsys)  # resumed: nothing measured again
    assert code == 0 and "recipe search [" not in out
