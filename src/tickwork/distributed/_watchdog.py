"""The watchdog: store calls that never return, and this process's own freezes. No store calls.

A frozen store host (SIGSTOP, a partition) blocks torch store calls far past the store's own
timeout, so a thread that makes none watches the calls in progress (:mod:`._tracked`): one past
its bound (``heartbeat_timeout``; a blocking wait's own timeout plus that) stops the rank with
StoreUnreachableError. The watchdog also notices that this process itself stood still (its own
wake-up came far too late: SIGSTOP, a suspended VM, a starved CPU): the time it spent stopped
says nothing about the store, so the calls in progress count from the wake-up; and if this rank
sent no heartbeat for ``heartbeat_timeout``, its peers have declared it dead and it stops with
that verdict.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .._naming import start_daemon
from ._errors import StoreUnreachableError
from ._policy import self_silent

if TYPE_CHECKING:
    from ._replica import Replica

__all__ = ["Watchdog"]

logger = logging.getLogger(__name__)


class Watchdog:
    """One rank's watchdog thread (see module docs)."""

    def __init__(self, replica: Replica) -> None:
        self._r = replica
        self.period = min(replica.interval, replica.timeout / 4)
        # A wake-up this late means the process stood still.
        self.frozen_after = self.period + max(1.0, replica.timeout / 2)

    def start(self) -> threading.Thread:
        return start_daemon(self._run, f"distributed watchdog (rank {self._r.rank})")

    def check(self, now: float, last_wake: float) -> None:
        """One look at ``now``; the previous one was at ``last_wake``."""
        r = self._r
        if now - last_wake >= self.frozen_after:
            logger.warning(
                "rank %d: this process stood still for %.1f s (frozen or starved)",
                r.rank,
                now - last_wake,
            )
            silent = self_silent(now, r.sender.last_beat, r.timeout)
            if silent is not None:
                r.died_here(silent)
                return
            r.calls.restart(now)
        overdue = r.calls.overdue(now)
        if overdue is not None:
            r.fail(
                StoreUnreachableError(
                    f"rank {r.rank}: no reply from {r.describe} for {overdue.seconds:.1f} s to a "
                    f"{overdue.what} (heartbeat_timeout={r.timeout:g} s): the store's host is "
                    "frozen, overloaded or cut off by the network"
                )
            )

    def _run(self) -> None:
        r = self._r
        last = r.clock.now()
        try:
            while not r.clock.wait(r.threads_stop, self.period):
                if r.fatal is not None:
                    return
                now = r.clock.now()
                self.check(now, last)
                last = now
        except BaseException as e:  # a bug: keep it, never lose it
            logger.exception("tickwork.distributed watchdog failed")
            r.fail(e)
