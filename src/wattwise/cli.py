"""Command-line interface: a thin layer over the library.

Every :class:`~wattwise.errors.WattwiseError` (and every bad flag) becomes one line on stderr and
exit code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from wattwise import __version__
from wattwise.errors import ConfigError, WattwiseError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"wattwise: error: {message} (see '{self.prog} --help')\n")


def _positive_float(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be a positive number, got {text!r}")
        return value

    return parse


def _positive_int(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be at least 1, got {text!r}")
        return value

    return parse


def _add_meter_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measuring")
    g.add_argument(
        "--meters",
        default="auto",
        help="comma-separated meters (rapl, nvml, nvidia-smi, cpu-estimate, dram-estimate); "
        "'auto' picks the best available per component (default)",
    )
    g.add_argument(
        "--interval",
        type=_positive_float("--interval"),
        default=0.1,
        metavar="SECONDS",
        help="sampling interval of the background sampler (default 0.1 = 10 Hz)",
    )
    g.add_argument("--powercap-root", help="RAPL sysfs root (default /sys/class/powercap)")
    g.add_argument(
        "--cpu-tdp-w",
        type=_positive_float("--cpu-tdp-w"),
        help="TDP of one CPU package in watts, for the CPU estimate",
    )
    g.add_argument(
        "--cpu-threads",
        type=_positive_int("--cpu-threads"),
        help="hardware threads sharing that TDP (default: from the TDP table or this machine)",
    )
    g.add_argument("--country", help="ISO 3166-1 alpha-3 code for the grid's carbon intensity")
    g.add_argument(
        "--carbon-intensity",
        type=float,
        metavar="G_PER_KWH",
        help="grid carbon intensity in g CO2e per kWh (overrides --country)",
    )
    g.add_argument("--pue", type=float, default=1.0, help="data-centre PUE (default 1.0)")


def _meter_settings(args: argparse.Namespace) -> Any:
    from wattwise.energy.meters import MeterSettings

    return MeterSettings(
        powercap_root=args.powercap_root,
        cpu_tdp_w=args.cpu_tdp_w,
        cpu_threads=args.cpu_threads,
    )


def monitor_config_from_args(args: argparse.Namespace) -> Any:
    """Build a MonitorConfig from the measuring options."""
    from wattwise.energy.carbon import CarbonConfig
    from wattwise.energy.monitor import MonitorConfig

    if args.interval < 0.001 or args.interval > 10:
        raise ConfigError(f"--interval must be between 0.001 and 10 s, got {args.interval}")
    return MonitorConfig(
        meters=args.meters,
        sample_hz=1.0 / args.interval,
        carbon=CarbonConfig(args.carbon_intensity, args.country, args.pue),
        meter_settings=_meter_settings(args),
    )


def _write_json(path: str, data: Any) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise WattwiseError(f"cannot write {target}: {err.strerror or err}") from err


# --- devices --------------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.console import devices_table, fmt_bytes, print_rows
    from wattwise.energy.devices import describe_devices

    info = describe_devices(_meter_settings(args))
    if args.json:
        _write_json(args.json, info)
    console = Console()
    machine, power = info["machine"], info["cpu_power_model"]
    print_rows(
        console,
        "machine",
        [
            ("CPU model", machine["cpu_model"]),
            ("logical CPUs / cores", f"{machine['logical_cpus']} / {machine['physical_cores']}"),
            ("memory", fmt_bytes(machine["memory_bytes"])),
            ("CPU estimate", power["description"]),
            ("TDP source", power["source"]),
            ("powercap root", info["powercap_root"]),
        ],
    )
    console.print(devices_table(info))
    for gpu in info["gpus"]:
        console.print(
            f"{gpu['component']}: {gpu['name']} (NVML index {gpu['nvml_index']}, {gpu['uuid']}), "
            f"energy counter: {'yes' if gpu['energy_counter'] else 'no'}"
        )
    return 0


# --- monitor --------------------------------------------------------------------------------
def cmd_monitor(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.console import measurement_table
    from wattwise.energy.monitor import EnergyMonitor

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError("no command to run: wattwise monitor [options] -- COMMAND [ARGS...]")
    config = monitor_config_from_args(args)
    if args.json:  # fail before running the command, not after
        _check_writable(args.json)
    monitor = EnergyMonitor(config)
    name = args.name or " ".join(command)[:60]
    interrupted = False
    try:
        monitor.begin_window(name)
        try:
            proc = subprocess.Popen(command)
        except FileNotFoundError:
            monitor.end_window(name)
            raise ConfigError(f"command not found: {command[0]}") from None
        except PermissionError:
            monitor.end_window(name)
            raise ConfigError(f"command is not executable: {command[0]}") from None
        except OSError as err:  # e.g. a script without a #! line: Exec format error
            monitor.end_window(name)
            raise ConfigError(f"cannot run {command[0]}: {err.strerror or err}") from None
        monitor.tree.refresh_children()  # count the child from its first sample on
        # Like `time`: the child gets the terminal's Ctrl-C; we wait for it, then report.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        forward = signal.signal(signal.SIGTERM, lambda s, f: proc.send_signal(s))
        try:
            returncode = proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, forward)
        interrupted = returncode in (-signal.SIGINT, 130)
        measurement = monitor.end_window(name)
    finally:
        monitor.close()
    exit_code = 128 - returncode if returncode < 0 else returncode
    console = Console(stderr=True)
    console.print(measurement_table(measurement))
    if returncode != 0:
        how = "was interrupted" if interrupted else f"exited with code {exit_code}"
        console.print(f"[yellow]the command {how}[/yellow]")
    if args.json:
        data = measurement.to_dict(timeline=not args.no_timeline)
        data["command"] = command
        data["exit_code"] = exit_code
        _write_json(args.json, data)
        console.print(f"measurement written to {args.json}")
    return exit_code


def _check_writable(path: str) -> None:
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ConfigError(f"--json {path} is a directory")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--json {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--json {path}: {probe} is not writable")


# --- train / demo / inspect ------------------------------------------------------------------
def _add_train_options(p: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default=defaults.get("dataset", "digits"))
    g.add_argument("--model", default=defaults.get("model", "small_cnn"))
    g.add_argument("--data-root", help="data folder (default $WATTWISE_DATA)")
    g.add_argument("--image-size", type=_positive_int("--image-size"))
    g.add_argument("--width", type=_positive_float("--width"), default=1.0)
    g.add_argument("--weights", help="torchvision weights name or a local state_dict file")
    g.add_argument("--download", action="store_true", help="fetch missing dataset files")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=_positive_int("--epochs"), default=defaults.get("epochs", 5))
    t.add_argument(
        "--batch-size", type=_positive_int("--batch-size"), default=defaults.get("batch_size", 64)
    )
    t.add_argument("--lr", type=_positive_float("--lr"), default=defaults.get("lr", 0.01))
    t.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    t.add_argument("--schedule", choices=("cosine", "none"), default="cosine")
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    t.add_argument(
        "--no-hflip",
        action="store_true",
        default=defaults.get("no_hflip", False),
        help="augment without horizontal flips",
    )
    t.add_argument("--early-stopping", type=_positive_int("--early-stopping"), metavar="EPOCHS")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--gpu-memory-gb", type=_positive_float("--gpu-memory-gb"))
    t.add_argument("--threads", type=_positive_int("--threads"), help="PyTorch CPU threads")
    t.add_argument(
        "--inference-seconds",
        type=float,
        default=defaults.get("inference_seconds", 3.0),
        help="length of the inference measurement (0 skips it)",
    )
    p.add_argument("--out", help="folder for the run (default: runs/<time>-<dataset>-<model>)")


def _run_spec(args: argparse.Namespace) -> Any:
    from wattwise.train import RunSpec, TrainConfig

    train = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        label_smoothing=args.label_smoothing,
        precision=args.precision,
        channels_last=args.channels_last,
        augment=not args.no_augment,
        hflip=not args.no_hflip,
        early_stopping_patience=args.early_stopping,
        seed=args.seed,
        device=args.device,
        gpu_memory_gb=args.gpu_memory_gb,
        num_threads=args.threads,
    )
    return RunSpec(
        dataset=args.dataset,
        model=args.model,
        data_root=args.data_root,
        image_size=args.image_size,
        width=args.width,
        weights=args.weights,
        download=args.download,
        train=train,
        inference_s=args.inference_seconds,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.console import epoch_table, measurement_table, print_rows, summary_rows
    from wattwise.energy.monitor import EnergyMonitor
    from wattwise.train.run import default_run_dir, train_run

    spec = _run_spec(args)
    out = Path(args.out) if args.out else default_run_dir("runs", spec)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    console = Console()
    console.print(
        f"[bold]training[/bold]: {spec.model} on {spec.dataset}, {spec.train.epochs} epochs, "
        f"batch {spec.train.batch_size}, lr {spec.train.lr:g}"
    )
    records: list[Any] = []

    def on_epoch(record: Any) -> None:
        records.append(record)
        console.print(epoch_table([record], header=len(records) == 1))

    with EnergyMonitor(monitor_config_from_args(args)) as monitor:
        outcome = train_run(spec, out_dir=out, monitor=monitor, on_epoch=on_epoch)
    if outcome.result.fit is not None:
        console.print(measurement_table(outcome.result.fit))
    print_rows(console, "summary", summary_rows(outcome))
    console.print(f"run saved to {outcome.run_dir}")
    return 0 if outcome.result.status == "ok" else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.console import print_rows
    from wattwise.models import create_model, inspect_model, parse_input_shape

    channels, height, width = parse_input_shape(args.input)
    if height != width:
        raise ConfigError(f"--input must be square (CxHxW with H == W), got {args.input}")
    model = create_model(
        args.model,
        num_classes=args.num_classes,
        in_channels=channels,
        input_size=height,
        width=args.width,
    )
    stats = inspect_model(model, (channels, height, width))
    if args.json:
        _write_json(args.json, stats.to_dict())
    print_rows(
        Console(),
        f"{args.model} at {args.input}, {args.num_classes} classes",
        [
            ("parameters", f"{stats.params:,} ({stats.params / 1e6:.2f} M)"),
            ("MACs (multiply-accumulates)", f"{stats.macs:,} ({stats.macs / 1e9:.3f} G)"),
            ("FLOPs (= 2 x MACs)", f"{stats.flops:,} ({stats.flops / 1e9:.3f} G)"),
            ("serialized size", f"{stats.size_bytes:,} bytes"),
        ],
    )
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from wattwise.console import variants_table
    from wattwise.data import load_dataset
    from wattwise.energy.monitor import EnergyMonitor
    from wattwise.optimize.recipe import RecipeSettings, load_recipe_text, run_recipe
    from wattwise.train import load_checkpoint

    recipe = load_recipe_text(args.recipe)
    settings = RecipeSettings(
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        distill_epochs=args.distill_epochs,
        calibration_batches=args.calibration_batches,
        batch_size=args.batch_size,
        inference_s=args.inference_seconds,
        device=args.device,
    )
    checkpoint = load_checkpoint(args.checkpoint)
    info = checkpoint.dataset.get("info", {})
    data = load_dataset(
        checkpoint.dataset["name"],
        args.data_root,
        image_size=info.get("image_size"),
        seed=int(checkpoint.train_config.get("seed", 0)),
    )
    model = checkpoint.build_model()
    console = Console()
    console.print(f"[bold]optimize[/bold] {checkpoint.path}: {recipe}")
    rows: list[Any] = []

    def on_variant(variant: Any) -> None:
        rows.append(variant)
        console.print(
            f"  measured {variant.step}: accuracy {variant.accuracy:.2%}, "
            f"{variant.energy_per_image_j * 1e3:.4g} mJ/image"
        )

    with EnergyMonitor(monitor_config_from_args(args)) as monitor:
        result = run_recipe(
            model,
            data,
            recipe,
            settings=settings,
            model_spec=checkpoint.model_spec,
            monitor=monitor,
            progress=True,
            on_variant=on_variant,
        )
    console.print(variants_table(result.variants))
    for note in dict.fromkeys(n for v in result.variants for n in v.notes):
        console.print(f"note: {note}")
    out = (
        Path(args.out)
        if args.out
        else checkpoint.path.parent / time.strftime("optimize-%Y%m%d-%H%M%S")
    )
    _write_json(str(out / "recipe.json"), result.to_dict())
    console.print(f"results written to {out / 'recipe.json'}")
    return 0


# --- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wattwise",
        description="Energy-aware optimization of neural networks: measure, compress, compare.",
    )
    parser.add_argument("--version", action="version", version=f"wattwise {__version__}")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("devices", help="list every meter, available or not and why")
    p.add_argument("--json", metavar="PATH", help="also write the description as JSON")
    p.add_argument("--powercap-root", help="RAPL sysfs root (default /sys/class/powercap)")
    p.add_argument("--cpu-tdp-w", type=_positive_float("--cpu-tdp-w"))
    p.add_argument("--cpu-threads", type=_positive_int("--cpu-threads"))
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "monitor",
        help="run a command and measure its process tree",
        usage="wattwise monitor [options] -- COMMAND [ARGS...]",
    )
    _add_meter_options(p)
    p.add_argument("--json", metavar="PATH", help="write the measurement as JSON")
    p.add_argument("--no-timeline", action="store_true", help="leave the power timeline out")
    p.add_argument("--name", help="name of the measurement (default: the command)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("train", help="train a model on a dataset, measuring every epoch")
    _add_train_options(p, {})
    _add_meter_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("inspect", help="parameters, MACs, FLOPs and size of a model")
    p.add_argument("model")
    p.add_argument("--input", default="3x224x224", help="CxHxW (default 3x224x224)")
    p.add_argument("--num-classes", type=_positive_int("--num-classes"), default=1000)
    p.add_argument("--width", type=_positive_float("--width"), default=1.0)
    p.add_argument("--json", metavar="PATH")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("optimize", help="apply a compression recipe to a trained run")
    p.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.pt")
    p.add_argument(
        "--recipe",
        required=True,
        help='steps, e.g. "prune:structured:0.5,quantize:int8", or a YAML file listing them',
    )
    p.add_argument("--data-root", help="data folder (default $WATTWISE_DATA)")
    p.add_argument("--finetune-epochs", type=int, default=2, help="after pruning (default 2)")
    p.add_argument("--finetune-lr", type=_positive_float("--finetune-lr"), default=0.01)
    p.add_argument("--distill-epochs", type=_positive_int("--distill-epochs"), default=5)
    p.add_argument("--calibration-batches", type=_positive_int("--calibration-batches"), default=16)
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=64)
    p.add_argument("--inference-seconds", type=_positive_float("--inference-seconds"), default=3.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for recipe.json (default: next to the checkpoint)")
    _add_meter_options(p)
    p.set_defaults(func=cmd_optimize)

    from wattwise.cli_experiment import register, register_demo

    register(sub)  # sweep, results
    register_demo(sub)

    from wattwise.cli_analysis import register as register_report

    register_report(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except WattwiseError as err:
        print(f"wattwise: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wattwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
