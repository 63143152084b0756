"""A catalogue of bad inputs to every ``wattwise`` command, each refused the same way: exit code
2, exactly one line on stderr (``wattwise: error: ...``), no traceback, and nothing that was
already stored changed (every file that existed before is byte-identical afterwards; a study
folder or store a case points at gains no file either).

A case is an id, the argv (``{tmp}`` stands for the case's folder, also the working directory)
and the builders of the files it needs there. Cases run in this process through
:func:`wattwise.cli.main`; a case that could block (a FIFO) runs ``python -m wattwise`` in a
subprocess with a timeout instead (all of them started together, in the background), and one
that could exhaust memory (a huge model) runs with its address space limited. Nothing trains:
training, distillation and recipes are replaced by a tripwire, so a bad input that is not
refused before the work starts fails its case at once. See docs/experiments.md, "Bad inputs".
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wattwise.cli import main

#: Builds what a case needs in ``tmp_path``.
Builder = Callable[[Path], None]

IS_ROOT = os.geteuid() == 0
#: Settings from the environment that would change what a case measures.
WATTWISE_ENV = ("WATTWISE_POWERCAP_ROOT", "WATTWISE_CPU_TDP_W", "WATTWISE_CPU_THREADS")
ROOT_REASON = "root ignores file permissions"
SUBPROCESS_TIMEOUT_S = 120.0
#: How long a subprocess may hold a FIFO open without finishing: it is waiting for a writer.
FIFO_WAIT_S = 3.0
#: Address space a case that could exhaust memory may add to what this process has mapped.
MEMORY_HEADROOM_BYTES = 4 * 2**30


class ReachedWork(BaseException):
    """A bad input got as far as training, a recipe or a trial (not an ``Exception``: nothing
    on the way may turn it into a failed trial)."""


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        argv: The arguments after ``wattwise``; ``{tmp}`` is replaced by ``tmp_path``.
        build: Builders of the files the case needs.
        stored: Paths (relative to ``tmp_path``) of stores and study folders the case points
            at: no file in them may change, appear or vanish.
        absent: Paths that must not exist afterwards (nothing half-written).
        isolated: Run in a subprocess with a timeout (it could block).
        fifo: With ``isolated``, the FIFO (relative to ``tmp_path``) the case passes: holding
            it open for :data:`FIFO_WAIT_S` without finishing fails the case.
        memory: Could exhaust memory: runs with the address space limited to
            :data:`MEMORY_HEADROOM_BYTES` more than this process uses.
        non_root: Relies on file permissions, which root ignores.
        disk_full: Every ``fsync`` fails with ENOSPC (a full disk, for the atomic writers).
    """

    argv: tuple[str, ...]
    build: tuple[Builder, ...] = ()
    stored: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    isolated: bool = False
    fifo: str | None = None
    memory: bool = False
    non_root: bool = False
    disk_full: bool = False


# --- builders -------------------------------------------------------------------------------


def text(name: str, content: str) -> Builder:
    def build(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content.replace("{tmp}", str(tmp)), encoding="utf-8")

    return build


def raw(name: str, data: bytes) -> Builder:
    def build(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)

    return build


def folder(name: str, mode: int | None = None) -> Builder:
    def build(tmp: Path) -> None:
        (tmp / name).mkdir(parents=True, exist_ok=True)
        if mode is not None:
            (tmp / name).chmod(mode)

    return build


def fifo(name: str) -> Builder:
    return lambda tmp: os.mkfifo(tmp / name)


def chmod(name: str, mode: int) -> Builder:
    return lambda tmp: (tmp / name).chmod(mode)


STUDY_KEYS = {
    "name": "s",
    "output_dir": "{tmp}/results",
    "datasets": "[digits]",
    "models": "[small_cnn]",
    "width": "0.25",
    "techniques": "[baseline]",
    "batch_sizes": "[64]",
    "learning_rates": "[0.05]",
    "epochs": "[1]",
    "seeds": "[0]",
}


def study(name: str = "s.yaml", *, extra: str = "", **changes: str) -> Builder:
    """A study YAML: a valid one-trial study with ``changes`` (key -> YAML text) and ``extra``
    lines."""
    keys = STUDY_KEYS | changes
    body = "".join(f"{key}: {value}\n" for key, value in keys.items()) + extra
    return text(name, body)


def study_folder(name: str = "study", *, study_name: str = "other") -> Builder:
    """A real study folder of study ``study_name``: ``results.sqlite`` with one ok trial and a
    failed one, and ``study.yaml``."""

    def build(tmp: Path) -> None:
        from tests.analysis.analysis_fixtures import make_record, write_store
        from wattwise.experiment import ResultsStore

        target = tmp / name
        path = write_store(
            target / "results.sqlite",
            [make_record("trial-1", study=study_name)],
            study=study_name,
        )
        with ResultsStore(path) as store:
            store.fail_trial("trial-2", "out of memory", spec={"dataset": "digits"})
        (target / "study.yaml").write_text(f"name: {study_name}\n", encoding="utf-8")

    return build


