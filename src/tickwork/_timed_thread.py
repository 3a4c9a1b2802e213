"""TimedThread: call ``on_interval()`` every ``interval`` seconds beside the training loop.

Same surface as ``tf.keras.utils.TimedThread`` (Keras 2), on the fixed-rate schedule of
:mod:`tickwork._schedule`: call k is due at start + k * interval however long the calls take, so
it does not drift, and an overrun skips slots instead of bursting. Exceptions from ``on_interval``
are logged with their traceback, counted and kept; :meth:`TimedThread.raise_errors` re-raises them
in the caller's thread.
"""

from __future__ import annotations

import abc
import enum
import functools
import threading
from collections.abc import Callable, Mapping, Sequence

from . import _fork
from ._clock import Clock, any_stop, as_waitable, check_clock
from ._errors import ErrorLog, LogThrottle, add_note, group_or_single
from ._lifecycle import RunsInWith, ThreadLifecycle
from ._log import get_logger
from ._naming import callable_name
from ._schedule import Overrun
from ._ticker import Ticker
from ._validate import check_choice, check_nonnegative

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import Any

    from ._protocols import StopSignal, Waitable
    from ._tick_stats import TickStats

__all__ = ["OnError", "TimedThread", "every"]

logger = get_logger(__name__)

# What threading.Thread accepts that still makes sense here: TimedThread supplies the target.
_THREAD_KWARGS = frozenset({"name", "group"})
# What TimedThread.__init__ sets: missing on an instance whose class's __init__ did not call it.
_SET_BY_INIT = frozenset(
    {
        "_interval",
        "daemon",
        "thread_kwargs",
        "_on_error",
        "_overrun",
        "_clock",
        "_external_stop",
        "_coordinator",
        "_lifecycle",
        "_errors",
        "_log_throttle",
        "_ticker",
    }
)


class OnError(str, enum.Enum):
    """What a TimedThread does after ``on_interval`` raises (it is always logged and kept)."""

    CONTINUE = "continue"
    STOP = "stop"


