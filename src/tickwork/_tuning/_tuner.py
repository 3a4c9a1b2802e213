"""StepsPerExecutionTuner: the thread that tunes steps-per-execution beside a training loop.

Same constructor, ``start()``, ``stop()`` and ``steps_per_execution`` attribute as
``tf.keras.utils.StepsPerExecutionTuner``; the thread is thin. Every ``interval`` seconds, on the
fixed-rate schedule every tickwork thread uses (a :class:`~tickwork.TimedThread`), it reads the
step counter, the clock, the caller's bound and the spe target, hands them to the bookkeeping in
:mod:`._core` (measurement windows, the pure policy, the history) and assigns what that returns.
"""

from __future__ import annotations

import itertools
import logging
import numbers
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .. import _fork
from .._clock import Clock, check_clock
from .._lifecycle import RunsInWith
from .._naming import thread_name
from .._tick_stats import TickStats
from .._timed_thread import TimedThread
from .._validate import check_finite, check_int, check_nonnegative, check_positive
from ._core import TuningCore
from ._history import TuningHistory
from ._policy import PolicyConfig
from ._spe import _to_int, as_step_counter, check_spe_target, read_spe

__all__ = ["DEFAULT_CANDIDATES", "StepsPerExecutionTuner"]

logger = logging.getLogger(__name__)

DEFAULT_CANDIDATES: tuple[int, ...] = tuple(1 << k for k in range(17))
"""Powers of two from 1 to 65536: few distinct values (a runner that compiles per value compiles
few programs), each within a factor of two of any spe."""

MaxSpe = int | Callable[[], Any] | None


class _TunerThread(TimedThread):
    def __init__(self, tuner: StepsPerExecutionTuner, interval: float, clock: Clock) -> None:
        self._tuner = tuner
        super().__init__(interval, clock=clock, name=thread_name("StepsPerExecutionTuner"))

    def on_interval(self) -> None:
        self._tuner._tick()  # noqa: SLF001 - the tuner's own thread, a part of the tuner

    def start_run(self, prepare: Callable[[], object]) -> threading.Thread:
        """Start a run after ``prepare()``; the thread that runs (already running: that one)."""
        self._start_thread(prepare)
        thread = self.thread
        assert thread is not None
        return thread

    def stop_requested(self) -> bool:
        return self._lifecycle.stop_requested()

    def in_own_thread(self) -> bool:
        return self._lifecycle.in_own_thread()


def _check_candidates(
    candidates: Sequence[int] | None, min_spe: int, top: int | None
) -> tuple[int, ...]:
    if candidates is None:
        values: tuple[int, ...] = DEFAULT_CANDIDATES
    else:
        if isinstance(candidates, str | bytes) or not isinstance(candidates, Sequence):
            raise TypeError(
                f"'candidates' must be an increasing sequence of ints >= 1; got {candidates!r}"
            )
        values = tuple(check_int("candidates[]", c, minimum=1) for c in candidates)
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError(f"'candidates' must be strictly increasing; got {list(candidates)!r}")
    kept = tuple(c for c in values if c >= min_spe and (top is None or c <= top))
    if not kept:
        bound = f"[{min_spe}, {top if top is not None else 'inf'}]"
        raise ValueError(
            f"'candidates' must hold a value within [min_spe, max_spe] = {bound}; "
            f"got {list(values)!r}"
        )
    return kept


