"""LooperThread: a thread that runs code repeatedly under a Coordinator, optionally on a timer.

Same API as ``tf.train.LooperThread``. The timer is the fixed-rate schedule that TimedThread uses
(:mod:`tickwork._ticker`) on a monotonic clock, where TensorFlow's uses the wall clock and, after
an overrun, calls back to back until it has caught up; here missed slots are skipped by default
(``overrun="catch_up"`` gives TensorFlow's behaviour).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from ._clock import Clock, as_waitable, check_clock
from ._coordinator import Coordinator
from ._naming import callable_name, thread_name
from ._schedule import Overrun
from ._ticker import Ticker
from ._validate import check_choice, check_nonnegative

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import Any

    from ._protocols import Waitable
    from ._tick_stats import TickStats

__all__ = ["LooperThread"]


class LooperThread(threading.Thread):
    """A thread that runs code repeatedly, optionally on a timer, under a Coordinator.

    It repeatedly runs ``target(*args, **kwargs)``, or :meth:`run_loop` when a subclass overrides
    it. Before each run it checks whether the coordinator has requested a stop, and it ends at once
    if so (a wait for the next slot is interrupted). An exception from the code it runs is
    reported to the coordinator (which then stops the other threads) and ends this thread.

    Args:
        coord: a tickwork :class:`Coordinator`; the thread registers with it.
        timer_interval_secs: seconds between the due times of runs on a fixed-rate grid (a finite
            number >= 0), or None to run back to back. 0 runs back to back too, as in TensorFlow.
        target, args, kwargs: what to run; ``args``/``kwargs`` need a ``target``.
        overrun: what happens to slots that pass while a run is still going; see
            :class:`tickwork.Overrun`. TensorFlow's LooperThread behaves as ``"catch_up"``.
        clock: the clock to schedule on; defaults to the coordinator's.

    Raises:
        ValueError: ``coord`` is not a Coordinator, or ``args``/``kwargs`` come without ``target``.
    """

    def __init__(
        self,
        coord: Coordinator,
        timer_interval_secs: float | None,
        target: Callable[..., object] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        overrun: Overrun | str = Overrun.SKIP,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(coord, Coordinator):
            raise ValueError(f"'coord' argument must be a tickwork Coordinator; got {coord!r}")
        # 0 runs back to back, checking for a stop before each run, as TensorFlow's timer path
        # does with 0; a negative interval is refused.
        interval = (
            None
            if timer_interval_secs is None
            else check_nonnegative("timer_interval_secs", timer_interval_secs)
        )
        if target is None and (args or kwargs):
            raise ValueError("'args' and 'kwargs' argument require that you also pass 'target'")
        if target is not None and not callable(target):
            raise ValueError(f"'target' must be callable or None; got {target!r}")
        what = callable_name(target if target is not None else type(self))
        super().__init__(name=thread_name(f"LooperThread({what})"))
        self.daemon = True
        self._coord = coord
        coord_stop = as_waitable(coord, argument="coord")
        assert coord_stop is not None
        self._coord_stop: Waitable = coord_stop
        self._timer_interval_secs = interval
        self._target = target
        self._args = tuple(args or ())
        self._kwargs = dict(kwargs or {})
        self._ticker = Ticker(
            interval,
            self.run_loop,
            clock=coord.clock if clock is None else check_clock(clock),
            overrun=check_choice("overrun", overrun, Overrun),
            on_error=self._report,
        )
        self._coord.register_thread(self)

    @staticmethod
    def loop(
        coord: Coordinator,
        timer_interval_secs: float | None,
        target: Callable[..., object],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> LooperThread:
        """Start a LooperThread that calls ``target`` every ``timer_interval_secs`` seconds.

        Returns the started thread. It ends when the coordinator is asked to stop.
        """
        looper = LooperThread(coord, timer_interval_secs, target=target, args=args, kwargs=kwargs)
        looper.start()
        return looper

    def _report(self, exc: BaseException) -> bool:
        self._coord.request_stop((type(exc), exc, exc.__traceback__))
        return False

    def run(self) -> None:
        """The thread's body: ``start_loop()``, ``run_loop()`` on the schedule until the coordinator
        stops, then ``stop_loop()``; what any of them raises is reported to the coordinator."""
        # What start_loop() or the loop raises is reported first (join() re-raises it); run_loop()'s
        # errors are reported by the ticker's handler.
        with self._coord.stop_on_exception():
            self.start_loop()
            self._ticker.run(self._coord_stop)
        # Unlike TensorFlow's, stop_loop() runs after a failure above too, so the cleanup it does is
        # never skipped; an exception it raises is reported as well, after the first one.
        with self._coord.stop_on_exception():
            self.stop_loop()

    def run_loop(self) -> None:
        """Called at ``timer_interval_secs`` boundaries (back to back when None)."""
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    def start_loop(self) -> None:
        """Called once when the thread starts, before the first run."""

    def stop_loop(self) -> None:
        """Called once when the thread stops."""

    def statistics(self) -> TickStats:
        """Runs, missed slots, errors and lateness so far."""
        return self._ticker.statistics()

    def __repr__(self) -> str:
        interval = (
            "back-to-back"
            if not self._timer_interval_secs
            else f"every {self._timer_interval_secs:g}s"
        )
        return f"<LooperThread {self.name!r} {interval} {'alive' if self.is_alive() else 'idle'}>"
