"""Meter reads that cannot hang the monitor: each meter is read in a thread of its own.

A sensor read can block for good: a sysfs file of a confused driver, an NVML call into a hung GPU,
a helper program that never answers. Python cannot interrupt such a call, so the monitor does not
make it on its own thread: :class:`BoundedReader` hands the read to a daemon thread and waits at
most a timeout for it. A read that does not come back in time raises ``TimeoutError``; while it
is still stuck, every further read raises at once (no second thread piles up behind it), and once
it returns the meter can be read again.

A meter that never touches a device — the estimates from this process tree's CPU time and
resident memory (``procfs``), which set ``reads_in_process = True`` — is read inline by
:class:`InlineReader`: handing it to a thread would cost more than the read (0.85 ms per window
pair instead of 0.16 ms, measured: docs/benchmarks.md) and guard against nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from wattwise.energy.base import Meter, Reading

#: The sampler never reads faster than this, whatever a counter's range asks for.
MIN_INTERVAL_S = 0.001


class BoundedReader:
    """Reads one meter in a daemon thread, so that a caller waits at most a timeout.

    Args:
        meter: The meter to read.
    """

    def __init__(self, meter: Meter):
        self.meter = meter
        self._lock = threading.Lock()
        self._request = threading.Event()
        self._done = threading.Event()
        self._stop = False
        self._busy_since: float | None = None  # a read is in flight since then
        self._result: Reading | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin a read (collect it with :meth:`result`).

        Raises:
            TimeoutError: The previous read has not returned yet (it timed out and is stuck).
        """
        with self._lock:
            if self._busy_since is not None:
                stuck_s = time.perf_counter() - self._busy_since
                raise TimeoutError(
                    f"an earlier read timed out, still blocked after {stuck_s:.3g} s"
                )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"wattwise-read-{self.meter.name}", daemon=True
                )
                self._thread.start()
            self._busy_since = time.perf_counter()
            self._result = self._error = None
            self._done.clear()
            self._request.set()

    def result(self, timeout_s: float) -> Reading:
        """The reading of the read begun by :meth:`start`, waiting at most ``timeout_s``.

        Raises:
            TimeoutError: The read did not return in time (``"read timed out after N s"``).
            Exception: Whatever the meter's ``read`` raised.
        """
        started = self._busy_since
        remaining = timeout_s if started is None else started + timeout_s - time.perf_counter()
        if not self._done.wait(max(0.0, remaining)):
            raise TimeoutError(f"read timed out after {timeout_s:g} s")
        with self._lock:
            if self._error is not None:
                raise self._error
            assert self._result is not None
            return self._result

    def read(self, timeout_s: float) -> Reading:
        """:meth:`start` and :meth:`result` in one call."""
        self.start()
        return self.result(timeout_s)

    def close(self) -> None:
        """Let the thread end after its current read (a stuck one is left behind, a daemon)."""
        with self._lock:
            self._stop = True
            self._request.set()

    def _run(self) -> None:
        while True:
            self._request.wait()
            with self._lock:
                self._request.clear()
                if self._stop:
                    return
            result: Reading | None = None
            error: BaseException | None = None
            try:
                result = self.meter.read()
            except BaseException as err:  # handed to the caller, who decides
                error = err
            with self._lock:  # publish and free the reader in one step
                self._result, self._error = result, error
                self._busy_since = None
                self._done.set()


class InlineReader:
    """Reads a meter that cannot block (``reads_in_process``) in the caller's thread, with the
    interface of :class:`BoundedReader`."""

    def __init__(self, meter: Meter):
        self.meter = meter
        self._result: Reading | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        self._result = self._error = None
        try:
            self._result = self.meter.read()
        except Exception as err:  # handed to the caller by result(), as a thread would
            self._error = err

    def result(self, timeout_s: float) -> Reading:
        del timeout_s
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def close(self) -> None:
        return None


class MeterReaders:
    """Every meter of a monitor, read at the same time, each at most ``timeout_s``.

    A meter whose read times out (it blocks, or the meter's own timeout fired) is not read again
    until :meth:`reset` (the monitor calls it when no window is open any more).

    Args:
        meters: The meters.
        timeout_s: The longest a read may take, in seconds.
    """

    def __init__(self, meters: Sequence[Meter], timeout_s: float):
        self.timeout_s = timeout_s
        self._readers: list[InlineReader | BoundedReader] = [
            InlineReader(m) if getattr(m, "reads_in_process", False) else BoundedReader(m)
            for m in meters
        ]
        self._timed_out: dict[int, str] = {}  # reader index -> why
        #: The last error of each meter whose read failed, by meter name.
        self.errors: dict[str, str] = {}

    def read_all(self) -> tuple[list[Reading], dict[str, str], dict[str, str]]:
        """Read every meter once.

        Returns:
            The readings that came back; why each other component has no reading now
            (component -> reason); and the components whose meter timed out in this call.
        """
        failed: dict[str, str] = {}
        timed_out: dict[str, str] = {}
        started = []
        for index, reader in enumerate(self._readers):
            if index in self._timed_out:
                failed |= _components(reader.meter, self._timed_out[index])
                continue
            try:
                reader.start()
                started.append(index)
            except TimeoutError as err:  # an earlier read is still stuck
                timed_out |= self._time_out(index, err)
        readings = []
        for index in started:
            meter = self._readers[index].meter
            try:
                readings.append(self._readers[index].result(self.timeout_s))
            except TimeoutError as err:  # the read blocks, or the meter's own timeout fired
                timed_out |= self._time_out(index, err)
            except Exception as err:  # a flaky sensor: skip this read, keep the window going
                message = f"{meter.name} read failed: {type(err).__name__}: {err}"
                self.errors[meter.name] = message
                failed |= _components(meter, message)
        return readings, failed | timed_out, timed_out

    def _time_out(self, index: int, err: TimeoutError) -> dict[str, str]:
        meter = self._readers[index].meter
        why = f"{meter.name}: {err}"
        self._timed_out[index] = self.errors[meter.name] = why
        return _components(meter, why)

    @property
    def max_interval_s(self) -> float:
        """The longest time between reads at which every meter's counter wraps at most once:
        the shortest ``max_read_interval_s`` of the meters (no less than :data:`MIN_INTERVAL_S`,
        ``inf`` when none has one)."""
        limits = [getattr(r.meter, "max_read_interval_s", None) for r in self._readers]
        return max(MIN_INTERVAL_S, min([float("inf"), *(x for x in limits if x)]))

    def reset(self) -> None:
        """Try meters that timed out again at the next read."""
        self._timed_out.clear()

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


def _components(meter: Meter, why: str) -> dict[str, str]:
    return {comp: why for comp in [*meter.components(), *meter.nested_components()]}
