"""Claims on running trials, so that several sweeps can share one results store (a PostgreSQL
database reached from several machines) without running a trial twice.

A sweep is named ``host/pid/token`` (:func:`lease_owner`). It claims each trial just before it
runs it (:meth:`~wattwise.experiment.store_base.Store.claim_trial`: in the same transaction as
marking it ``running``), which gives it a lease of :data:`LEASE_S` seconds in the store's
``leases`` table; :class:`Leases` renews the claims of its running trials from a thread, every
quarter of that, and releases them all when the sweep ends. A trial that another sweep holds a
live claim on is left to it: it is not pending and cannot be claimed. A claim stops being live
when it expires (its sweep was killed, or its machine lost), when its trial finishes, or — taken
on this host — when its sweep's process is gone, so a sweep killed here is resumed at once.

    with Leases(store, lease_owner()) as leases:
        if store.claim_trial(spec.trial_id, spec, owner=leases.owner) is not None:
            leases.hold(spec.trial_id)
            ...
            leases.drop(spec.trial_id)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

#: Seconds a claim on a running trial holds without being renewed.
LEASE_S = 300.0
_log = logging.getLogger(__name__)


def lease_owner() -> str:
    """A sweep's name in the ``leases`` table: ``host/pid/token`` (a new token per sweep)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def live(owner: str, expires_unix_s: float, me: str | None, now: float) -> bool:
    """Whether the claim ``owner`` holds until ``expires_unix_s`` keeps ``me`` (another sweep,
    or ``None``) off its trial: not expired, not ``me``'s own, and — taken on this host — its
    process is alive and is not this one (a sweep of this process that ended left it)."""
    if owner == me or expires_unix_s <= now:
        return False
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive: another user's process
        return True
    return True


class Leases:
    """The claims one sweep holds, renewed in a daemon thread while it runs.

    Args:
        store: The results store (its methods are thread-safe).
        owner: The sweep's name (:func:`lease_owner`).
        lease_s: How long a claim holds without renewal; renewed every quarter of that.
    """

    def __init__(self, store: Any, owner: str, lease_s: float = LEASE_S) -> None:
        self.store, self.owner, self.lease_s = store, owner, lease_s
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, trial_id: str) -> None:
        with self._lock:
            self._held.add(trial_id)

    def drop(self, trial_id: str) -> None:
        with self._lock:
            self._held.discard(trial_id)

    def __enter__(self) -> Leases:
        self._thread = threading.Thread(target=self._renew, name="wattwise-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:  # the trials still running (an interruption) may be taken by the next sweep
            self.store.release_leases(self.owner)
        except Exception as err:  # they expire on their own: never hide why the sweep ended
            _log.warning("cannot release the claims of %s: %s", self.owner, err)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            with self._lock:
                held = sorted(self._held)
            try:
                self.store.renew_leases(self.owner, held, self.lease_s)
            except Exception as err:  # a store that is away: the next round tries again
                _log.warning("cannot renew the claims of %s: %s", self.owner, err)
