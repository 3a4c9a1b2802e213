"""The loop that drives a callable on the fixed-rate schedule, and its statistics.

One implementation, used by TimedThread, LooperThread and the steps-per-execution tuner. It is not
a thread itself: :meth:`Ticker.run` runs in whatever thread calls it, until the stop signal is set
or the error handler says to stop. The policy it follows lives in :mod:`tickwork._schedule`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from ._clock import Clock, repeated_waits
from ._schedule import Overrun, Slot, claim, first_slot, next_slot

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from ._protocols import Waitable
    from ._tick_stats import TickStats

__all__ = ["Ticker"]

# Lateness percentiles are taken over this many most recent calls.
LATENESS_WINDOW = 4096


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[rank]


# The ticking thread notes each call in two lists, and folds them into the totals once this many
# have gathered (or a snapshot takes them into account as they are).
FOLD_EVERY = 256


class _StatsRecorder:
    """The totals behind :class:`TickStats`.

    A call costs its thread two appends (:meth:`notes`), not a lock and a dozen attribute
    updates: that was most of what a tick cost beside its wait. The ticking thread alone appends
    and alone folds (:meth:`fold`); :meth:`snapshot` adds what is not folded yet, so a snapshot
    is always up to date.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Never replaced, only cleared: the ticking thread holds their append methods.
        self._pending_lateness: list[float] = []
        self._pending_busy: list[float] = []
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._calls = 0
            self._errors = 0
            self._missed = 0
            self._timed = 0
            self._lateness_sum = 0.0
            self._lateness_max = 0.0
            self._recent: deque[float] = deque(maxlen=LATENESS_WINDOW)
            self._busy = 0.0
            self._pending_lateness.clear()
            self._pending_busy.clear()

    def notes(self) -> tuple[list[float], list[float]]:
        """The lists a call's lateness (if it has one) and busy time are appended to, in that
        order, by the ticking thread only; it calls :meth:`fold` when they grow long."""
        return self._pending_lateness, self._pending_busy

    def fold(self) -> None:
        """Add the pending notes to the totals (in the ticking thread)."""
        with self._lock:
            lateness = self._pending_lateness
            if lateness:
                self._timed += len(lateness)
                self._lateness_sum += sum(lateness)
                self._lateness_max = max(self._lateness_max, max(lateness))
                self._recent.extend(lateness)
                lateness.clear()
            busy = self._pending_busy
            self._calls += len(busy)
            self._busy += sum(busy)
            busy.clear()

    def missed(self, slots: int) -> None:
        if slots:
            with self._lock:
                self._missed += slots

    def failed(self) -> None:
        with self._lock:
            self._errors += 1

    def snapshot(self) -> TickStats:
        # Through the package, which imports it on first use and gives it its public home.
        from . import TickStats

        with self._lock:
            # Copies (each atomic): the ticking thread may append while this runs.
            lateness = list(self._pending_lateness)
            busy = list(self._pending_busy)
            timed = self._timed + len(lateness)
            ordered = sorted([*self._recent, *lateness][-LATENESS_WINDOW:])
            return TickStats(
                calls=self._calls + len(busy),
                errors=self._errors,
                missed=self._missed,
                lateness_mean=((self._lateness_sum + sum(lateness)) / timed) if timed else 0.0,
                lateness_p50=_percentile(ordered, 0.50),
                lateness_p99=_percentile(ordered, 0.99),
                lateness_max=max([self._lateness_max, *lateness]),
                busy_seconds=self._busy + sum(busy),
            )

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()


ErrorHandler = Callable[[BaseException], bool]
"""Called with an exception the callback raised; returns True to go on, False to stop the loop."""


class Ticker:
    """Calls ``call()`` on the fixed-rate grid (or back to back when ``interval`` is None or 0).

    ``call`` runs in the thread that calls :meth:`run` (an owner may replace it, and ``interval``,
    between runs). An exception it raises goes to
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
        self.call = call
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

    def _failed(self, exc: BaseException) -> bool:
        """The call raised ``exc`` (its times are noted); True when the loop goes on."""
        self._stats.failed()
        return self._on_error(exc) and isinstance(exc, Exception)

    def run(self, stop: Waitable) -> None:
        """Run until ``stop`` is set (checked before every call) or the error handler ends it.

        An interval of None or 0 runs back to back (TensorFlow's meaning of 0).
        """
        # This loop is what each tick of every periodic thread costs, beside the call itself: it
        # keeps to local names, one wait in C when it can (repeated_waits), two appends for the
        # statistics, and the schedule's two functions, which are a few bytecodes on the grid.
        interval = self.interval
        call = self.call
        stats = self._stats
        lateness_notes, busy_notes = stats.notes()
        note_lateness = lateness_notes.append
        note_busy = busy_notes.append
        if interval is None or interval == 0:
            now = self._clock.now
            while not stop.is_set():
                started = now()
                try:
                    call()
                except BaseException as exc:
                    note_busy(now() - started)
                    if not self._failed(exc):
                        return
                else:
                    note_busy(now() - started)
                if len(busy_notes) >= FOLD_EVERY:
                    stats.fold()
            return
        now, wait_until = repeated_waits(self._clock, stop)
        overrun = self._overrun
        catch_up = overrun is Overrun.CATCH_UP
        # The slot waited for, unpacked. On time, the policy's answers are known without asking
        # (see _schedule): the call stays in its slot and the next one is the next grid cell; it is
        # asked only once time has passed the next cell's due time.
        number, due, anchor, _ = first_slot(now())
        while True:
            if wait_until(due):  # looks at the stop first, so a stop in the call ends here
                return
            started = now()
            next_due = anchor + (number + 1) * interval
            if started >= next_due and not catch_up:  # woke up a whole interval late or more
                number, due, anchor, passed = claim(
                    Slot(number, due, anchor), interval, started, overrun
                )
                stats.missed(passed)
                next_due = anchor + (number + 1) * interval
            try:
                call()
            except BaseException as exc:
                ended = now()
                note_lateness(started - due)
                note_busy(ended - started)
                if not self._failed(exc):
                    return
            else:
                ended = now()
                note_lateness(started - due)
                note_busy(ended - started)
            if len(busy_notes) >= FOLD_EVERY:
                stats.fold()
            if ended <= next_due or catch_up:
                number += 1
                due = next_due
            else:  # the call overran its slot
                number, due, anchor, passed = next_slot(
                    Slot(number, due, anchor), interval, ended, overrun
                )
                stats.missed(passed)
