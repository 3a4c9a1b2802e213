"""Coordinator: stop a group of threads together and carry their exceptions to the caller.

The whole ``tf.train.Coordinator`` API with its semantics, without TensorFlow, plus:

* :meth:`Coordinator.join` waits on events: it returns within milliseconds of the last thread
  ending (TensorFlow polls every second) and measures the grace period with the clock.
* Every reported exception is kept, not only the first; later ones are logged with their
  traceback instead of being dropped, and :attr:`Coordinator.reported_exceptions` /
  :meth:`Coordinator.exception_group` give them all. Each carries a note naming the thread that
  reported it.
* Clean-stop types default to ``StopIteration``, plus ``tf.errors.OutOfRangeError`` once
  TensorFlow has been imported by someone else (it is never imported from here).
* Safe around ``os.fork()`` (see :mod:`tickwork._fork`) and usable from signal handlers
  (see :func:`tickwork.stop_on_signals`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from types import TracebackType

from . import _fork
from ._clock import Clock, check_clock
from ._errors import BaseExceptionGroup, add_note
from ._log import get_logger
from ._naming import thread_name
from ._sync import SignalSafeEvent
from ._validate import check_lenient_seconds, check_lenient_timeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["Coordinator"]

logger = get_logger(__name__)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]  # a type alias

# How long a helper that waits for one thread to end sleeps between checks that join() is over.
_WATCHER_RECHECK_SECONDS = 0.25


def _tensorflow_out_of_range() -> type[BaseException] | None:
    """tf.errors.OutOfRangeError if TensorFlow is already imported; never imports it."""
    module = sys.modules.get("tensorflow.python.framework.errors_impl")
    error = getattr(module, "OutOfRangeError", None)
    if isinstance(error, type) and issubclass(error, BaseException):
        return error
    return None


def _exception_of(ex: object) -> BaseException:
    """The exception in ``ex`` (an exception or an exc_info tuple); TypeError/ValueError if none."""
    if isinstance(ex, BaseException):
        return ex
    if isinstance(ex, tuple):
        if len(ex) != 3 or not isinstance(ex[1], BaseException):
            raise ValueError(
                "'ex' must be an exception or an exc_info tuple (type, value, traceback) "
                f"holding one; got {ex!r}"
            )
        return ex[1]
    raise TypeError(
        f"'ex' must be None, an exception or an exc_info tuple (type, value, traceback); "
        f"got {ex!r} of type {type(ex).__name__}"
    )


def _exception_types(given: object) -> tuple[object, ...]:
    """``clean_stop_exception_types`` as a tuple; a TypeError naming the argument, the rule and
    the value for anything that is not an iterable of classes (a lone class, a number, a str)."""
    rule = (
        "'clean_stop_exception_types' must be an iterable of exception classes (such as "
        "(StopIteration,)) or None"
    )
    if isinstance(given, type):
        raise TypeError(
            f"{rule}; got the class {given.__qualname__} itself (write ({given.__qualname__},))"
        )
    if isinstance(given, (str, bytes)):
        raise TypeError(f"{rule}; got the string {given!r}")
    if not isinstance(given, Iterable):
        raise TypeError(f"{rule}; got {given!r} of type {type(given).__name__}")
    return tuple(given)


class _StopOnException:
    """The ``with`` block of :meth:`Coordinator.stop_on_exception`; its ``__exit__`` says (to type
    checkers too) that it swallows what it reports."""

    __slots__ = ("_coord",)

    def __init__(self, coord: Coordinator) -> None:
        self._coord = coord

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is None or exc is None:
            return False
        self._coord.request_stop((exc_type, exc, tb))
        return True


class Coordinator:
    """A coordinator for threads: one stop request for all of them, and their exceptions.

    Args:
        clean_stop_exception_types: exception types that, when reported, mean a plain stop
            rather than an error. Defaults to ``StopIteration`` and, when TensorFlow has been
            imported, ``tf.errors.OutOfRangeError``.
        clock: the clock that wait_for_stop() and join()'s grace period use.

    Typical use::

        coord = Coordinator()
        threads = [LooperThread(coord, 1.0, target=log_metrics), ...]
        for t in threads:
            t.start()
        with coord.stop_on_exception():
            while not coord.should_stop():
                train_step()
        coord.request_stop()
        coord.join(threads)   # re-raises the first exception a thread reported
    """

    def __init__(
        self,
        clean_stop_exception_types: Iterable[type[BaseException]] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        if clean_stop_exception_types is None:
            self._clean_types: tuple[type[BaseException], ...] | None = None
        else:
            types = _exception_types(clean_stop_exception_types)
            checked: list[type[BaseException]] = []
            for t in types:
                if not (isinstance(t, type) and issubclass(t, BaseException)):
                    raise TypeError(
                        "'clean_stop_exception_types' must hold exception classes; "
                        f"got {t!r} in {types!r}"
                    )
                checked.append(t)
            self._clean_types = tuple(checked)
        self._clock = check_clock(clock)
        self._lock = threading.RLock()
        self._stop_event = SignalSafeEvent()
        self._reported: list[BaseException] = []
        self._first_reported_noted = False
        self._joined = False
        self._registered_threads: set[threading.Thread] = set()
        self._wakeups: set[SignalSafeEvent] = set()
        _fork.track(self)

    # Lets tickwork waits (checkpoints_iterator(stop=coord), ...) wait on the event directly.
    @property
    def _tickwork_stop_event(self) -> SignalSafeEvent:
        return self._stop_event

    @property
    def clock(self) -> Clock:
        """The clock its waits and grace periods are timed on."""
        return self._clock

    @property
    def clean_stop_exception_types(self) -> tuple[type[BaseException], ...]:
        """The types that count as a plain stop (the default set is evaluated now)."""
        if self._clean_types is not None:
            return self._clean_types
        tf_error = _tensorflow_out_of_range()
        return (StopIteration,) if tf_error is None else (StopIteration, tf_error)

    # -- stopping ---------------------------------------------------------------------------------

    def request_stop(
        self, ex: BaseException | ExcInfo | tuple[None, None, None] | None = None
    ) -> None:
        """Request that the threads stop, optionally reporting an exception.

        ``ex`` is an exception or an exc_info tuple. Exceptions of a clean-stop type count as a
        plain stop. The first exception reported is the one :meth:`join` re-raises; later ones
        are kept too (:attr:`reported_exceptions`) and logged. After :meth:`join` the coordinator
        cannot report any more, so a reported exception is raised right here instead.
        """
        error = None if ex is None or ex == (None, None, None) else _exception_of(ex)
        if error is not None and isinstance(error, self.clean_stop_exception_types):
            error = None
        with self._lock:
            if self._joined and error is not None:
                raise error
            if error is not None:
                self._record(error)
            self._stop_event.set()
            for wakeup in self._wakeups:
                wakeup.set()

    def _record(self, error: BaseException) -> None:
        thread = threading.current_thread().name
        add_note(error, f"reported to the Coordinator by thread {thread!r}")
        self._reported.append(error)
        exc_info = (type(error), error, error.__traceback__)
        if len(self._reported) == 1:
            logger.info(
                "Error reported to Coordinator by thread %r: %s: %s",
                thread,
                type(error).__name__,
                error,
                exc_info=exc_info,
            )
        else:
            logger.warning(
                "Another error reported to Coordinator by thread %r after %d before it; join() "
                "re-raises the first, this one is kept in reported_exceptions: %s: %s",
                thread,
                len(self._reported) - 1,
                type(error).__name__,
                error,
                exc_info=exc_info,
            )

    def clear_stop(self) -> None:
        """Forget the stop request, the reported exceptions and the join, to start afresh."""
        with self._lock:
            self._joined = False
            self._reported = []
            self._first_reported_noted = False
            self._stop_event.clear()

    def should_stop(self) -> bool:
        """True once a stop has been requested."""
        return self._stop_event.is_set()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Wait until a stop is requested, at most ``timeout`` seconds; True if it was.

        As in TensorFlow (and :meth:`threading.Event.wait`), a negative timeout does not wait;
        None, infinity or one beyond :data:`threading.TIMEOUT_MAX` waits without a limit.
        """
        timeout = check_lenient_timeout("timeout", timeout)
        return self._clock.wait(self._stop_event, timeout)

    def stop_on_exception(self) -> AbstractContextManager[None, bool]:
        """Report any exception raised in the block (and swallow it there: join() re-raises it)."""
        return _StopOnException(self)

    # -- threads ----------------------------------------------------------------------------------

    def register_thread(self, thread: threading.Thread) -> None:
        """Have :meth:`join` wait for ``thread`` too."""
        if not isinstance(thread, threading.Thread):
            raise TypeError(f"'thread' must be a threading.Thread; got {thread!r}")
        with self._lock:
            self._registered_threads.add(thread)

    def join(
        self,
        threads: Iterable[threading.Thread] | None = None,
        stop_grace_period_secs: float = 120,
        ignore_live_threads: bool = False,
    ) -> None:
        """Wait for the threads to end, then re-raise the first reported exception.

        Waits until every thread (the registered ones plus ``threads``) has ended or a stop has
        been requested; then gives the threads still running ``stop_grace_period_secs`` seconds
        to end. Raises the first exception reported with :meth:`request_stop` if any; else, if
        threads are still running, RuntimeError naming them (or, with ``ignore_live_threads``,
        a log line). Threads registered after this call are not waited for.
        """
        # As in TensorFlow: a negative grace period is none; infinity waits for the threads.
        grace = check_lenient_seconds("stop_grace_period_secs", stop_grace_period_secs)
        with self._lock:
            waiting = set(self._registered_threads)
            if threads is not None:
                for thread in threads:
                    if not isinstance(thread, threading.Thread):
                        raise TypeError(
                            f"'threads' must hold threading.Thread objects; got {thread!r}"
                        )
                    waiting.add(thread)
            wakeup = SignalSafeEvent()
            self._wakeups.add(wakeup)
        watched = sorted(waiting, key=lambda t: t.name)
        done = threading.Event()
        try:
            self._watch(watched, wakeup, done)
            # Until every thread ends or a stop is requested.
            while True:
                wakeup.clear()
                if not any(t.is_alive() for t in watched) or self._stop_event.is_set():
                    break
                self._clock.wait(wakeup, None)
            # Then the grace period, on the clock.
            deadline = self._clock.now() + grace
            while True:
                wakeup.clear()
                if not any(t.is_alive() for t in watched):
                    break
                if not self._clock.wait_until(wakeup, deadline):
                    break
        finally:
            done.set()
            with self._lock:
                self._wakeups.discard(wakeup)
        stragglers = [t.name for t in watched if t.is_alive()]
        with self._lock:
            self._joined = True
            self._registered_threads = set()
            if self._reported:
                first = self._reported[0]
                if len(self._reported) > 1 and not self._first_reported_noted:
                    self._first_reported_noted = True
                    add_note(
                        first,
                        f"{len(self._reported) - 1} more exception(s) were reported after this "
                        "one: see Coordinator.reported_exceptions",
                    )
                raise first
            if stragglers:
                message = "Coordinator stopped with threads still running: " + " ".join(stragglers)
                if not ignore_live_threads:
                    raise RuntimeError(message)
                logger.info(message)

    @staticmethod
    def _watch(
        threads: list[threading.Thread], wakeup: SignalSafeEvent, done: threading.Event
    ) -> None:
        """Set ``wakeup`` as each thread ends (helper threads block in Thread.join())."""

        def watch(thread: threading.Thread) -> None:
            while thread.is_alive() and not done.is_set():
                thread.join(_WATCHER_RECHECK_SECONDS)
            wakeup.set()

        caller = threading.current_thread().name
        for thread in threads:
            if thread.is_alive():
                threading.Thread(
                    target=watch,
                    args=(thread,),
                    name=thread_name(f"Coordinator.join({thread.name}) for {caller}"),
                    daemon=True,
                ).start()

    @property
    def joined(self) -> bool:
        """True once :meth:`join` has finished (until :meth:`clear_stop`)."""
        return self._joined

    # -- exceptions -------------------------------------------------------------------------------

    def raise_requested_exception(self) -> None:
        """Re-raise the first exception reported with :meth:`request_stop`, if any."""
        with self._lock:
            if self._reported:
                raise self._reported[0]

    @property
    def reported_exceptions(self) -> tuple[BaseException, ...]:
        """Every exception reported so far (clean stops excluded), first first."""
        with self._lock:
            return tuple(self._reported)

    def exception_group(self) -> BaseException | None:
        """All reported exceptions as one BaseExceptionGroup (None when there are none)."""
        with self._lock:
            if not self._reported:
                return None
            return BaseExceptionGroup(
                f"{len(self._reported)} exception(s) reported to the Coordinator",
                list(self._reported),
            )

    def __repr__(self) -> str:
        state = "stop requested" if self.should_stop() else "running"
        return f"<Coordinator {state}, {len(self._reported)} exception(s) reported>"

    def _running_thread_names(self) -> list[str]:
        with self._lock:
            threads = list(self._registered_threads)
        current = threading.current_thread()
        return sorted(t.name for t in threads if t.is_alive() and t is not current)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        self._stop_event.reinit_after_fork()
        self._wakeups = set()
        # threading marks every thread but the forking one as ended in the child: drop them.
        self._registered_threads = {t for t in self._registered_threads if t.is_alive()}
