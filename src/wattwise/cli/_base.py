"""What every command module shares: the parser class, the exit codes, argument types, the
measuring options and JSON output. Command modules import this; it imports none of them."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from wattwise.errors import ConfigError, WattwiseError
from wattwise.files import write_json_atomic
from wattwise.validation import KeyedError, format_loc, validate_nested

#: Bad input: a bad flag, or any :class:`~wattwise.errors.WattwiseError`.
EXIT_USAGE = 2
#: Stopped by Ctrl-C (128 + SIGINT), after what finished was saved.
EXIT_INTERRUPTED = 130
#: Stopped by SIGTERM (128 + SIGTERM), after what finished was saved (``sweep``, ``demo``).
EXIT_TERMINATED = 143

#: The sampling interval without ``--interval`` or ``--sample-hz`` (seconds).
DEFAULT_INTERVAL_S = 0.1
#: The sampling rates ``--sample-hz`` (and ``measurement.sample_hz`` in a study) accept.
SAMPLE_HZ_RANGE = (0.1, 1000.0)


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line and exit code :data:`EXIT_USAGE`, and whose
    help can end with notes computed only when it is shown (:meth:`add_help_note`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._notes: list[tuple[str, Callable[[], str]]] = []

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"wattwise: error: {message} (see '{self.prog} --help')\n")

    def add_help_note(self, title: str, text: Callable[[], str]) -> None:
        """Ends the help with ``title: text()``. ``text`` is called when the help is shown, not
        when the parser is built: what it reads (the dataset, model and technique registries
        import torch, the results columns rich) would slow every command down."""
        self._notes.append((title, text))

    def format_help(self) -> str:
        help_text = super().format_help()
        width = max(shutil.get_terminal_size().columns - 2, 40)  # as argparse's formatter
        for title, text in self._notes:
            note = textwrap.fill(
                text(),
                width,
                initial_indent=f"{title}: ",
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            help_text += f"\n{note}\n"
        return help_text


def positive_float(what: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number > 0; errors name the flag ``what``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be a positive number, got {text!r}")
        return value

    return parse


def non_negative_float(what: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number >= 0; errors name the flag ``what``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (value >= 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be a number >= 0, got {text!r}")
        return value

    return parse


def positive_int(what: str) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= 1; errors name the flag ``what``."""
    return int_at_least(what, 1)


