"""run_study: grid and Optuna search, resume, failures, interruption, progress and summary."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest

from wattwise.config import StudyConfig, load_study_config
from wattwise.errors import ConfigError, WattwiseError
from wattwise.experiment import ResultsStore
from wattwise.experiment.executors import LocalExecutor
from wattwise.experiment.spec import expand_grid
from wattwise.experiment.sweep import (
    LOCK_FILE,
    StudyInterrupted,
    StudyLocked,
    describe_trial,
    run_study,
    study_dir_of,
)
from wattwise.files import FileLock


def config(tmp_path: Path, **changes: Any) -> StudyConfig:
    values: dict[str, Any] = {
        "name": "sweep",
        "output_dir": str(tmp_path),
        "width": 0.25,
        "batch_sizes": [64],
        "learning_rates": [0.05, 0.1],
        "epochs": [1],
        "seeds": [0],
        "train": {"hflip": False, "augment": False, "num_threads": 1},
        # these tests are about the sweep: trials train (1 epoch) but skip the inference protocol
        "measurement": {"inference_s": 0},
    }
    values.update(changes)
    return StudyConfig(**values)


def record_json(path: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT trial_id, record_json FROM trials").fetchall())


def test_grid_runs_every_trial_then_resume_skips_them(tmp_path):
    study = config(tmp_path)
    summary = run_study(study)
    folder = tmp_path / "sweep"
    assert summary.study_dir == folder and summary.store_path == folder / "results.sqlite"
    assert (summary.total, summary.ok, summary.failed, summary.ran, summary.skipped) == (
        2,
        2,
        0,
        2,
        0,
    )
    assert summary.left == 0 and not summary.interrupted
    assert load_study_config(folder / "study.yaml") == study  # the resolved config
    assert summary.best_accuracy is not None and summary.lowest_train_energy is not None
    before = record_json(summary.store_path)
    again = run_study(study)
    assert (again.ran, again.skipped, again.ok) == (0, 2, 2)
    assert record_json(summary.store_path) == before  # nothing rewritten


def test_failed_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    from wattwise.experiment import runner

    real_fit = runner.fit

    def fit(model, data, config, **kwargs):
        if config.lr == 0.1:
            raise RuntimeError("diverged on purpose")
        return real_fit(model, data, config, **kwargs)

    monkeypatch.setattr(runner, "fit", fit)
    study = config(tmp_path, learning_rates=[0.05, 0.1])
    summary = run_study(study)
    assert (summary.ok, summary.failed) == (1, 1)
    (listed,) = summary.failed_trials
    with ResultsStore(summary.store_path) as store:
        (failed,) = store.records("failed")
        assert failed.spec["lr"] == 0.1
        assert failed.reason == "RuntimeError: diverged on purpose" == listed[2]
        assert listed[0] == failed.trial_id and "lr0.1" in listed[1]
        assert store.records("ok")[0].spec["lr"] == 0.05
    assert run_study(study).ran == 0  # a failure is a result
    retried = run_study(study, retry_failed=True)
    assert retried.ran == 1
    with ResultsStore(summary.store_path) as store:
        assert store.records("failed")[0].attempts == 2


def test_a_study_whose_data_is_missing_is_refused_before_any_trial(tmp_path):
    study = config(tmp_path, datasets=["fashion_mnist", "digits"],
                   data_root=str(tmp_path / "no-data"))  # fmt: skip
    with pytest.raises(ConfigError, match="Fashion-MNIST: expected file"):
        run_study(study)
    assert not study_dir_of(study).exists()  # nothing ran, nothing was written


def test_a_trial_left_running_is_run_again_and_no_resume_reruns_all(tmp_path):
    study = config(tmp_path)
    first, second = expand_grid(study)
    with ResultsStore(tmp_path / "sweep" / "results.sqlite", study="sweep") as store:
        store.begin_trial(first.trial_id, first)  # as if a killed sweep had started it
    summary = run_study(study)
    assert summary.ran == 2
    with ResultsStore(summary.store_path) as store:
        assert store.get(first.trial_id).attempts == 2
        assert store.get(second.trial_id).attempts == 1
    rerun = run_study(study, resume=False)
    assert rerun.ran == 2 and rerun.skipped == 0
    with ResultsStore(summary.store_path) as store:
        assert store.get(second.trial_id).attempts == 2


def test_unwritable_output_is_one_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot create the study folder") as err:
        run_study(config(tmp_path, output_dir=str(blocker / "sub")))
    assert "\n" not in str(err.value)


class _StopAfter(LocalExecutor):
    """Runs ``n`` trials, then starts the next and raises KeyboardInterrupt (Ctrl-C)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def run(self, specs: Sequence[Any], *, on_start: Any, on_done: Any, **kwargs: Any) -> None:
        super().run(specs[: self.n], on_start=on_start, on_done=on_done, **kwargs)
        on_start(specs[self.n])
        raise KeyboardInterrupt