def foreign_sqlite(name: str, *statements: str) -> Builder:
    """A SQLite database that is not a wattwise store."""

    def build(tmp: Path) -> None:
        conn = sqlite3.connect(tmp / name)
        with conn:
            for statement in statements or ("CREATE TABLE songs (title TEXT)",):
                conn.execute(statement)
        conn.close()

    return build


def truncated(source: str, name: str, keep: float = 0.5) -> Builder:
    """``name``: the first ``keep`` of file ``source`` (built by an earlier builder)."""

    def build(tmp: Path) -> None:
        data = (tmp / source).read_bytes()
        (tmp / name).write_bytes(data[: int(len(data) * keep)])

    return build


def _small_cnn(num_classes: int = 10) -> Any:  # a torch module (torch is imported lazily)
    from wattwise.models import create_model

    return create_model(
        "small_cnn", num_classes=num_classes, in_channels=1, input_size=8, width=0.25
    )


MODEL_SPEC = {
    "name": "small_cnn",
    "num_classes": 10,
    "in_channels": 1,
    "input_size": 8,
    "width": 0.25,
}


def checkpoint(name: str = "run/checkpoint.pt", **changes: object) -> Builder:
    """A wattwise checkpoint of a digits small_cnn, with top-level keys replaced by ``changes``
    (``None``: the key left out); ``state_dict_classes`` saves weights of another head."""

    def build(tmp: Path) -> None:
        import torch

        from wattwise.train.checkpoint import FORMAT

        keys = dict(changes)
        classes = int(keys.pop("state_dict_classes", 10))  # type: ignore[call-overload]
        model = _small_cnn(classes)
        payload: dict[str, object] = {
            "format": FORMAT,
            "model": dict(MODEL_SPEC),
            "state_dict": {k: v.detach() for k, v in model.state_dict().items()},
            "train_config": {"seed": 0, "epochs": 1},
            "dataset": {"name": "digits", "info": {"image_size": 8}},
            "result": {"status": "ok", "history": []},
        }
        for key, value in keys.items():
            if value is None:
                payload.pop(key, None)
            else:
                payload[key] = value
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp / name)

    return build


def torch_file(name: str, obj: object) -> Builder:
    def build(tmp: Path) -> None:
        import torch

        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, tmp / name)

    return build


# --- the catalogue --------------------------------------------------------------------------

STUDY = (study(),)
STORE = (study_folder(),)
RUN = (checkpoint(),)
END = ("--", "true")  # monitor: a command that would run (and exit 0) if the input passed
TRAIN = ("train", "--epochs", "1", "--out", "{tmp}/run")
OPT = ("optimize", "--checkpoint", "{tmp}/run", "--recipe", "prune:structured:0.5")
OPT_MISSING = ("optimize", "--checkpoint", "{tmp}/missing", "--recipe")
NO_SWEEP = ("results/s",)  # the study folder a refused sweep of s.yaml must not create


def case(id_: str, *argv: str, marks: object = (), **fields: object) -> object:
    return pytest.param(Case(tuple(argv), **fields), id=id_, marks=marks)  # type: ignore[arg-type]


