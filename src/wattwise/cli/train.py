"""``wattwise train``: train a model, measuring every epoch (``optimize``:
:mod:`wattwise.cli.optimize`).

Flags are named after the :class:`~wattwise.train.config.TrainConfig` field, run setting or
:class:`~wattwise.optimize.recipe.RecipeSettings` field they set (dashes for underscores);
older spellings stay as aliases (``--threads``, ``--early-stopping``, ``--inference-seconds``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from wattwise.cli._base import (
    add_meter_options,
    in_cli_words,
    positive_float,
    positive_int,
    third_party_log,
)
from wattwise.errors import ConfigError


def register(subparsers: Any) -> None:
    """Adds ``train`` to ``subparsers``."""
    p = subparsers.add_parser("train", help="train a model on a dataset, measuring every epoch")
    _add_train_options(p)
    add_meter_options(p)
    p.add_help_note("datasets (--dataset)", _dataset_names)
    p.add_help_note("models (--model)", _model_names)
    p.set_defaults(func=in_cli_words(cmd_train))


def _dataset_names() -> str:
    from wattwise.data import list_datasets

    return ", ".join(list_datasets())


def _model_names() -> str:
    from wattwise.models import list_models

    return ", ".join(list_models())


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and model")
    g.add_argument(
        "--dataset",
        default="digits",
        metavar="NAME",
        help="the dataset, one of those listed below (default %(default)s: embedded, offline)",
    )
    g.add_argument(
        "--model",
        default="small_cnn",
        metavar="NAME",
        help="the model, one of those listed below (default %(default)s)",
    )
    g.add_argument("--data-root", help="data folder (default $WATTWISE_DATA)")
    g.add_argument(
        "--image-size",
        type=positive_int("--image-size"),
        metavar="PIXELS",
        help="side of the square images (default: the dataset's own)",
    )
    g.add_argument(
        "--width",
        type=positive_float("--width"),
        default=1.0,
        help="channel multiplier of the model (default %(default)s: the published one)",
    )
    g.add_argument(
        "--weights",
        help="torchvision weights name (DEFAULT, IMAGENET1K_V1...) or a local state_dict file "
        "(default: random initialization)",
    )
    g.add_argument("--download", action="store_true", help="fetch missing dataset files")
    t = p.add_argument_group("training")
    t.add_argument(
        "--epochs",
        type=positive_int("--epochs"),
        default=5,
        help="passes over the training split (default %(default)s)",
    )
    t.add_argument(
        "--batch-size",
        type=positive_int("--batch-size"),
        default=64,
        help="images per training batch (default %(default)s)",
    )
    t.add_argument(
        "--lr",
        type=positive_float("--lr"),
        default=0.01,
        help="peak learning rate (default %(default)s)",
    )
    t.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default="sgd",
        help="sgd (Nesterov momentum 0.9) or adam (default %(default)s)",
    )
    t.add_argument(
        "--schedule",
        choices=("cosine", "none"),
        default="cosine",
        help="cosine: the learning rate anneals to 0 over all steps; none: constant "
        "(default %(default)s)",
    )
    t.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="cross-entropy label smoothing in [0, 1) (default %(default)s)",
    )
    t.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="fp32, or autocast to bf16 (CPU and GPU) or fp16 (GPU) (default %(default)s)",
    )
    t.add_argument(
        "--channels-last",
        action="store_true",
        help="run the model and inputs in channels-last memory format",
    )
    t.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random crop (and flip) while training (default: on)",
    )
    t.add_argument(
        "--hflip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --augment, also flip images left-right (default: on)",
    )
    t.add_argument(
        "--early-stopping-patience",
        "--early-stopping",
        dest="early_stopping_patience",
        type=positive_int("--early-stopping-patience"),
        metavar="EPOCHS",
        help="stop after this many epochs without a better validation accuracy (default: never)",
    )
    t.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds initialization, shuffling and augmentation (default %(default)s)",
    )
    t.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available), cpu, cuda or cuda:N (default %(default)s)",
    )
    t.add_argument(
        "--gpu-memory-gib",
        "--gpu-memory-gb",  # the previous name, still typed
        dest="gpu_memory_gib",
        type=positive_float("--gpu-memory-gib"),
        metavar="GIB",
        help="cap this process's GPU memory (GiB = 2**30 bytes; default: no cap)",
    )
    t.add_argument(
        "--gpu-power-limit-w",
        dest="gpu_power_limit_w",
        type=positive_float("--gpu-power-limit-w"),
        metavar="WATTS",
        help="hold the GPU's power limit at WATTS for the run, restored on every exit (needs "
        "the privilege to set it; default: unchanged)",
    )
    t.add_argument(
        "--num-threads",
        "--threads",
        dest="num_threads",
        type=positive_int("--num-threads"),
        help="PyTorch CPU threads (default: PyTorch's)",
    )
    t.add_argument(
        "--inference-s",
        "--inference-seconds",
        dest="inference_s",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="length of the inference measurement (default %(default)s; 0 skips it)",
    )
    t.add_argument(
        "--profile",
        action="store_true",
        help="profile operators with torch.profiler (a few training steps, then inference "
        "batches): top operators with FLOPs, time, memory and estimated energy shares; the "
        "profiled steps run slower",
    )
    p.add_argument("--out", help="folder for the run (default: runs/<time>-<dataset>-<model>)")


def _trial_spec(args: argparse.Namespace) -> Any:
    """The one-trial spec ``wattwise train`` runs (technique ``baseline``)."""
    from wattwise.cli._base import measurement_from_args
    from wattwise.experiment.spec import TrialSpec
    from wattwise.train.config import TrainConfig

    train = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        label_smoothing=args.label_smoothing,
        precision=args.precision,
        channels_last=args.channels_last,
        augment=args.augment,
        hflip=args.hflip,
        early_stopping_patience=args.early_stopping_patience,
        seed=args.seed,
        device=args.device,
        gpu_memory_gib=args.gpu_memory_gib,
        gpu_power_limit_w=args.gpu_power_limit_w,
        num_threads=args.num_threads,
    )
    return TrialSpec(
        study="train",
        dataset=args.dataset.strip().lower(),
        model=args.model.strip(),
        technique="baseline",
        train=train,
        measurement=measurement_from_args(args, inference_s=args.inference_s, profile=args.profile),
        image_size=args.image_size,
        width=args.width,
        weights=args.weights,
        val_fraction=0.1,
        data_root=args.data_root,
        download=args.download,
    )


def _run_dir(spec: Any) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = f"{spec.dataset}-{spec.model}".replace(":", "_").replace("/", "_")
    return Path("runs") / f"{stamp}-{slug}"


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.progress import TrainBar
    from wattwise.cli.render import epoch_table, measurement_table, print_rows, summary_rows
    from wattwise.cli.render_profiles import print_profiles
    from wattwise.energy.base import Measurement
    from wattwise.experiment.runner import train_and_save

    spec = _trial_spec(args)
    out = Path(args.out) if args.out else _run_dir(spec)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    console = Console()
    console.print(
        f"[bold]training[/bold]: {spec.model} on {spec.dataset}, {spec.epochs} epochs, "
        f"batch {spec.batch_size}, lr {spec.lr:g}"
    )
    records: list[Any] = []
    bar = TrainBar(console)

    def on_epoch(record: Any) -> None:
        records.append(record)
        console.print(epoch_table([record], header=len(records) == 1, width=console.width))
        bar.on_record(record)  # the predicted total, after each of the first epochs

    with third_party_log(out):
        record = train_and_save(spec, out, on_epoch=on_epoch, progress=bar)
    train = record.phases.get("train")
    if train is not None:
        console.print(measurement_table(Measurement.from_dict(train)))
    print_rows(console, "summary", summary_rows(record))
    print_profiles(console, record.profiles)
    console.print(f"run saved to {out}")
    return 0 if record.status == "ok" else 1