def test_interrupt_commits_what_finished_and_leaves_the_current_trial_running(tmp_path):
    study = config(tmp_path)
    first, second = expand_grid(study)
    with pytest.raises(StudyInterrupted) as stop:
        run_study(study, executor=_StopAfter(1))
    summary = stop.value.summary
    assert isinstance(stop.value, KeyboardInterrupt)
    assert summary.interrupted and (summary.ok, summary.running, summary.left) == (1, 1, 1)
    with ResultsStore(summary.store_path) as store:
        assert store.status(first.trial_id) == "ok"
        assert store.status(second.trial_id) == "running"
    resumed = run_study(study)
    assert (resumed.ran, resumed.ok) == (1, 2)


class Recorder:
    """A StudyReporter that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_study_start(self, study: str, total: int, done: int, executor: str) -> None:
        self.calls.append(("start", study, total, done, executor))

    def on_trial_start(self, spec: Any, done: int, total: int) -> None:
        self.calls.append(("trial", spec.trial_id, done, total))

    def on_trial_end(self, record: Any, done: int, total: int) -> None:
        self.calls.append(("end", record.trial_id, record.status, done, total))

    def on_progress(self, done: int, total: int) -> None:
        self.calls.append(("progress", done, total))

    def on_study_end(self, summary: Any) -> None:
        self.calls.append(("summary", summary))


def test_the_reporter_hears_the_plan_each_trial_and_the_summary_and_nothing_is_printed(
    tmp_path, capsys
):
    study = config(tmp_path)
    first, second = (s.trial_id for s in expand_grid(study))
    recorder = Recorder()
    summary = run_study(study, reporter=recorder)
    assert recorder.calls == [
        ("start", "sweep", 2, 0, "local"),
        ("trial", first, 0, 2),
        ("end", first, "ok", 1, 2),
        ("trial", second, 1, 2),
        ("end", second, "ok", 2, 2),
        ("summary", summary),
    ]
    again = Recorder()
    run_study(study, reporter=again)  # resumed: nothing left to run
    assert [c[0] for c in again.calls] == ["start", "summary"]
    assert again.calls[0] == ("start", "sweep", 2, 2, "local")
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # the library prints nothing


def test_an_interrupted_study_gets_no_summary_call(tmp_path):
    recorder = Recorder()
    with pytest.raises(StudyInterrupted):
        run_study(config(tmp_path), executor=_StopAfter(1), reporter=recorder)
    assert [c[0] for c in recorder.calls] == ["start", "trial", "end", "trial"]


def test_a_search_reports_points_it_reuses_as_progress(tmp_path):
    run_study(search(tmp_path, 2))
    recorder = Recorder()
    summary = run_study(search(tmp_path, 3), reporter=recorder)
    start = recorder.calls[0]
    assert start == ("start", "sweep", 6, 4, "local")
    ends = [c for c in recorder.calls if c[0] in ("end", "progress")]
    assert ends and ends[-1][-2:] == (6, 6)  # every trial of the search is counted once
    assert summary.ran + summary.skipped == 6


def test_describe_trial_names_the_point():
    spec = expand_grid(StudyConfig(name="x", gpu_memory_gib=[8]))[0]
    assert describe_trial(spec) == "digits small_cnn baseline bs32 lr0.001 ep10 seed0 cap8GiB"


def search(tmp_path: Path, n_trials: int) -> StudyConfig:
    return config(
        tmp_path,
        batch_sizes=[32, 64],
        seeds=[0, 1],
        search={"kind": "optuna", "n_trials": n_trials},
    )


def optuna_trials(tmp_path: Path) -> list[Any]:
    """The search's evaluated points (proposals that repeated one are left out)."""
    from wattwise.experiment.search import DUPLICATE

    storage = f"sqlite:///{tmp_path / 'sweep' / 'optuna.sqlite'}"
    trials = optuna.load_study(study_name="sweep", storage=storage).get_trials()
    return [t for t in trials if DUPLICATE not in t.user_attrs]


