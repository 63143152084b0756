"""``wattwise devices``, ``wattwise monitor`` and ``wattwise inspect``: what this machine can
measure, what a command costs, and what a model is."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from wattwise.cli._base import (
    add_device_options,
    add_meter_options,
    check_writable,
    int_at_least,
    meter_settings,
    monitor_config_from_args,
    positive_float,
    positive_int,
    write_json,
)
from wattwise.errors import ConfigError, WattwiseError

MONITOR_USAGE = "wattwise monitor [options] -- COMMAND [ARGS...]"


def register(subparsers: Any) -> None:
    """Adds ``devices``, ``monitor`` and ``inspect`` to ``subparsers``."""
    p = subparsers.add_parser("devices", help="list every meter, available or not and why")
    p.add_argument("--json", metavar="PATH", help="also write the description as JSON")
    add_device_options(p)
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser(
        "monitor", help="run a command and measure its process tree", usage=MONITOR_USAGE
    )
    add_meter_options(p)
    p.add_argument("--json", metavar="PATH", help="write the measurement as JSON")
    p.add_argument("--no-timeline", action="store_true", help="leave the power timeline out")
    p.add_argument("--name", help="name of the measurement (default: the command)")
    p.add_argument(
        "--prometheus-port",
        type=int_at_least("--prometheus-port", 0),
        metavar="PORT",
        help="while the command runs, serve its energy, power and memory for Prometheus at "
        "http://127.0.0.1:PORT/metrics (0: a free port; the URL is printed); needs "
        "pip install 'wattwise[prometheus]'",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    p.set_defaults(func=cmd_monitor)

    p = subparsers.add_parser("inspect", help="parameters, MACs, FLOPs and size of a model")
    p.add_argument("model", help="a model of the registry (listed below)")
    p.add_argument("--input", default="3x224x224", help="CxHxW (default 3x224x224)")
    p.add_argument(
        "--num-classes",
        type=positive_int("--num-classes"),
        default=1000,
        help="classes of the output layer (default %(default)s)",
    )
    p.add_argument(
        "--width",
        type=positive_float("--width"),
        default=1.0,
        help="channel width multiplier (default %(default)s)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_help_note("models", _model_names)
    p.set_defaults(func=cmd_inspect)


def _model_names() -> str:
    from wattwise.models import list_models

    return ", ".join(list_models())


def cmd_devices(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.render import (
        devices_notes,
        devices_table,
        gpu_lines,
        machine_rows,
        print_rows,
    )
    from wattwise.energy.devices import describe_devices

    info = describe_devices(meter_settings(args))
    if args.json:
        write_json(args.json, info)
    console = Console()
    print_rows(console, "machine", machine_rows(info))
    console.print(devices_table(info))
    for note in devices_notes(info):
        console.print(note, highlight=False)
    for line in gpu_lines(info):
        console.print(line)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """Runs the command under an EnergyMonitor; exits with the command's exit code, also when
    the JSON file cannot be written after the command ran (one line says so)."""
    from rich.console import Console

    from wattwise.cli.render import command_status, measurement_table
    from wattwise.energy.command import default_name, run_command
    from wattwise.energy.monitor import EnergyMonitor

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError(f"no command to run: {MONITOR_USAGE}")
    config = monitor_config_from_args(args)
    if args.json:  # fail before running the command, not after
        check_writable(args.json)
    name = args.name or default_name(command)
    with EnergyMonitor(config) as monitor, _metrics_server(args, monitor, name):
        result = run_command(command, monitor, name=name)
    # from here on the exit code is the command's, whatever cannot be shown or written
    console = Console(stderr=True)
    console.print(measurement_table(result.measurement))
    status = command_status(result)
    if status is not None:
        console.print(status)
    if args.json:
        try:
            write_json(args.json, result.to_dict(timeline=not args.no_timeline))
        except WattwiseError as err:  # e.g. the disk filled up while the command ran
            print(
                f"wattwise: error: {err}; the measurement was not saved "
                f"(the command exited with code {result.exit_code})",
                file=sys.stderr,
            )
        else:
            console.print(f"measurement written to {args.json}")
    return result.exit_code


def _metrics_server(
    args: argparse.Namespace, monitor: Any, window: str
) -> contextlib.AbstractContextManager[Any]:
    """With ``--prometheus-port``: the started exporter of ``window`` (its URL printed on
    stderr before the command starts), else nothing."""
    if args.prometheus_port is None:
        return contextlib.nullcontext()
    from wattwise.energy.prometheus import serve_metrics

    server = serve_metrics(monitor, window, args.prometheus_port)
    print(f"wattwise: serving Prometheus metrics on {server.url}", file=sys.stderr, flush=True)
    return server


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.render import model_rows, print_rows
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
        write_json(args.json, stats.to_dict())
    title = f"{args.model} at {args.input}, {args.num_classes} classes"
    print_rows(Console(), title, model_rows(stats))
    return 0