CASES = [
    # the command line itself
    case("cli-no-command"),
    case("cli-unknown-command", "frobnicate"),
    case("cli-unknown-option", "devices", "--bogus"),
    # devices
    case("devices-tdp-negative", "devices", "--cpu-tdp-w", "-5"),
    case("devices-tdp-zero", "devices", "--cpu-tdp-w", "0"),
    case("devices-tdp-nan", "devices", "--cpu-tdp-w", "nan"),
    case("devices-tdp-inf", "devices", "--cpu-tdp-w", "inf"),
    case("devices-threads-zero", "devices", "--cpu-threads", "0"),
    case("devices-threads-not-a-number", "devices", "--cpu-threads", "four"),
    case("devices-powercap-root-missing", "devices", "--powercap-root", "{tmp}/missing"),
    case("devices-json-is-a-folder", "devices", "--json", "{tmp}/dir", build=(folder("dir"),)),
    case(
        "devices-json-below-a-file",
        "devices",
        "--json",
        "{tmp}/file/d.json",
        build=(text("file", "x"),),
    ),
    case("devices-json-disk-full", "devices", "--json", "{tmp}/d.json", disk_full=True),
    case(
        "devices-json-read-only-folder",
        "devices",
        "--json",
        "{tmp}/ro/d.json",
        build=(folder("ro", 0o500),),
        non_root=True,
    ),
    # monitor
    case("monitor-no-command", "monitor"),
    case("monitor-only-dashes", "monitor", "--"),
    case("monitor-interval-zero", "monitor", "--interval", "0", *END),
    case("monitor-interval-nan", "monitor", "--interval", "nan", *END),
    case("monitor-interval-too-long", "monitor", "--interval", "100", *END),
    case("monitor-sample-hz-too-high", "monitor", "--sample-hz", "5000", *END),
    case("monitor-sample-hz-inf", "monitor", "--sample-hz", "inf", *END),
    case("monitor-interval-and-sample-hz", "monitor", "--interval", "1", "--sample-hz", "2", *END),
    case("monitor-read-timeout-zero", "monitor", "--read-timeout-s", "0", *END),
    case("monitor-read-timeout-nan", "monitor", "--read-timeout-s", "nan", *END),
    case("monitor-unknown-meter", "monitor", "--meters", "bogus", *END),
    case("monitor-unknown-meter-among-known", "monitor", "--meters", "cpu-estimate,bogus", *END),
    case("monitor-pue-below-one", "monitor", "--pue", "0.5", *END),
    case("monitor-pue-nan", "monitor", "--pue", "nan", *END),
    case("monitor-carbon-negative", "monitor", "--carbon-intensity", "-1", *END),
    case("monitor-carbon-inf", "monitor", "--carbon-intensity-g-per-kwh", "inf", *END),
    case("monitor-unknown-country", "monitor", "--country", "XYZ", *END),
    case(
        "monitor-rapl-without-powercap",
        "monitor",
        "--meters",
        "rapl",
        "--powercap-root",
        "{tmp}/missing",
        *END,
    ),
    case("monitor-command-not-found", "monitor", "--", "{tmp}/no-such-program"),
    case("monitor-command-is-a-folder", "monitor", "--", "{tmp}/dir", build=(folder("dir"),)),
    case(
        "monitor-json-is-a-folder", "monitor", "--json", "{tmp}/dir", *END, build=(folder("dir"),)
    ),
    case(
        "monitor-json-below-a-file",
        "monitor",
        "--json",
        "{tmp}/file/m.json",
        *END,
        build=(text("file", "x"),),
    ),
    # inspect
    case("inspect-unknown-model", "inspect", "resnet19"),
    case("inspect-empty-model-name", "inspect", ""),
    case("inspect-shape-two-dims", "inspect", "small_cnn", "--input", "3x32"),
    case("inspect-shape-negative", "inspect", "small_cnn", "--input", "3x-8x-8"),
    case("inspect-shape-zero-channels", "inspect", "small_cnn", "--input", "0x8x8"),
    case("inspect-shape-not-square", "inspect", "small_cnn", "--input", "3x32x33"),
    case("inspect-shape-not-numbers", "inspect", "small_cnn", "--input", "3xhighxwide"),
    case(
        "inspect-shape-huge",
        "inspect",
        "resnet18",
        "--input",
        "3x100000x100000",
        memory=True,
    ),
    case("inspect-num-classes-zero", "inspect", "small_cnn", "--num-classes", "0"),
    case("inspect-width-zero", "inspect", "small_cnn", "--width", "0"),
    case("inspect-width-nan", "inspect", "small_cnn", "--width", "nan"),
    case(
        "inspect-width-huge",
        "inspect",
        "small_cnn",
        "--input",
        "1x8x8",
        "--width",
        "1e6",
        memory=True,
    ),
    case(
        "inspect-json-is-a-folder",
        "inspect",
        "small_cnn",
        "--input",
        "1x8x8",
        "--json",
        "{tmp}/dir",
        build=(folder("dir"),),
    ),
    # train (a refused run leaves no run folder)
    case("train-unknown-dataset", *TRAIN, "--dataset", "imagenet-nope", absent=("run",)),
    case("train-unknown-model", *TRAIN, "--model", "resnet19", absent=("run",)),
    case("train-empty-model-name", *TRAIN, "--model", "", absent=("run",)),
    case("train-epochs-zero", *TRAIN, "--epochs", "0", absent=("run",)),
    case("train-epochs-negative", *TRAIN, "--epochs", "-3", absent=("run",)),
    case("train-lr-nan", *TRAIN, "--lr", "nan", absent=("run",)),
    case("train-lr-inf", *TRAIN, "--lr", "inf", absent=("run",)),
    case("train-batch-size-fraction", *TRAIN, "--batch-size", "1.5", absent=("run",)),
    case("train-label-smoothing-nan", *TRAIN, "--label-smoothing", "nan", absent=("run",)),
    case("train-label-smoothing-negative", *TRAIN, "--label-smoothing", "-0.1", absent=("run",)),
    case("train-inference-s-nan", *TRAIN, "--inference-s", "nan", absent=("run",)),
    case("train-image-size-zero", *TRAIN, "--image-size", "0", absent=("run",)),
    case("train-width-negative", *TRAIN, "--width", "-1", absent=("run",)),
    case("train-seed-not-a-number", *TRAIN, "--seed", "x", absent=("run",)),
    case("train-gpu-memory-negative", *TRAIN, "--gpu-memory-gib", "-8", absent=("run",)),
    case("train-gpu-power-limit-zero", *TRAIN, "--gpu-power-limit-w", "0", absent=("run",)),
    case(
        "train-gpu-power-limit-on-cpu",
        *(*TRAIN, "--device", "cpu", "--gpu-power-limit-w", "200"),
        absent=("run",),
    ),
    case("train-device-malformed-cuda", *TRAIN, "--device", "cuda:abc", absent=("run",)),
    case("train-pue-below-one", *TRAIN, "--pue", "0.5", absent=("run",)),
    case(
        "train-out-is-a-file",
        "train",
        "--epochs",
        "1",
        "--out",
        "{tmp}/file",
        build=(text("file", "x"),),
    ),
    case(
        "train-weights-file-missing",
        *TRAIN,
        "--weights",
        "{tmp}/missing.pt",
        absent=("run",),
    ),
    case(
        "train-dataset-files-missing",
        *TRAIN,
        "--dataset",
        "cifar10",
        "--data-root",
        "{tmp}/empty",
        build=(folder("empty"),),
        absent=("run",),
    ),
    case(
        "train-data-root-is-a-file",
        *TRAIN,
        "--dataset",
        "cifar10",
        "--data-root",
        "{tmp}/file",
        build=(text("file", "x"),),
        absent=("run",),
    ),
    # optimize: checkpoints
    case("optimize-checkpoint-missing", *OPT_MISSING, "prune:structured:0.5"),
    case("optimize-profile-with-search", *OPT_MISSING[:3], "--search", "--profile"),
    case(
        "optimize-checkpoint-folder-without-file",
        *OPT,
        build=(folder("run"),),
        stored=("run",),
    ),
    case("optimize-checkpoint-empty-file", *OPT, build=(raw("run/checkpoint.pt", b""),)),
    case(
        "optimize-checkpoint-text-file",
        *OPT,
        build=(text("run/checkpoint.pt", "not a checkpoint\n"),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-truncated",
        "optimize",
        "--checkpoint",
        "{tmp}/cut.pt",
        "--recipe",
        "prune:structured:0.5",
        build=(checkpoint(), truncated("run/checkpoint.pt", "cut.pt")),
        stored=("run", "cut.pt"),
    ),
    case(
        "optimize-checkpoint-format-tag-only",
        *OPT,
        build=(
            checkpoint(model=None, state_dict=None, train_config=None, dataset=None, result=None),
        ),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-without-result",
        *OPT,
        build=(checkpoint(result=None),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-result-not-a-mapping",
        *OPT,
        build=(checkpoint(result=[1, 2]),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-without-dataset-name",
        *OPT,
        build=(checkpoint(dataset={"info": {}}),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-wrong-format-tag",
        *OPT,
        build=(checkpoint(format="other-tool/1"),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-not-a-dict",
        *OPT,
        build=(torch_file("run/checkpoint.pt", [1, 2, 3]),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-pickled-object",
        *OPT,
        build=(torch_file("run/checkpoint.pt", argparse.Namespace(x=1)),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-unknown-model",
        *OPT,
        build=(checkpoint(model=MODEL_SPEC | {"name": "resnet19"}),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-unknown-dataset",
        *OPT,
        build=(checkpoint(dataset={"name": "imagenet-nope", "info": {}}),),
        stored=("run",),
    ),
    case(
        "optimize-checkpoint-weights-do-not-fit",
        *OPT,
        build=(checkpoint(state_dict_classes=3),),
        stored=("run",),
    ),
    # optimize: recipes and numbers
    case("optimize-recipe-unknown-step", *OPT_MISSING, "sharpen"),
    case("optimize-recipe-ratio-above-one", *OPT_MISSING, "prune:structured:1.5"),
    case("optimize-recipe-ratio-nan", *OPT_MISSING, "prune:structured:nan"),
    case("optimize-recipe-empty", *OPT_MISSING, ""),
    case("optimize-recipe-dangling-comma", *OPT_MISSING, "prune:structured:0.5,"),
    case(
        "optimize-recipe-yaml-invalid",
        *OPT_MISSING,
        "{tmp}/r.yaml",
        build=(text("r.yaml", "steps: [prune\n"),),
    ),
    case(
        "optimize-recipe-yaml-not-a-list",
        *OPT_MISSING,
        "{tmp}/r.yaml",
        build=(text("r.yaml", "steps: 3\n"),),
    ),
    case(
        "optimize-recipe-yaml-unknown-option",
        *OPT_MISSING,
        "{tmp}/r.yaml",
        build=(text("r.yaml", "- {step: prune:structured, ratio: 0.5, colour: blue}\n"),),
    ),
    case("optimize-recipe-yaml-missing", *OPT_MISSING, "{tmp}/missing.yaml"),
    case(
        "optimize-recipe-yaml-is-a-folder",
        *OPT_MISSING,
        "{tmp}/dir.yaml",
        build=(folder("dir.yaml"),),
    ),
    case(
        "optimize-recipe-fifo",
        *OPT_MISSING,
        "{tmp}/r.yaml",
        build=(fifo("r.yaml"),),
        isolated=True,
        fifo="r.yaml",
    ),
    case("optimize-rounds-zero", *OPT, "--rounds", "0", build=RUN, stored=("run",)),
    case("optimize-finetune-lr-nan", *OPT, "--finetune-lr", "nan", build=RUN, stored=("run",)),
    case(
        "optimize-finetune-epochs-negative",
        *OPT,
        "--finetune-epochs",
        "-1",
        build=RUN,
        stored=("run",),
    ),
    case(
        "optimize-target-half-width-inf",
        *OPT,
        "--target-half-width",
        "inf",
        build=RUN,
        stored=("run",),
    ),
    case(
        "optimize-device-unknown",
        *OPT,
        "--device",
        "tpu",
        build=RUN,
        stored=("run",),
    ),
    case("optimize-pue-below-one", *OPT, "--pue", "0.5", build=RUN, stored=("run",)),
    case(
        "optimize-out-is-a-file",
        *OPT,
        "--out",
        "{tmp}/file",
        build=(*RUN, text("file", "x")),
        stored=("run",),
    ),
    # sweep: the study file
    case("sweep-missing-file", "sweep", "{tmp}/missing.yaml"),
    case(
        "sweep-mlflow-bad-uri",
        *("sweep", "{tmp}/s.yaml", "--mlflow", "ftp://h/x"),
        build=STUDY,
        absent=NO_SWEEP,
    ),
    case(
        "sweep-tracking-bad-uri",
        *("sweep", "{tmp}/s.yaml"),
        build=(study(extra="tracking: {mlflow: {uri: mlruns}}\n"),),
        absent=NO_SWEEP,
    ),
    case("sweep-study-is-a-folder", "sweep", "{tmp}"),
    case(
        "sweep-study-fifo",
        "sweep",
        "{tmp}/s.yaml",
        build=(fifo("s.yaml"),),
        isolated=True,
        fifo="s.yaml",
    ),
    case("sweep-empty-file", "sweep", "{tmp}/s.yaml", build=(text("s.yaml", ""),)),
    case(
        "sweep-not-utf8",
        "sweep",
        "{tmp}/s.yaml",
        build=(raw("s.yaml", b"name: \xff\xfe\x00s\n"),),
    ),
    case(
        "sweep-yaml-syntax-error",
        "sweep",
        "{tmp}/s.yaml",
        build=(text("s.yaml", "name: [unclosed\n"),),
    ),
    case("sweep-yaml-is-a-list", "sweep", "{tmp}/s.yaml", build=(text("s.yaml", "- a\n- b\n"),)),
    case(
        "sweep-yaml-duplicate-key",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(extra="epochs: [2]\n"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-yaml-python-tag",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(extra='seed: !!python/object/apply:os.system ["echo hi"]\n'),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-unreadable-file",
        "sweep",
        "{tmp}/s.yaml",
        build=(*STUDY, chmod("s.yaml", 0)),
        non_root=True,
    ),
    # sweep: keys, types, numbers, names, grammar
    case(
        "sweep-unknown-key",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(extra="colour: blue\n"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-unknown-train-key",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(extra="train: {colour: blue}\n"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-unknown-dataset",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(datasets="[imagenet-nope]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-unknown-model",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(models="[resnet19]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-recipe-unknown-method",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(techniques='["prune:magic:0.5"]'),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-recipe-ratio-above-one",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(techniques='["prune:structured:1.5"]'),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-recipe-empty-step",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(techniques='["prune:structured:0.5,,quantize:int8"]'),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-batch-size-not-a-number",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(batch_sizes="[big]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-batch-size-huge",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(batch_sizes="[100000000000000000000000]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-epochs-zero",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(epochs="[0]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-epochs-inf",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(epochs="[.inf]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-lr-negative",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(learning_rates="[-0.1]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-lr-nan",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(learning_rates="[.nan]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-seeds-empty",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(seeds="[]"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-sample-hz-zero",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(extra="measurement: {sample_hz: 0}\n"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-read-timeout-negative",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(extra="measurement: {read_timeout_s: -1}\n"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-optuna-without-n-trials",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(extra="search: {kind: optuna}\n"),),
        absent=NO_SWEEP,
    ),
    case(
        "sweep-name-with-space",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(name='"my study"'),),
        absent=("results/my study",),
    ),
    case(
        "sweep-name-dot-dot",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(name='".."'),),
        absent=("study.yaml", "results.sqlite"),
    ),
    case("sweep-name-empty", "sweep", "{tmp}/s.yaml", build=(study(name='""'),)),
    # sweep: where the results go
    case(
        "sweep-out-is-a-file",
        "sweep",
        "{tmp}/s.yaml",
        "--out",
        "{tmp}/file",
        build=(*STUDY, text("file", "x")),
    ),
    case(
        "sweep-out-below-a-file",
        "sweep",
        "{tmp}/s.yaml",
        "--out",
        "{tmp}/file/s",
        build=(*STUDY, text("file", "x")),
    ),
    case(
        "sweep-out-of-another-study",
        "sweep",
        "{tmp}/s.yaml",
        "--out",
        "{tmp}/study",
        build=(*STUDY, *STORE),
        stored=("study",),
    ),
    case(
        "sweep-output-dir-holds-another-study",
        "sweep",
        "{tmp}/s.yaml",
        build=(study(output_dir="{tmp}/results"), study_folder("results/s", study_name="other")),
        stored=("results/s",),
    ),
    case(
        "sweep-output-dir-read-only",
        "sweep",
        "{tmp}/s.yaml",
        build=(*STUDY, folder("results", 0o500)),
        non_root=True,
    ),
    case(
        "sweep-address-without-ray", "sweep", "{tmp}/s.yaml", "--address", "ray://x:1", build=STUDY
    ),
    case("sweep-unknown-executor", "sweep", "{tmp}/s.yaml", "--executor", "pbs", build=STUDY),
    case(
        "sweep-slurm-without-sbatch",
        "sweep",
        "{tmp}/s.yaml",
        "--executor",
        "slurm",
        build=STUDY,
        absent=NO_SWEEP,
        marks=pytest.mark.skipif(shutil.which("sbatch") is not None, reason="SLURM is here"),
    ),
    # compare
    case("compare-missing", "compare", "{tmp}/a.json", "{tmp}/b.json"),
    case(
        "compare-garbage",
        "compare",
        "{tmp}/a.json",
        "{tmp}/a.json",
        build=(text("a.json", "{not json"),),
    ),
    case(
        "compare-a-folder-without-store",
        "compare",
        "{tmp}/dir",
        "{tmp}/dir",
        build=(folder("dir"),),
    ),
    case(
        "compare-a-fifo",
        "compare",
        "{tmp}/f",
        "{tmp}/f",
        build=(fifo("f"),),
        isolated=True,
        fifo="f",
    ),
    case(
        "compare-unknown-metric",
        "compare",
        "{tmp}/a.json",
        "{tmp}/a.json",
        "--metric",
        "watts",
        build=(text("a.json", "{}"),),
    ),
    # results
    case("results-missing", "results", "{tmp}/missing"),
    case("results-folder-without-store", "results", "{tmp}/dir", build=(folder("dir"),)),
    case(
        "results-store-is-a-folder",
        "results",
        "{tmp}/dir",
        build=(folder("dir/results.sqlite"),),
    ),
    case(
        "results-empty-file",
        "results",
        "{tmp}/r.sqlite",
        build=(raw("r.sqlite", b""),),
        stored=("r.sqlite",),
    ),
    case(
        "results-text-file",
        "results",
        "{tmp}/r.sqlite",
        build=(text("r.sqlite", "trial,accuracy\n1,0.9\n"),),
        stored=("r.sqlite",),
    ),
    case(
        "results-foreign-sqlite",
        "results",
        "{tmp}/music.sqlite",
        build=(foreign_sqlite("music.sqlite"),),
        stored=("music.sqlite",),
    ),
    case(
        "results-foreign-sqlite-with-trials-and-meta",
        "results",
        "{tmp}/other.sqlite",
        build=(
            foreign_sqlite(
                "other.sqlite",
                "CREATE TABLE trials (id INTEGER, name TEXT)",
                "CREATE TABLE meta (k TEXT, v TEXT)",
                "INSERT INTO trials VALUES (1, 'x')",
            ),
        ),
        stored=("other.sqlite",),
    ),
    case(
        "results-truncated-store",
        "results",
        "{tmp}/cut.sqlite",
        build=(*STORE, truncated("study/results.sqlite", "cut.sqlite", 0.3)),
        stored=("cut.sqlite", "study"),
    ),
    case(
        "results-fifo",
        "results",
        "{tmp}/r.sqlite",
        build=(fifo("r.sqlite"),),
        isolated=True,
        fifo="r.sqlite",
    ),
    case("results-unknown-status", "results", "{tmp}/study", "--status", "done", build=STORE),
    case(
        "results-bad-technique",
        "results",
        "{tmp}/study",
        "--technique",
        "prune:magic:0.5",
        build=STORE,
        stored=("study",),
    ),
    case(
        "results-csv-is-a-folder",
        "results",
        "{tmp}/study",
        "--csv",
        "{tmp}/dir",
        build=(*STORE, folder("dir")),
        stored=("study",),
    ),
    case(
        "results-parquet-below-a-file",
        "results",
        "{tmp}/study",
        "--parquet",
        "{tmp}/file/x.parquet",
        build=(*STORE, text("file", "x")),
        stored=("study",),
    ),
    case(
        "results-csv-disk-full",
        "results",
        "{tmp}/study",
        "--csv",
        "{tmp}/x.csv",
        build=STORE,
        stored=("study",),
        disk_full=True,
        absent=("x.csv",),
    ),
    case(
        "results-unreadable-store",
        "results",
        "{tmp}/study",
        build=(*STORE, chmod("study/results.sqlite", 0)),
        non_root=True,
    ),
    # report
    case("report-missing", "report", "{tmp}/missing"),
    case("report-folder-without-store", "report", "{tmp}/dir", build=(folder("dir"),)),
    case(
        "report-empty-file",
        "report",
        "{tmp}/r.sqlite",
        build=(raw("r.sqlite", b""),),
        stored=("r.sqlite",),
    ),
    case(
        "report-text-file",
        "report",
        "{tmp}/r.sqlite",
        build=(text("r.sqlite", "not a database\n"),),
        stored=("r.sqlite",),
    ),
    case(
        "report-foreign-sqlite",
        "report",
        "{tmp}/music.sqlite",
        build=(foreign_sqlite("music.sqlite"),),
        stored=("music.sqlite",),
        absent=("report",),
    ),
    case(
        "report-fifo",
        "report",
        "{tmp}/r.sqlite",
        build=(fifo("r.sqlite"),),
        isolated=True,
        fifo="r.sqlite",
    ),
    case("report-floor-negative", "report", "{tmp}/study", "--floor", "-1", build=STORE),
    case("report-floor-nan", "report", "{tmp}/study", "--floor", "nan", build=STORE),
    case("report-by-unknown", "report", "{tmp}/study", "--by", "carbon", build=STORE),
    case("report-latex-takes-no-value", "report", "{tmp}/study", "--latex=yes", build=STORE),
    case(
        "report-out-is-a-file",
        "report",
        "{tmp}/study",
        "--out",
        "{tmp}/file",
        build=(*STORE, text("file", "x")),
        stored=("study",),
    ),
    # demo (a study like any other: its folder is checked the same way)
    case("demo-out-is-a-file", "demo", "--out", "{tmp}/file", build=(text("file", "x"),)),
    case("demo-out-below-a-file", "demo", "--out", "{tmp}/file/d", build=(text("file", "x"),)),
    case(
        "demo-out-of-another-study",
        "demo",
        "--out",
        "{tmp}/study",
        build=STORE,
        stored=("study",),
    ),
]


# --- running a case -------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` (relative path -> bytes); FIFOs and unreadable files
    (by mode) are left out: reading them could block or fail."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and (IS_ROOT or info.st_mode & stat.S_IRUSR):
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _restore_modes(root: Path) -> None:
    """Gives back the permissions a case took away, so that pytest can remove ``tmp_path``."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink() and not stat.S_ISFIFO(path.lstat().st_mode):
            path.chmod(0o700 if path.is_dir() else 0o600)


@pytest.fixture(autouse=True)
def _tripwires(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No case trains, runs a recipe or measures a model: getting there is a failure."""
    import wattwise.experiment.runner as runner
    import wattwise.optimize.recipe as recipe

    def reached(what: str) -> Callable[..., object]:
        def trip(*args: object, **kwargs: object) -> object:
            raise ReachedWork(f"the bad input was not refused: {what} started")

        return trip

    monkeypatch.setattr(runner, "fit", reached("training"))
    monkeypatch.setattr(runner, "_distill", reached("distillation"))
    monkeypatch.setattr(recipe, "run_recipe", reached("the recipe"))
    monkeypatch.setenv("COLUMNS", "200")
    for name in WATTWISE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # default outputs (runs/, results/demo) stay in tmp_path


@dataclass
class Outcome:
    """What a case did: its exit code and output, and the files of its folder before and after
    (``failure``: why it did not even get that far)."""

    folder: Path
    code: int = 0
    out: str = ""
    err: str = ""
    before: dict[str, bytes] = field(default_factory=dict)
    after: dict[str, bytes] = field(default_factory=dict)
    failure: str | None = None


def _run(case: Case, folder: Path, run: Callable[[list[str]], Outcome]) -> Outcome:
    """Builds the case's files in ``folder``, runs it, and snapshots the folder around it."""
    for build in case.build:
        build(folder)
    argv = [a.replace("{tmp}", str(folder)) for a in case.argv]
    before = _snapshot(folder)
    try:
        outcome = run(argv)
        outcome.before, outcome.after = before, _snapshot(folder)
    finally:
        _restore_modes(folder)
    return outcome


def _in_process(
    folder: Path,
    case: Case,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[list[str]], Outcome]:
    def run(argv: list[str]) -> Outcome:
        if case.disk_full:

            def full(fd: int) -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(os, "fsync", full)
        failure = None
        try:
            with _memory_limited(case.memory):
                code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except ReachedWork as err:
            code, failure = 0, str(err)
        except Exception as err:  # what the command line shows as a traceback
            why = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            code, failure = 1, f"an exception escaped main() (a traceback): {why}"
        out, err = capsys.readouterr()
        return Outcome(folder, code, out, err, failure=failure)

    return run


@contextlib.contextmanager
def _memory_limited(on: bool) -> Iterator[None]:
    """The address space limited to :data:`MEMORY_HEADROOM_BYTES` above its size now: a huge
    allocation fails at once instead of filling the machine's memory."""
    if not on:
        yield
        return
    status = Path("/proc/self/status").read_text(encoding="ascii")
    (size_kb,) = (
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmSize:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size_kb * 1024 + MEMORY_HEADROOM_BYTES
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _in_subprocess(folder: Path, case: Case) -> Callable[[list[str]], Outcome]:
    """``python -m wattwise ARGV`` in ``folder``; with a FIFO, a process that holds it open for
    :data:`FIFO_WAIT_S` without finishing is waiting for a writer: a failure."""

    def run(argv: list[str]) -> Outcome:
        env = {k: v for k, v in os.environ.items() if k not in WATTWISE_ENV}
        proc = subprocess.Popen(
            [sys.executable, "-m", "wattwise", *argv],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env | {"COLUMNS": "200", "OMP_NUM_THREADS": "1"},
        )
        writer: int | None = None
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if case.fifo is not None and writer is None:
                    try:  # succeeds only while a reader has the FIFO open
                        writer = os.open(folder / case.fifo, os.O_WRONLY | os.O_NONBLOCK)
                        deadline = min(deadline, time.monotonic() + FIFO_WAIT_S)
                    except OSError:
                        pass
                time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                out, err = proc.communicate()
                why = "waited on the FIFO for a writer" if writer is not None else "hung"
                return Outcome(folder, -9, out, err, failure=f"{why} (killed)")
            out, err = proc.communicate()
        finally:
            if writer is not None:
                os.close(writer)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return Outcome(folder, proc.returncode, out, err)

    return run


@pytest.fixture(scope="module")
def isolated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Outcome]]]:
    """The selected isolated cases, all started in the background when the module's first
    test begins: each subprocess spends seconds importing torch, which then overlaps with the
    in-process cases instead of adding up."""
    cases = {
        item.callspec.id: item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module
        and hasattr(item, "callspec")
        and isinstance(item.callspec.params.get("case"), Case)
        and item.callspec.params["case"].isolated
    }
    with ThreadPoolExecutor(max_workers=max(1, len(cases))) as pool:
        futures = {}
        for case_id, case in cases.items():
            folder = tmp_path_factory.mktemp("isolated")
            futures[case_id] = pool.submit(_run, case, folder, _in_subprocess(folder, case))
        yield futures


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_one_line_exit_2_and_changes_nothing(
    case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    isolated: dict[str, Future[Outcome]],
) -> None:
    if case.non_root and IS_ROOT:
        pytest.skip(ROOT_REASON)
    if case.isolated:
        outcome = isolated[request.node.callspec.id].result(timeout=2 * SUBPROCESS_TIMEOUT_S)
    else:
        outcome = _run(case, tmp_path, _in_process(tmp_path, case, capsys, monkeypatch))
    code, out, err = outcome.code, outcome.out, outcome.err
    if outcome.failure is not None:
        pytest.fail(f"{outcome.failure}; exit {code}; stderr: {err.strip()[-2000:]}")
    lines = err.strip().splitlines()
    assert "Traceback" not in out + err, err
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("wattwise: error: "), err
    before, after = outcome.before, outcome.after
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"changed or removed: {changed}"
    appeared = sorted(
        p for p in after if p not in before and any(_under(p, s) for s in case.stored)
    )
    assert not appeared, f"new files in what was stored: {appeared}"
    left = [p for p in case.absent if (outcome.folder / p).exists()]
    assert not left, f"left behind: {left}"


def test_the_catalogue_covers_every_command() -> None:
    """At least 60 cases, and each command of ``wattwise --help`` has some."""
    from wattwise.cli import build_parser

    commands = {
        name
        for action in build_parser()._subparsers._group_actions  # type: ignore[union-attr]
        for name in getattr(action, "choices", {}) or {}
    }
    covered = {p.values[0].argv[0] for p in CASES if p.values[0].argv}
    assert len(CASES) >= 60
    assert commands <= covered, commands - covered
    assert len({p.id for p in CASES}) == len(CASES)