def test_optuna_search_runs_every_seed_and_resumes_by_counting(tmp_path):
    summary = run_study(search(tmp_path, 2))
    trials = optuna_trials(tmp_path)
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    assert summary.total == 4 and summary.search == "optuna"
    with ResultsStore(summary.store_path) as store:
        records = store.records()
        assert records and all(r.status == "ok" for r in records)
        for trial in trials:  # each Optuna trial ran its point with both seeds
            key = (trial.params["lr"], trial.params["batch_size"])
            point = [r for r in records if (r.spec["lr"], r.spec["batch_size"]) == key]
            assert sorted(r.spec["seed"] for r in point) == [0, 1]
            mean = sum(r.accuracy for r in point) / 2
            assert trial.values[0] == pytest.approx(mean)
            assert trial.values[1] == pytest.approx(sum(r.train_energy_j for r in point) / 2)
    again = run_study(search(tmp_path, 2))
    assert again.ran == 0 and len(optuna_trials(tmp_path)) == 2  # finished trials counted
    run_study(search(tmp_path, 3))
    assert len(optuna_trials(tmp_path)) == 3


def test_optuna_trial_left_running_is_finished_on_resume(tmp_path):
    run_study(search(tmp_path, 1))
    storage = f"sqlite:///{tmp_path / 'sweep' / 'optuna.sqlite'}"
    study = optuna.load_study(study_name="sweep", storage=storage)
    stale = study.ask()  # a killed run had asked for this one
    stale.suggest_categorical("batch_size", [32, 64])
    stale.suggest_categorical("lr", [0.05, 0.1])
    run_study(search(tmp_path, 2))
    trials = optuna_trials(tmp_path)
    assert len(trials) == 2 and trials[1].number == stale.number
    assert trials[1].state.name == "COMPLETE"


def test_search_objectives_must_match_a_resumed_search(tmp_path):
    run_study(search(tmp_path, 1))
    study = search(tmp_path, 1)
    other = replace(
        study, search=replace(study.search, objectives=("accuracy",), directions=("maximize",))
    )
    with pytest.raises(ConfigError, match="other objectives"):
        run_study(other)


# --- one sweep per study; nothing written before the study is validated ------------------------


class _Idle(LocalExecutor):
    """Runs nothing: for tests about what run_study does around the trials."""

    def run(self, specs: Sequence[Any], *, on_start: Any, on_done: Any, **kwargs: Any) -> None:
        pass


def test_a_study_another_sweep_holds_is_refused_naming_the_holder(tmp_path):
    study = config(tmp_path)
    summary = run_study(study)
    before = record_json(summary.store_path)
    holder = FileLock(summary.study_dir / LOCK_FILE)
    assert holder.acquire()  # another sweep of this study is running
    try:
        with pytest.raises(StudyLocked) as err:
            run_study(study, resume=False)  # would rerun (replace) every trial
        message = str(err.value)
        assert "\n" not in message and f"pid {os.getpid()} on " in message and "since" in message
        assert record_json(summary.store_path) == before  # the ok records survive
    finally:
        holder.release()
    assert run_study(study, executor=_Idle()).skipped == 2  # released: the study runs again


def test_wait_blocks_until_the_other_sweep_ends(tmp_path):
    study = config(tmp_path)
    folder = tmp_path / "sweep"
    folder.mkdir()
    holder = FileLock(folder / LOCK_FILE)
    assert holder.acquire()
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    started = time.monotonic()
    summary = run_study(study, executor=_Idle(), wait=True)
    timer.join()
    assert time.monotonic() - started >= 0.25 and summary.total == 2


def test_a_study_pointed_at_another_studys_folder_changes_nothing_there(tmp_path):
    other = config(tmp_path, name="other", seeds=[0, 1])
    run_study(other, executor=_Idle())
    folder = tmp_path / "other"
    files = {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}
    with pytest.raises(WattwiseError, match="holds study 'other', not 'sweep'"):
        run_study(config(tmp_path), study_dir=folder)
    # study.yaml and the store byte for byte, and no new file (lock, -wal, -shm)
    assert {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))} == files


def test_a_search_that_cannot_resume_leaves_study_yaml_as_it_was(tmp_path):
    run_study(search(tmp_path, 1))
    before = (tmp_path / "sweep" / "study.yaml").read_bytes()
    study = search(tmp_path, 1)
    other = replace(
        study, search=replace(study.search, objectives=("accuracy",), directions=("maximize",))
    )
    with pytest.raises(ConfigError, match="other objectives"):
        run_study(other)
    assert (tmp_path / "sweep" / "study.yaml").read_bytes() == before


def test_the_resolved_study_yaml_resumes_the_folder_it_lies_in(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "sweep"  # not <output_dir>/<name>: the folder was given
    run_study(config(tmp_path, output_dir="elsewhere"), study_dir=folder, executor=_Idle())
    monkeypatch.chdir(tmp_path / "runs")
    resolved = load_study_config(folder / "study.yaml")
    assert Path(resolved.output_dir) == folder.parent and Path(resolved.output_dir).is_absolute()