class StepsPerExecutionTuner(RunsInWith):
    """Tunes steps-per-execution (spe) while a training loop runs, from its measured throughput.

    Args:
        optimizer: the step counter: an object with ``.iterations`` (a Keras optimizer, whose
            ``iterations`` is a variable; an int or anything with ``.numpy()``/``.item()`` works)
            or a zero-argument callable returning the number of steps run so far.
        spe_variable: where the tuned value goes: anything with ``.assign(n)`` that the training
            loop reads at each call (a ``tf.Variable``, a Keras 3 Variable, a
            :class:`tickwork.StepsPerExecution`).
        interval: seconds between measurements of the counter; a finite number > 0.
        change_spe_interval: measurements (windows) that make one throughput estimate, the least
            evidence before any decision; an int >= 1. Noisy windows extend an estimate to up to
            twice as many.
        change_threshold: relative change of throughput at the settled value that counts as a
            shift (3 estimates in a row start a new search); a finite number >= 0.
        min_spe: the smallest value the tuner assigns; an int >= 1.
        max_spe: the largest value it assigns: None (no bound but the candidates), an int
            >= ``min_spe``, or a zero-argument callable evaluated at each measurement (a result
            below 1 counts as 1). Never exceeded.
        candidates: the strictly increasing values the tuner may assign (default: powers of two
            up to 65536); values outside ``[min_spe, max_spe]`` are ignored.
        tolerance: it settles on the smallest value whose throughput is within this fraction of
            the best it measured; a finite number in [0, 1).
        max_call_seconds: a search never probes a value whose steps would take longer than this
            per call, at the per-step cost measured; None (no bound) or a finite number > 0.
        clock: the clock to measure and schedule on (tests pass a
            :class:`tickwork.testing.FakeClock`).

    Every ``interval`` seconds it measures the throughput at the spe in effect, searches for the
    smallest value within ``tolerance`` of the best, settles there and keeps measuring (a
    sustained shift of throughput starts a new search). Windows after a change of spe, across a
    pause without steps, or across a :meth:`mark_boundary` are discarded. A value the tuner
    picks is always a candidate in ``[min_spe, max_spe]`` (when ``max_spe`` is below every
    candidate, ``max_spe`` itself); the value in effect at :meth:`start`, or one set through
    :attr:`steps_per_execution`, is kept while it lies within the bounds. The algorithm and why
    the defaults differ from tf_keras's (5 s, 10 windows): ``docs/tuner.md``.
    """

    def __init__(
        self,
        optimizer: object,
        spe_variable: object,
        interval: float = 0.25,
        change_spe_interval: float = 4,
        change_threshold: float = 0.1,
        *,
        min_spe: int = 1,
        max_spe: MaxSpe = None,
        candidates: Sequence[int] | None = None,
        tolerance: float = 0.05,
        max_call_seconds: float | None = 0.5,
        clock: Clock | None = None,
    ) -> None:
        self.optimizer = optimizer
        self._counter = as_step_counter(optimizer, argument="optimizer")
        self._target = check_spe_target(spe_variable)
        self.interval = check_positive("interval", interval)
        windows: object = change_spe_interval
        if isinstance(windows, float) and windows.is_integer():
            windows = int(windows)  # tf_keras takes 10.0 as 10 too
        self.change_spe_interval = check_int("change_spe_interval", windows, minimum=1)
        self.spe_change_threshold = check_nonnegative("change_threshold", change_threshold)
        self.min_spe = check_int("min_spe", min_spe, minimum=1)
        static_max: int | None = None
        if max_spe is not None and not callable(max_spe):
            static_max = check_int("max_spe", max_spe, minimum=self.min_spe)
        self._max_spe = max_spe
        self.candidates = _check_candidates(candidates, self.min_spe, static_max)
        tolerance = check_finite("tolerance", tolerance)
        if not 0 <= tolerance < 1:
            raise ValueError(f"'tolerance' must be a finite number in [0, 1); got {tolerance!r}")
        if max_call_seconds is not None:
            max_call_seconds = check_positive("max_call_seconds", max_call_seconds)
        self._clock = check_clock(clock)
        self._config = PolicyConfig(
            candidates=self.candidates,
            windows=self.change_spe_interval,
            max_windows=2 * self.change_spe_interval,
            change_threshold=self.spe_change_threshold,
            tolerance=tolerance,
            max_call_seconds=max_call_seconds,
        )
        self._lock = threading.RLock()
        self._history = TuningHistory()
        self._core = TuningCore(
            self._config,
            interval=self.interval,
            min_spe=self.min_spe,
            history=self._history,
            origin=self._clock.now(),
        )
        self._current: int | None = read_spe(self._target)
        self._thread = _TunerThread(self, self.interval, self._clock)
        _fork.track(self)

    # -- the value --------------------------------------------------------------------------------

    @property
    def steps_per_execution(self) -> Any:
        """The spe target (the ``spe_variable`` given); assigning to this attribute sets its value.

        A value set here must be an int within ``[min_spe, max_spe]``; the tuner assigns it and
        starts a new search from it.
        """
        return self._target

    @steps_per_execution.setter
    def steps_per_execution(self, value: object) -> None:
        number = _to_int(value, "'steps_per_execution'")
        ceiling = self._ceiling()
        top = "inf" if ceiling is None else str(ceiling)
        if number < self.min_spe or (ceiling is not None and number > ceiling):
            raise ValueError(
                f"'steps_per_execution' must be an int in [min_spe, max_spe] = "
                f"[{self.min_spe}, {top}]; got {value!r}"
            )
        with self._lock:
            count = self._counter()
            self._target.assign(number)
            self._core.set_value(self._clock.now(), count, number)
            self._current = number

    @property
    def current_spe(self) -> int | None:
        """The value the tuner last assigned or found in effect (None if never known). Safe to read
        from any thread."""
        return self._current

    @property
    def history(self) -> TuningHistory:
        """Every measurement window and decision, exportable as CSV, JSON and a PNG plot."""
        return self._history

    # -- running ----------------------------------------------------------------------------------

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of the latest :meth:`start` (None before the first)."""
        return self._thread.thread

    def start(self) -> threading.Thread:
        """Start tuning in a daemon thread and return the thread (already running: the same one).

        After :meth:`stop` it starts again: it resumes where it left when the spe in effect is the
        one it left, and searches anew otherwise.
        """
        return self._thread.start_run(self._begin)

    def _begin(self) -> None:
        # A new run: the previous thread has ended, the new one has not started yet.
        ceiling = self._ceiling()
        with self._lock:
            count = self._counter()
            current = read_spe(self._target)
            assign = self._core.begin(self._clock.now(), count, current, ceiling)
            if assign is not None:
                self._target.assign(assign)
            self._current = self._core.assigned

    def stop(self, timeout: float | None = None) -> bool:
        """Stop tuning. No assignment happens once this returns, even if the thread is still
        finishing a read of the counter.

        Waits (at most ``timeout`` seconds, if given) for the thread to end; returns True when it
        has. Called from the tuner's own thread it does not wait.
        """
        with self._lock:  # _tick() assigns only under the lock, after looking at the stop
            self._thread.stop()
        return self._thread.stop(wait=not self._thread.in_own_thread(), timeout=timeout)

    def is_alive(self) -> bool:
        """True while the tuning thread runs."""
        return self._thread.is_alive()

    def mark_boundary(self) -> None:
        """Tell the tuner that something other than training happens now (an epoch end, an
        evaluation, a checkpoint): the measurement window in progress is discarded."""
        with self._lock:
            self._core.mark_boundary()

    def _leave(self, error: BaseException | None) -> None:
        self.stop()

    # -- what happened ----------------------------------------------------------------------------

    def statistics(self) -> TickStats:
        """The measuring thread's schedule statistics (calls, missed slots, errors, lateness)."""
        return self._thread.statistics()

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Exceptions raised while measuring (reading the counter, ``max_spe()``, assigning)."""
        return self._thread.errors

    def raise_errors(self) -> None:
        """Re-raise, in the calling thread, what measuring raised (nothing if it never did)."""
        self._thread.raise_errors()

    # -- the thread's work ------------------------------------------------------------------------

    def _ceiling(self) -> int | None:
        bound = self._max_spe
        if bound is None:
            return None
        if not callable(bound):
            return int(bound)
        value = bound()
        if isinstance(value, bool) or not (
            isinstance(value, numbers.Real) or hasattr(value, "numpy") or hasattr(value, "item")
        ):
            raise TypeError(f"'max_spe()' must return an int; got {value!r}")
        return max(1, _to_int(value, "'max_spe()'"))

    def _tick(self) -> None:
        # The caller's code (max_spe, the counter) runs outside the lock, so that stop() never
        # waits on it; what follows under the lock is short, and checks for a stop first.
        ceiling = self._ceiling()
        count = self._counter()
        now = self._clock.now()
        with self._lock:
            if self._thread.stop_requested():
                return
            observed = read_spe(self._target)
            value = self._core.tick(now, count, ceiling, observed)
            if value is not None:
                self._target.assign(value)
                self._current = value

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"<StepsPerExecutionTuner spe={self._current} {state}>"

    def _running_thread_names(self) -> list[str]:
        return []  # the TimedThread reports its own

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()  # the TimedThread stops its own run