def non_negative_int(what: str) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= 0; errors name the flag ``what``."""
    return int_at_least(what, 0)


def int_at_least(what: str, minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``; errors name the flag ``what``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {text!r}")
        return value

    return parse


def from_flags(cls: Any, values: Mapping[str, Any], flags: Mapping[str, str]) -> Any:
    """A :func:`~wattwise.validation.config_dataclass` built from option values.

    Args:
        cls: The config class.
        values: Field name -> value (``None`` values are left out: the field's default).
        flags: Field name -> the flag that sets it, named in the error message.

    Raises:
        ConfigError: A value is invalid: ``--pue: must be >= 1.0, got 0.5``.
    """
    given = {name: value for name, value in values.items() if value is not None}
    try:
        return validate_nested(cls, given, keys=flags)
    except KeyedError as err:
        where = format_loc(err.path) or cls.__name__
        raise ConfigError(f"{where}: {err}") from None


def add_meter_options(p: argparse.ArgumentParser) -> None:
    """The measuring options of ``monitor``, ``train`` and ``optimize``.

    Each flag is named after its key in a study's ``measurement`` section or in
    :class:`~wattwise.energy.meters.MeterSettings` (``--sample-hz``,
    ``--carbon-intensity-g-per-kwh``); ``--interval`` and ``--carbon-intensity`` stay as the
    older spellings.
    """
    g = p.add_argument_group("measuring")
    g.add_argument(
        "--meters",
        default="auto",
        help="comma-separated meters (rapl, nvml, nvidia-smi, cpu-estimate, dram-estimate); "
        "'auto' picks the best available per component (default)",
    )
    rate = g.add_mutually_exclusive_group()
    rate.add_argument(
        "--interval",
        type=positive_float("--interval"),
        metavar="SECONDS",
        help=f"sampling interval of the background sampler (default {DEFAULT_INTERVAL_S:g} "
        f"= {1 / DEFAULT_INTERVAL_S:g} Hz)",
    )
    rate.add_argument(
        "--sample-hz",
        type=positive_float("--sample-hz"),
        metavar="HZ",
        help="sampling rate of the background sampler, instead of --interval",
    )
    g.add_argument(
        "--read-timeout-s",
        type=positive_float("--read-timeout-s"),
        metavar="SECONDS",
        help="the longest one meter read may take; a meter that hangs longer is unavailable "
        "for the windows open then (default 5)",
    )
    add_device_options(g)
    g.add_argument("--country", help="ISO 3166-1 alpha-3 code for the grid's carbon intensity")
    g.add_argument(
        "--carbon-intensity-g-per-kwh",
        "--carbon-intensity",
        dest="carbon_intensity_g_per_kwh",
        type=float,
        metavar="G_PER_KWH",
        help="grid carbon intensity in g CO2e per kWh (overrides --country)",
    )
    g.add_argument("--pue", type=float, default=1.0, help="data-centre PUE (default 1.0)")


def add_device_options(p: Any) -> None:
    """``--powercap-root``, ``--cpu-tdp-w`` and ``--cpu-threads``: on their own (``devices``)
    or in the meter options' group."""
    p.add_argument("--powercap-root", help="RAPL sysfs root (default /sys/class/powercap)")
    p.add_argument(
        "--cpu-tdp-w",
        type=positive_float("--cpu-tdp-w"),
        help="TDP of one CPU package in watts, for the CPU estimate",
    )
    p.add_argument(
        "--cpu-threads",
        type=positive_int("--cpu-threads"),
        help="hardware threads sharing that TDP (default: from the TDP table or this machine)",
    )


def meter_settings(args: argparse.Namespace) -> Any:
    """The :class:`~wattwise.energy.meters.MeterSettings` of the measuring options."""
    from wattwise.energy.meters import MeterSettings

    return MeterSettings(
        powercap_root=args.powercap_root,
        cpu_tdp_w=args.cpu_tdp_w,
        cpu_threads=args.cpu_threads,
    )


def measurement_from_args(args: argparse.Namespace, **settings: Any) -> Any:
    """The :class:`~wattwise.config.MeasurementSettings` of the measuring options (``settings``:
    its other keys, e.g. ``inference_s``).

    Raises:
        ConfigError: A sampling rate outside 0.1 to 1000 Hz (an interval outside 0.001 to 10 s).
    """
    from wattwise.config import MeasurementSettings
    from wattwise.energy.carbon import CarbonConfig

    low, high = SAMPLE_HZ_RANGE
    if args.sample_hz is not None:
        sample_hz = args.sample_hz
        if not low <= sample_hz <= high:
            raise ConfigError(f"--sample-hz must be between {low:g} and {high:g}, got {sample_hz}")
    else:
        interval = args.interval if args.interval is not None else DEFAULT_INTERVAL_S
        if not 1 / high <= interval <= 1 / low:
            raise ConfigError(
                f"--interval must be between {1 / high:g} and {1 / low:g} s, got {interval}"
            )
        sample_hz = 1.0 / interval
    carbon = from_flags(
        CarbonConfig,
        {
            "intensity_g_per_kwh": args.carbon_intensity_g_per_kwh,
            "country": args.country,
            "pue": args.pue,
        },
        {
            "intensity_g_per_kwh": "--carbon-intensity-g-per-kwh",
            "country": "--country",
            "pue": "--pue",
        },
    )
    return from_flags(
        MeasurementSettings,
        {
            "meters": args.meters,
            "sample_hz": sample_hz,
            "cpu_tdp_w": args.cpu_tdp_w,
            "cpu_threads": args.cpu_threads,
            "powercap_root": args.powercap_root,
            "read_timeout_s": args.read_timeout_s,
            "carbon": carbon,
            **settings,
        },
        {"meters": "--meters", "inference_s": "--inference-s", **_METER_FLAGS},
    )


_METER_FLAGS = {
    "read_timeout_s": "--read-timeout-s",
    "cpu_tdp_w": "--cpu-tdp-w",
    "cpu_threads": "--cpu-threads",
    "powercap_root": "--powercap-root",
}


def monitor_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~wattwise.energy.monitor.MonitorConfig` of the measuring options."""
    return measurement_from_args(args).monitor_config()


def write_json(path: str | Path, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically, creating missing folders.

    Raises:
        WattwiseError: The file cannot be written.
    """
    target = Path(path)
    try:
        write_json_atomic(target, data)
    except OSError as err:
        raise WattwiseError(f"cannot write {target}: {err.strerror or err}") from err


def check_writable(path: str, flag: str = "--json") -> None:
    """Fails now, not after a long run, when ``path`` could not be written later.

    Raises:
        ConfigError: ``path`` is a folder, lies below a file, or in a folder not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a directory")
    probe = target.parent if str(target.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"{flag} {path}: {probe} is not writable")


def in_cli_words(command: Any) -> Any:
    """``command``, with dataset messages offering this command line's ``--download``."""

    def run(args: argparse.Namespace) -> int:
        from wattwise.data import download_hint

        with download_hint("pass --download"):
            return int(command(args))

    return run


@contextlib.contextmanager
def third_party_log(folder: str | Path) -> Iterator[None]:
    """While a long command runs, third-party warnings and log lines go to
    ``<folder>/third_party.log`` (:func:`wattwise.logs.route_third_party`); at the end, when
    any were captured (by this process or by the sweep's workers, which append to the same
    file), one stderr line says how many and where.

    Args:
        folder: The folder the command writes to; a file stands for its folder (``optimize
            --checkpoint`` may name ``checkpoint.pt``).
    """
    from wattwise.logs import THIRD_PARTY_LOG, route_third_party

    where = Path(folder)
    if where.is_file():
        where = where.parent
    with route_third_party(where / THIRD_PARTY_LOG) as log:
        try:
            yield
        finally:
            if lines := log.appended_lines():
                print(f"third-party warnings: {lines} line(s) in {log.path}", file=sys.stderr)
