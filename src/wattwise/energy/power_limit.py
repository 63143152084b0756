"""GPU power limits (what Zeus tunes): set one for a trial through NVML, and always put it back.

    with gpu_power_limit(200, "cuda:0") as limit:     # None: the limit is left as it is
        train()                                        # runs with the GPU capped at 200 W
    # the GPU's previous limit is back

The limit is set with ``nvmlDeviceSetPowerManagementLimit`` (milliwatts) after checking the
device's range (``nvmlDeviceGetPowerManagementLimitConstraints``); the limit it had
(``nvmlDeviceGetPowerManagementLimit``) is restored on every way out:

* leaving the ``with`` block, normally or by an exception (Ctrl-C is ``KeyboardInterrupt``);
* SIGTERM (a sweep being stopped, an executor ending its worker, SLURM's time limit): while a
  limit is held, a handler restores it first, then does what the previous handler would have
  done (``wattwise sweep`` turns SIGTERM into ``KeyboardInterrupt``; the default terminates);
* the interpreter exiting with the block never left (``atexit``).

Only a SIGKILL, a crash of the interpreter itself or a lost GPU leave the limit set: the line
logged when it is set (and printed if the restore fails) says how to reset it by hand
(``nvidia-smi -i N -pl W``). A restore that fails is printed to stderr and raised (unless
another error is already on its way out), so that no later trial runs under a limit it did not
ask for in silence.

Refused in one line (:class:`~wattwise.errors.ConfigError`), with nothing changed: a trial on
the CPU, no NVML or no such GPU, a GPU without power management, a value outside its range, no
permission (setting limits needs root), and a GPU shared by trials running in parallel (the
limit is device-wide: they would set each other's).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from types import FrameType, ModuleType
from typing import Any

from wattwise.energy.nvml import parse_visible_devices
from wattwise.energy.sharing import shared_note
from wattwise.errors import ConfigError, WattwiseError

log = logging.getLogger(__name__)

#: pynvml's ``NVML_ERROR_NO_PERMISSION`` (used where the bindings do not name it).
_NO_PERMISSION = 4


@dataclass(frozen=True)
class PowerLimit:
    """A power limit that holds on one GPU (what a trial records).

    Attributes:
        device: The torch device it applies to (``cuda:0``).
        gpu: The GPU's name.
        nvml_index: Its NVML index (``nvidia-smi -i``).
        limit_w: The limit asked for, in watts.
        applied_w: The limit the driver reports after setting it.
        original_w: The limit it had before (restored afterwards).
        min_w, max_w: The device's range of limits.
    """

    device: str
    gpu: str
    nvml_index: int
    limit_w: float
    applied_w: float
    original_w: float
    min_w: float
    max_w: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GpuPowerLimit:
    """Context manager that holds ``limit_w`` on the GPU of ``device`` (see the module doc).

    Args:
        limit_w: Watts, or ``None`` to leave the limit alone (NVML is then not touched).
        device: The torch device of the trial: ``cuda``, ``cuda:N`` (the N-th *visible* GPU,
            ``CUDA_VISIBLE_DEVICES`` honoured) or ``cpu`` (refused with a limit).
        nvml: The NVML bindings module (default ``import pynvml``); tests pass a fake.
    """

    def __init__(self, limit_w: float | None, device: str, *, nvml: ModuleType | Any = None):
        self.limit_w = limit_w
        self.device = device
        self._nvml = nvml
        self._handle: Any = None
        self._index = -1
        self._original_mw = 0
        self._held = False
        self._lock = threading.Lock()
        self.limit: PowerLimit | None = None

    def __enter__(self) -> PowerLimit | None:
        if self.limit_w is None:
            return None
        visible = _visible_index(self.device)
        if shared_note("gpu"):
            raise ConfigError(
                "a GPU power limit is device-wide, and trials run in parallel here without a GPU "
                "each: they would set each other's limit; run one trial per GPU (executor "
                "local-gpus) or drop gpu_power_limits_w"
            )
        if self._nvml is None:
            import pynvml  # nvidia-ml-py, a dependency; imported here to keep `import` lean

            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except Exception as err:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise ConfigError(
                f"a GPU power limit needs NVML, and NVML could not start: {err}"
            ) from err
        _HELD.add(self)  # before the limit is set: a SIGTERM from then on restores it
        try:
            self.limit = self._set(nvml, visible)
        except BaseException:
            self.restore()  # a no-op unless it was set before the failure
            _HELD.discard(self)
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
            raise
        return self.limit

    def _set(self, nvml: Any, visible: int) -> PowerLimit:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
        indices = parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), count, uuids)
        if visible >= len(indices):
            raise ConfigError(
                f"a GPU power limit for cuda:{visible}, but there is no GPU cuda:{visible} "
                f"({len(indices)} visible)"
            )
        self._index = indices[visible]
        self._handle = handles[self._index]
        name = _text(nvml.nvmlDeviceGetName(self._handle))
        where = f"{name} (cuda:{visible}, NVML index {self._index})"
        try:
            low_mw, high_mw = nvml.nvmlDeviceGetPowerManagementLimitConstraints(self._handle)
            self._original_mw = int(nvml.nvmlDeviceGetPowerManagementLimit(self._handle))
        except nvml.NVMLError as err:
            raise ConfigError(f"cannot limit the power of {where}: NVML: {err}") from err
        limit_mw = round(float(self.limit_w or 0) * 1000)
        if not low_mw <= limit_mw <= high_mw:
            raise ConfigError(
                f"gpu_power_limit_w {self.limit_w:g} is outside the range of {where}: "
                f"{low_mw / 1000:g}-{high_mw / 1000:g} W"
            )
        try:
            nvml.nvmlDeviceSetPowerManagementLimit(self._handle, limit_mw)
        except nvml.NVMLError as err:
            if getattr(err, "value", None) == getattr(
                nvml, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION
            ):
                raise ConfigError(
                    "setting GPU power limits needs root (as nvidia-smi -pl does): run as root "
                    f"or drop gpu_power_limits_w (NVML: {err})"
                ) from err
            raise ConfigError(f"cannot set the power limit of {where}: NVML: {err}") from err
        self._held = True
        applied_mw = limit_mw
        with contextlib.suppress(nvml.NVMLError):
            applied_mw = int(nvml.nvmlDeviceGetPowerManagementLimit(self._handle))
        log.info(
            "power limit of %s set to %g W (was %g W; if this process is killed, restore it "
            "with: %s)",
            where,
            limit_mw / 1000,
            self._original_mw / 1000,
            self._reset_command(),
        )
        return PowerLimit(
            device=f"cuda:{visible}",
            gpu=name,
            nvml_index=self._index,
            limit_w=limit_mw / 1000,
            applied_w=applied_mw / 1000,
            original_w=self._original_mw / 1000,
            min_w=low_mw / 1000,
            max_w=high_mw / 1000,
        )

    def restore(self) -> str:
        """Put the previous limit back (once; later calls do nothing). Returns ``""``, or the
        error, which is printed to stderr as well: the GPU is left limited."""
        with self._lock:
            if not self._held:
                return ""
            self._held = False
            try:
                self._nvml.nvmlDeviceSetPowerManagementLimit(self._handle, self._original_mw)
            except Exception as err:
                message = (
                    f"could not restore the power limit of GPU {self._index} to "
                    f"{self._original_mw / 1000:g} W ({err}); it stays limited: restore it "
                    f"with: {self._reset_command()}"
                )
                print(f"wattwise: error: {message}", file=sys.stderr, flush=True)
                log.error(message)
                return message
            return ""

    def _reset_command(self) -> str:
        return f"nvidia-smi -i {self._index} -pl {self._original_mw / 1000:g}"

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self.limit is None:
            return
        try:
            error = self.restore()
        finally:
            _HELD.discard(self)
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        if error and exc_type is None:
            raise WattwiseError(error)


@contextlib.contextmanager
def gpu_power_limit(
    limit_w: float | None, device: str, *, nvml: ModuleType | Any = None
) -> Iterator[PowerLimit | None]:
    """Hold ``limit_w`` watts on the GPU of ``device`` inside the block (:class:`GpuPowerLimit`).

    Yields:
        The :class:`PowerLimit` that holds, or ``None`` when ``limit_w`` is ``None``.

    Raises:
        ConfigError: The limit cannot be set (see the module doc), in one line; nothing changed.
        WattwiseError: The previous limit could not be restored.
    """
    with GpuPowerLimit(limit_w, device, nvml=nvml) as limit:
        yield limit


def _visible_index(device: str) -> int:
    match = re.fullmatch(r"cuda(?::(\d+))?", device.strip())
    if match is None:
        raise ConfigError(
            f"a GPU power limit needs a GPU: this trial runs on {device}; drop "
            "gpu_power_limits_w or train on a GPU"
        )
    return int(match.group(1) or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _HeldLimits:
    """The limits this process holds now: restored at exit, and on SIGTERM before the previous
    handler runs. The handler is installed (main thread only) while at least one is held."""

    def __init__(self) -> None:
        self._limits: list[GpuPowerLimit] = []
        self._lock = threading.Lock()
        self._previous: Any = None
        self._installed = False
        atexit.register(self.restore_all)

    def add(self, limit: GpuPowerLimit) -> None:
        with self._lock:
            self._limits.append(limit)
            if self._installed or threading.current_thread() is not threading.main_thread():
                return
            with contextlib.suppress(ValueError, OSError):
                self._previous = signal.signal(signal.SIGTERM, self._on_term)
                self._installed = True

    def discard(self, limit: GpuPowerLimit) -> None:
        with self._lock:
            if limit in self._limits:
                self._limits.remove(limit)
            if self._limits or not self._installed:
                return
            if threading.current_thread() is threading.main_thread():
                with contextlib.suppress(ValueError, OSError):
                    if signal.getsignal(signal.SIGTERM) == self._on_term:  # not replaced since
                        signal.signal(signal.SIGTERM, self._previous)
                    self._installed = False

    def restore_all(self) -> None:
        with self._lock:
            limits = list(self._limits)
        for limit in reversed(limits):
            limit.restore()

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.restore_all()
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # the default action: terminate by the signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


_HELD = _HeldLimits()