class TimedThread(RunsInWith):
    """Runs ``on_interval()`` in a thread every ``interval`` seconds, on a fixed-rate grid.

    Args:
        interval: seconds between the due times of consecutive calls; a finite number >= 0. 0 calls
            back to back (checking for a stop before each call), as tf_keras does; a value beyond
            :data:`threading.TIMEOUT_MAX` (1e300) makes one call and then waits for the stop.
        on_error: ``"continue"`` (default) keeps the schedule going after ``on_interval`` raises;
            ``"stop"`` ends the thread. Either way the exception is logged with its traceback,
            counted in :meth:`statistics` and kept for :meth:`raise_errors`.
        overrun: what happens to slots that pass while a call is still running: ``"skip"``
            (default: stay on the grid, count them missed), ``"catch_up"`` (run them back to back)
            or ``"shift"`` (move the grid). See :class:`tickwork.Overrun`.
        clock: the clock to schedule on (tests pass :class:`tickwork.testing.FakeClock`).
        stop: None, a :class:`threading.Event` (anything :class:`tickwork.Waitable`) or a
            :class:`tickwork.Coordinator`: once it is set, the thread ends as after :meth:`stop`.
            A Coordinator also gets the thread's errors: an exception from ``on_interval`` is
            reported to it (``request_stop``, as :class:`tickwork.LooperThread` does), which
            stops it, this thread included, and its ``join()`` re-raises the exception; each
            started thread is registered with it. The exception is kept here too.
        **kwargs: passed to :class:`threading.Thread` (``name``, ``daemon``). The thread is a
            daemon unless ``daemon=False`` is given. A ``name`` given is the thread's name,
            exactly (as in TensorFlow); without one it is ``tickwork:TimedThread(<class>)``.

    The first call is made as soon as the thread starts. ``start()`` on a running thread logs a
    warning and does nothing else; after ``stop()`` it can be started again (a ``stop=`` signal
    that is set still ends each new run at once). Used as a context manager it starts on entry,
    and on exit stops and waits for a call in progress to finish.
    """

    def __init__(
        self,
        interval: float,
        *,
        on_error: OnError | str = OnError.CONTINUE,
        overrun: Overrun | str = Overrun.SKIP,
        clock: Clock | None = None,
        stop: StopSignal = None,
        **kwargs: Any,
    ) -> None:
        if type(self).on_interval is TimedThread.on_interval:  # refused now, not at every tick
            raise TypeError(
                f"{type(self).__qualname__} must define on_interval(), the method called every "
                "interval (or call a function: tickwork.every(interval, fn))"
            )
        self.interval = interval
        daemon = kwargs.pop("daemon", True)
        if not isinstance(daemon, bool):
            raise TypeError(f"'daemon' must be a bool; got {daemon!r}")
        unknown = sorted(set(kwargs) - _THREAD_KWARGS)
        if unknown:
            raise TypeError(
                f"TimedThread passes only {sorted(_THREAD_KWARGS | {'daemon'})} on to "
                f"threading.Thread (it supplies the target itself); got {unknown}"
            )
        self.daemon = daemon
        self.thread_kwargs: dict[str, Any] = kwargs
        self._on_error = check_choice("on_error", on_error, OnError)
        self._overrun = check_choice("overrun", overrun, Overrun)
        self._clock = check_clock(clock)
        self._external_stop = as_waitable(stop)
        request_stop = getattr(stop, "request_stop", None)
        # Anything with request_stop() (tickwork's or TensorFlow's Coordinator) gets the errors.
        self._coordinator: Any = stop if callable(request_stop) else None
        self._lifecycle = ThreadLifecycle(self)
        self._errors = ErrorLog()
        self._log_throttle = LogThrottle(logger, "on_interval()")
        self._ticker = Ticker(
            self._interval,
            self.on_interval,  # looked up again at each start (_tick_target)
            clock=self._clock,
            overrun=self._overrun,
            on_error=self._handle_error,
        )
        _fork.track(self)

    if not TYPE_CHECKING:  # at run time only: type checkers keep rejecting unknown attributes

        def __getattr__(self, name: str) -> Any:
            # Reached only when normal lookup fails: a subclass whose __init__ forgot
            # super().__init__(interval) is told so, rather than "no attribute 'thread_kwargs'".
            # Still an AttributeError, so getattr(obj, name, default) and hasattr() work.
            if name in _SET_BY_INIT:
                raise AttributeError(
                    f"{type(self).__qualname__} is not set up: its __init__ must call "
                    f"super().__init__(interval) (TimedThread.__init__ sets {name!r})",
                    name=name,
                    obj=self,
                )
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
            )

    # -- the interval -----------------------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between calls. A new value takes effect at the next ``start()``."""
        return self._interval

    @interval.setter
    def interval(self, value: float) -> None:
        # 0 is back to back, as in tf_keras (whose loop waits 0 s between calls).
        self._interval = check_nonnegative("interval", value)

    # -- what subclasses provide ------------------------------------------------------------------

    @abc.abstractmethod
    def on_interval(self) -> None:
        """User-defined behaviour, called in the thread once per interval."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement on_interval()")

    # -- running ----------------------------------------------------------------------------------

    def _default_name(self) -> str:
        return f"TimedThread({callable_name(type(self))})"

    def _tick_target(self) -> Callable[[], object]:
        """What each tick calls, looked up once per start: ``on_interval`` itself, not a wrapper
        around it (one Python call less per tick)."""
        return self.on_interval

    def _handle_error(self, exc: BaseException) -> bool:
        thread_name = threading.current_thread().name
        add_note(exc, f"raised by on_interval() in thread {thread_name!r}")
        count = self._errors.record(exc)
        go_on = self._on_error is OnError.CONTINUE and isinstance(exc, Exception)
        coordinator = self._coordinator
        # The first failures with their traceback, then a summary now and then: a callback that
        # fails on every tick is counted and kept, but does not write a traceback per tick.
        if coordinator is not None:
            then = "reported to the coordinator"
        else:
            then = "the schedule goes on" if go_on else "the thread stops"
        self._log_throttle.failed(self, exc, count, self._clock.now(), then)
        if coordinator is not None:
            try:
                coordinator.request_stop((type(exc), exc, exc.__traceback__))
            except BaseException as late:  # a joined Coordinator raises what it can no longer keep
                logger.warning(
                    "%r: the coordinator refused the error (%s: %s); it is kept in errors",
                    self,
                    type(late).__name__,
                    late,
                )
                return False
        return go_on

    def _run(self, own_stop: Waitable) -> None:
        logger.debug("%r: started", self)
        stop = any_stop(own_stop, self._external_stop)
        assert stop is not None
        try:
            self._ticker.run(stop)
        except BaseException as exc:
            # Not on_interval() (the ticker hands that to _handle_error) but the loop itself,
            # e.g. a clock that raised: kept and logged like any error, never left to excepthook.
            add_note(exc, f"ended the thread {threading.current_thread().name!r} of {self!r}")
            self._errors.record(exc)
            logger.error(
                "%r: the thread was ended by %s",
                self,
                type(exc).__name__,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        finally:
            self._log_throttle.flush(self)
        logger.debug("%r: finished", self)

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of the latest ``start()`` (None before the first)."""
        return self._lifecycle.thread

    @property
    def thread_stop_event(self) -> Waitable | None:
        """The stop signal of the latest ``start()``'s run (None before the first): set once a
        stop is requested. To stop the thread, call :meth:`stop`."""
        return None if self._lifecycle.thread is None else self._lifecycle.stop_event

    def start(self) -> None:
        """Start the thread. A no-op (with a warning) if it is already running.

        If a stop was requested and the previous thread is still finishing its call, this waits
        for it, then starts a fresh thread.
        """
        if self._start_thread() is None:
            logger.warning("%r is already running; start() does nothing", self)

    def _start_thread(self, prepare: Callable[[], object] | None = None) -> threading.Thread | None:
        """Start a run (``prepare()`` first); None when one is running and not stopping."""

        def before() -> None:
            self._ticker.interval = self._interval
            self._ticker.call = self._tick_target()
            if prepare is not None:
                prepare()

        kwargs = dict(self.thread_kwargs)
        chosen = kwargs.pop("name", None)
        thread = self._lifecycle.start(
            self._run,
            name=chosen or self._default_name(),
            daemon=self.daemon,
            prepare=before,
            exact_name=bool(chosen),
            **kwargs,
        )
        register = getattr(self._coordinator, "register_thread", None)
        if thread is not None and callable(register):
            register(thread)
        return thread

    def stop(self, *, wait: bool = False, timeout: float | None = None) -> bool:
        """Ask the thread to stop; a wait for the next slot ends at once.

        With ``wait=True`` it also waits (at most ``timeout`` seconds, if given) for a call in
        progress to finish. Returns True when the thread is no longer running. A ``stop=`` signal
        given to the constructor is left as it is.
        """
        return self._lifecycle.stop(wait=wait, timeout=timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` real seconds) for the thread to end; True when it has.

        It does not ask the thread to stop: call :meth:`stop` first (or ``stop(wait=True)``).
        """
        return self._lifecycle.join(timeout)

    def is_alive(self) -> bool:
        """True while the thread runs (a call in progress after stop() included)."""
        return self._lifecycle.is_alive()

    def _leave(self, error: BaseException | None) -> None:
        self.stop(wait=not self._lifecycle.in_own_thread())

    # -- what happened ----------------------------------------------------------------------------

    def statistics(self) -> TickStats:
        """Calls, missed slots, errors and lateness so far (across restarts)."""
        return self._ticker.statistics()

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """The exceptions ``on_interval`` raised, oldest first (the first 64 are kept)."""
        return self._errors.kept()

    def raise_errors(self) -> None:
        """Re-raise, in the calling thread, what ``on_interval`` raised (nothing if it never did).

        One exception is re-raised as itself, with its original traceback; several are raised
        together as an ExceptionGroup.
        """
        kept = self._errors.kept()
        count = self._errors.count
        more = f" ({count} raised, the first {len(kept)} kept)" if count > len(kept) else ""
        error = group_or_single(f"{self!r}: on_interval() raised {count} exceptions{more}", kept)
        if error is not None:
            raise error

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"<{type(self).__qualname__} interval={self._interval:g}s {state}>"

    def _running_thread_names(self) -> list[str]:
        return self._lifecycle.running_thread_names()

    def _after_fork_in_child(self) -> None:
        self._lifecycle.reinit_after_fork()
        self._errors.reinit_after_fork()
        self._log_throttle.reinit_after_fork()
        self._ticker.reinit_after_fork()


class _CallableTimedThread(TimedThread):
    def __init__(
        self,
        interval: float,
        fn: Callable[..., object],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        **options: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"'fn' must be callable; got {fn!r}")
        self._fn = fn
        self._fn_args = tuple(args)
        self._fn_kwargs = dict(kwargs)
        super().__init__(interval, **options)

    def _default_name(self) -> str:
        return f"every({callable_name(self._fn)})"

    def _tick_target(self) -> Callable[[], object]:
        if type(self).on_interval is not _CallableTimedThread.on_interval:
            return super()._tick_target()  # a subclass's own on_interval
        if self._fn_args or self._fn_kwargs:
            return functools.partial(self._fn, *self._fn_args, **self._fn_kwargs)
        return self._fn

    def on_interval(self) -> None:
        self._fn(*self._fn_args, **self._fn_kwargs)

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"<{self._default_name()} interval={self._interval:g}s {state}>"


def every(
    interval: float,
    fn: Callable[..., object],
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    on_error: OnError | str = OnError.CONTINUE,
    overrun: Overrun | str = Overrun.SKIP,
    clock: Clock | None = None,
    stop: StopSignal = None,
    name: str | None = None,
    daemon: bool = True,
) -> TimedThread:
    """A TimedThread that calls ``fn(*args, **kwargs)`` every ``interval`` seconds.

    It is returned not yet started, like :class:`threading.Timer`: use it as a context manager
    (``with every(5, report): train()``) or call ``start()`` and ``stop()``.
    """
    options: dict[str, Any] = {
        "on_error": on_error,
        "overrun": overrun,
        "clock": clock,
        "stop": stop,
        "daemon": daemon,
    }
    if name is not None:
        options["name"] = name
    return _CallableTimedThread(interval, fn, args, kwargs or {}, **options)
