"""The loop that drives a callable on the fixed-rate schedule, and its statistics.

One implementation, used by TimedThread, LooperThread and the steps-per-execution tuner. It is not
a thread itself: :meth:`Ticker.run` runs in whatever thread calls it, until the stop signal is set
or the error handler says to stop. The policy it follows lives in :mod:`tickwork._schedule`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ._clock import Clock, Waitable
from ._schedule import Overrun, claim, first_slot, next_slot

__all__ = ["TickStats", "Ticker"]

# Lateness percentiles are taken over this many most recent calls.
LATENESS_WINDOW = 4096


@dataclass(frozen=True)
class TickStats:
    """What a periodic thread has done so far (a snapshot; it does not change).

    ``lateness_*`` are how long after its slot's due time each call started, in seconds:
    the mean and max over all calls, the percentiles over the most recent 4096. ``missed`` counts
    slots that passed without a call (see ``Overrun``). ``busy_seconds`` is the total time spent
    inside the callback. For back-to-back loops (no interval) lateness is not defined and is 0.
    """

    calls: int = 0
    errors: int = 0
    missed: int = 0
    lateness_mean: float = 0.0
    lateness_p50: float = 0.0
    lateness_p99: float = 0.0
    lateness_max: float = 0.0
    busy_seconds: float = 0.0


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[rank]


class _StatsRecorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._calls = 0
        self._errors = 0
        self._missed = 0
        self._timed = 0
        self._lateness_sum = 0.0
        self._lateness_max = 0.0
        self._recent: deque[float] = deque(maxlen=LATENESS_WINDOW)
        self._busy = 0.0

    def missed(self, slots: int) -> None:
        if slots:
            with self._lock:
                self._missed += slots

    def call(self, lateness: float | None, busy: float, failed: bool) -> None:
        with self._lock:
            self._calls += 1
            self._busy += busy
            if failed:
                self._errors += 1
            if lateness is not None:
                self._timed += 1
                self._lateness_sum += lateness
                self._lateness_max = max(self._lateness_max, lateness)
                self._recent.append(lateness)

    def snapshot(self) -> TickStats:
        with self._lock:
            ordered = sorted(self._recent)
            return TickStats(
                calls=self._calls,
                errors=self._errors,
                missed=self._missed,
                lateness_mean=(self._lateness_sum / self._timed) if self._timed else 0.0,
                lateness_p50=_percentile(ordered, 0.50),
                lateness_p99=_percentile(ordered, 0.99),
                lateness_max=self._lateness_max,
                busy_seconds=self._busy,
            )

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()


ErrorHandler = Callable[[BaseException], bool]
"""Called with an exception the callback raised; returns True to go on, False to stop the loop."""


class Ticker:
    """Calls ``call()`` on the fixed-rate grid (or back to back when ``interval`` is None or 0).

    ``call`` runs in the thread that calls :meth:`run`. An exception it raises goes to
    ``on_error``, which decides whether the loop goes on; any BaseException that is not an
    Exception (KeyboardInterrupt, SystemExit) always ends the loop after being handed over.
    """

    def __init__(
        self,
        interval: float | None,
        call: Callable[[], object],
        *,
        clock: Clock,
        overrun: Overrun,
        on_error: ErrorHandler,
    ) -> None:
        self.interval = interval
        self._call = call
        self._clock = clock
        self._overrun = overrun
        self._on_error = on_error
        self._stats = _StatsRecorder()

    def statistics(self) -> TickStats:
        return self._stats.snapshot()

    def reset_statistics(self) -> None:
        self._stats.reset()

    def reinit_after_fork(self) -> None:
        self._stats.reinit_after_fork()

    def _invoke(self, lateness: float | None, started: float) -> float | None:
        """One call that started at ``started``; returns when it ended, or None to end the loop."""
        try:
            self._call()
        except BaseException as exc:
            ended = self._clock.now()
            self._stats.call(lateness, ended - started, failed=True)
            go_on = self._on_error(exc) and isinstance(exc, Exception)
            return ended if go_on else None
        ended = self._clock.now()
        self._stats.call(lateness, ended - started, failed=False)
        return ended

    def run(self, stop: Waitable) -> None:
        """Run until ``stop`` is set (checked before every call) or the error handler ends it.

        An interval of None or 0 runs back to back (TensorFlow's meaning of 0).
        """
        interval = self.interval
        if interval is None or interval == 0:
            while not stop.is_set():
                if self._invoke(None, self._clock.now()) is None:
                    return
            return
        clock = self._clock
        slot = first_slot(clock.now())
        while True:
            if clock.wait_until(stop, slot.due):
                return
            now = clock.now()
            planned = slot
            slot = claim(planned, interval, now, self._overrun)
            self._stats.missed(slot.missed - planned.missed)  # passed over by a late wake-up
            ended = self._invoke(now - slot.due, now)
            if ended is None or stop.is_set():
                return
            slot = next_slot(slot, interval, ended, self._overrun)
            self._stats.missed(slot.missed)  # passed over while the call ran
