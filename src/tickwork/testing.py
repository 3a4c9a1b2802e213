"""Test helpers for code built on tickwork.

:class:`FakeClock` stands in for the real clock so that timing logic is tested by moving time by
hand, never by sleeping::

    clock = FakeClock()
    thread = every(5.0, report, clock=clock)
    thread.start()
    clock.wait_for_sleepers(1)   # the thread is now waiting for its next slot
    clock.advance(5.0)           # ... which is due now
"""

from __future__ import annotations

import math
import threading
import time

from ._clock import Clock, os_timeout
from ._protocols import Waitable
from ._public import publish as _publish
from ._validate import check_finite

__all__ = ["FakeClock"]

# How often (in real seconds) a fake wait looks at its stop signal. A stop is an Event the fake
# clock cannot subscribe to, so it is polled; advance() wakes sleepers at once.
_STOP_POLL_SECONDS = 0.001
# advance() waits at most this long (real time) for the waiters it made due to wake up.
_WAKE_TIMEOUT_SECONDS = 30.0


class FakeClock(Clock):
    """A clock that moves only when told to.

    Threads that wait on it block (in real time) until :meth:`advance` moves the fake time past
    their deadline or their stop signal is set. :meth:`wait_for_sleepers` lets a test wait until
    the code under test has reached its wait before moving time, so tests are deterministic.
    """

    def __init__(self, start: float = 0.0) -> None:
        check_finite("start", start)
        self._now = float(start)
        self._cond = threading.Condition()
        self._sleepers = 0
        self._deadlines: list[float] = []

    def now(self) -> float:
        """The fake time: ``start`` moved on by every :meth:`advance` so far."""
        with self._cond:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (finite, >= 0) and wake every waiter that is due.

        Returns once every waiter whose deadline has come has left its wait, so a following
        :meth:`wait_for_sleepers` sees them only when they wait again.
        """
        check_finite("seconds", seconds)
        if seconds < 0:
            raise ValueError(f"'seconds' must be >= 0 (time never goes backwards); got {seconds!r}")
        with self._cond:
            self._move_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Move time forward to ``when`` (no-op if not in the future); see :meth:`advance`."""
        check_finite("when", when)
        with self._cond:
            if when > self._now:
                self._move_to(when)

    def _move_to(self, when: float) -> None:
        self._now = when
        self._cond.notify_all()
        limit = time.monotonic() + _WAKE_TIMEOUT_SECONDS
        while any(deadline <= self._now for deadline in self._deadlines):
            remaining = limit - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"threads due at {self._now} did not wake within {_WAKE_TIMEOUT_SECONDS} s"
                )
            self._cond.wait(remaining)

    @property
    def sleepers(self) -> int:
        """How many threads are waiting on this clock right now."""
        with self._cond:
            return self._sleepers

    def next_deadline(self) -> float | None:
        """The earliest deadline a waiting thread has, or None when nobody waits with a timeout."""
        with self._cond:
            return min(self._deadlines) if self._deadlines else None

    def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block (in real time, at most ``timeout`` s) until ``count`` threads wait on this clock.

        Raises TimeoutError when they do not: the code under test never reached its wait.
        """
        limit = time.monotonic() + timeout
        with self._cond:
            while self._sleepers < count:
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} thread(s) waiting on the FakeClock within {timeout} s; "
                        f"{self._sleepers} are"
                    )
                self._cond.wait(os_timeout(remaining))

    def wait(self, stop: Waitable | None, timeout: float | None) -> bool:
        """Wait until ``stop`` is set or the fake time passes ``timeout`` (:meth:`Clock.wait`)."""
        if stop is None and timeout is None:
            raise ValueError("a wait needs a stop signal or a timeout; got neither")
        with self._cond:
            deadline = math.inf if timeout is None else self._now + max(timeout, 0.0)
            if stop is not None and stop.is_set():
                return True
            if self._now >= deadline:
                return False
            self._sleepers += 1
            self._deadlines.append(deadline)
            self._cond.notify_all()
            try:
                while True:
                    if stop is not None and stop.is_set():
                        return True
                    if self._now >= deadline:
                        return False
                    self._cond.wait(_STOP_POLL_SECONDS if stop is not None else None)
            finally:
                self._sleepers -= 1
                self._deadlines.remove(deadline)
                self._cond.notify_all()

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now()!r})"


_publish(globals())
