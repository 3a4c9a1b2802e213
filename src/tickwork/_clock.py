"""The one clock: monotonic time and interruptible waits.

Everything in tickwork that measures a duration or waits for one goes through a :class:`Clock`.
Library code never calls ``time.sleep``: every wait is a wait on a *stop* signal with a timeout, so
a stop request ends it at once. Tests swap in :class:`tickwork.testing.FakeClock` and move time by
hand instead of sleeping.
"""

from __future__ import annotations

import abc
import functools
import threading
import time
import weakref
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from ._protocols import CoordinatorLike, Waitable
    from ._sync import SignalSafeEvent

__all__ = [
    "FOREIGN_STOP_POLL",
    "MONOTONIC",
    "RELAY_SLICE",
    "Clock",
    "MonotonicClock",
    "any_stop",
    "as_waitable",
    "check_clock",
    "os_timeout",
    "relayed_stop",
    "repeated_waits",
]

# Seconds. A combined stop signal blocks on one of its parts; a part that cannot be subscribed to
# (a foreign Event or coordinator) is looked at this often while it waits on another one.
FOREIGN_STOP_POLL = 0.02
# Seconds. A relay thread (relayed_stop) blocks on its foreign stop in slices this long: it ends
# within one slice of its combination being closed or dropped; the stop itself wakes it at once.
RELAY_SLICE = 1.0


def os_timeout(timeout: float | None) -> float | None:
    """``timeout`` as the threading primitives take it: never negative, never an OverflowError.

    A wait longer than :data:`threading.TIMEOUT_MAX` (about 292 years; 1e300, inf) is a wait
    without a limit (None): ``Event.wait``, ``Lock.acquire`` and ``Thread.join`` raise
    OverflowError for such a timeout instead of waiting. Every wait in tickwork passes its timeout
    through here (the clock's waits do it for their callers).
    """
    if timeout is None or timeout > threading.TIMEOUT_MAX:
        return None
    if timeout < 0:
        return 0.0
    if timeout != timeout:  # NaN: no time to wait is the only safe reading
        return 0.0
    return timeout


class Clock(abc.ABC):
    """A monotonic clock with waits that a stop signal interrupts.

    ``now()`` is in seconds from an arbitrary origin and never goes backwards.
    """

    @abc.abstractmethod
    def now(self) -> float:
        """The current time, in seconds."""

    @abc.abstractmethod
    def wait(self, stop: Waitable | None, timeout: float | None) -> bool:
        """Wait until ``stop`` is set or ``timeout`` seconds have passed.

        Returns True when ``stop`` is set (at once if it already was), False on timeout. With
        ``timeout=None`` it waits for ``stop`` alone, and so does a timeout beyond
        :data:`threading.TIMEOUT_MAX` (see :func:`os_timeout`): no wait ever overflows. A wait
        with neither stop nor timeout would never end and is refused.
        """

    def wait_until(self, stop: Waitable | None, deadline: float) -> bool:
        """Wait until ``stop`` is set or the clock reaches ``deadline``.

        Returns True when stopped, False once ``now() >= deadline``. Unlike a single timed wait it
        never returns early, whatever the underlying wait does.
        """
        while True:
            if stop is not None and stop.is_set():
                return True
            remaining = deadline - self.now()
            if remaining <= 0:
                return False
            if self.wait(stop, remaining):
                return True


class MonotonicClock(Clock):
    """The real clock: :func:`time.monotonic` and :meth:`threading.Event.wait`."""

    def now(self) -> float:
        """``time.monotonic()``, in seconds."""
        return time.monotonic()

    def wait(self, stop: Waitable | None, timeout: float | None) -> bool:
        """Wait on ``stop`` (or a private event when there is none); see :meth:`Clock.wait`."""
        if stop is None and timeout is None:
            raise ValueError("a wait needs a stop signal or a timeout; got neither")
        timeout = os_timeout(timeout)
        if stop is None:
            # Nothing can interrupt this wait, but it still never calls time.sleep().
            threading.Event().wait(timeout)
            return False
        return stop.wait(timeout)

    def __repr__(self) -> str:
        return "MonotonicClock()"


MONOTONIC: Clock = MonotonicClock()
"""The process-wide real clock; what every tickwork object uses unless given another."""


def check_clock(clock: object, *, argument: str = "clock") -> Clock:
    """``clock`` itself, or :data:`MONOTONIC` for None; anything else is a TypeError naming it."""
    if clock is None:
        return MONOTONIC
    if not isinstance(clock, Clock):
        raise TypeError(
            f"'{argument}' must be a tickwork.Clock (e.g. tickwork.testing.FakeClock) or None; "
            f"got {clock!r}"
        )
    return clock


class _CoordinatorWaitable:
    """Adapts anything with ``should_stop()``/``wait_for_stop(timeout)`` (a Coordinator, tickwork's
    or TensorFlow's) to :class:`Waitable`."""

    __slots__ = ("_coord",)

    def __init__(self, coord: CoordinatorLike) -> None:
        self._coord = coord

    def is_set(self) -> bool:
        return bool(self._coord.should_stop())

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._coord.wait_for_stop(timeout))

    def __repr__(self) -> str:
        return f"<stop signal of {self._coord!r}>"


def _is_waitable(obj: object) -> bool:
    """What ``isinstance(obj, Waitable)`` says (it has ``is_set`` and ``wait``), without typing."""
    return callable(getattr(obj, "is_set", None)) and callable(getattr(obj, "wait", None))


def as_waitable(stop: object, *, argument: str = "stop") -> Waitable | None:
    """Turn a ``stop=`` argument into a :class:`Waitable`.

    Accepts None, a :class:`threading.Event` (or anything with ``is_set()`` and ``wait()``), or a
    coordinator (anything with ``should_stop()`` and ``wait_for_stop()``). A tickwork Coordinator's
    own event is used directly so a wait on it costs nothing extra.
    """
    if stop is None:
        return None
    own = getattr(stop, "_tickwork_stop_event", None)
    if own is not None and _is_waitable(own):
        return own  # type: ignore[no-any-return]
    if _is_waitable(stop):
        return stop  # type: ignore[return-value]
    if callable(getattr(stop, "should_stop", None)) and callable(
        getattr(stop, "wait_for_stop", None)
    ):
        return _CoordinatorWaitable(stop)  # type: ignore[arg-type]
    raise TypeError(
        f"'{argument}' must be a threading.Event (anything with is_set() and wait()) or a "
        f"Coordinator (anything with should_stop() and wait_for_stop()); got {stop!r}"
    )


def stop_check(stop: object, *, argument: str = "stop") -> Callable[[], bool] | None:
    """A reading of a ``stop=`` argument that is only ever looked at, never waited on: anything
    with ``should_stop()`` (a coordinator) or ``is_set()`` (an Event); None for None."""
    if stop is None:
        return None
    should_stop = getattr(stop, "should_stop", None)
    if callable(should_stop):
        return lambda: bool(should_stop())
    is_set = getattr(stop, "is_set", None)
    if callable(is_set):
        return lambda: bool(is_set())
    raise TypeError(
        f"'{argument}' must be None, a Coordinator (anything with should_stop()) or an Event "
        f"(anything with is_set()); got {stop!r}"
    )


class _AnyStop:
    """Set when any of its parts is set (see :func:`any_stop` and :func:`relayed_stop`)."""

    __slots__ = (
        "__weakref__",
        "_block_on",
        "_closed",
        "_foreign",
        "_joined",
        "_others",
        "_parts",
        "_relay_name",
        "_threads",
    )

    def __init__(self, parts: tuple[Waitable, ...], relay_name: str | None = None) -> None:
        from ._sync import SignalSafeEvent

        self._parts = parts
        # tickwork's own events call back into `_joined` when set; the rest are waited on or
        # polled, or (relayed) each has a thread blocked on it that sets `_joined`.
        self._joined = SignalSafeEvent()
        foreign = [p for p in parts if not isinstance(p, SignalSafeEvent)]
        self._relay_name = relay_name
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._foreign = tuple(foreign)
        if relay_name is not None:
            foreign = []
        self._block_on: Waitable = foreign[0] if foreign else self._joined
        self._others = tuple(foreign[1:]) if foreign else ()
        for part in parts:
            if isinstance(part, SignalSafeEvent):
                part.subscribe(self._joined.set)
        if relay_name is not None:
            if any(part.is_set() for part in self._foreign):
                self._joined.set()
            self._start_relays()

    @property
    def event(self) -> Waitable:
        """tickwork's own event behind the combination (set by every part once relayed)."""
        return self._joined

    def _start_relays(self) -> None:
        from ._naming import thread_name

        self._threads = []
        for part in self._foreign:
            thread = threading.Thread(
                target=_relay,
                args=(part, weakref.ref(self._joined), self._closed),
                name=thread_name(f"stop relay ({self._relay_name})"),
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        """End the relay threads (within :data:`RELAY_SLICE`; not waited for)."""
        self._closed.set()

    def running_thread_names(self) -> list[str]:
        return [t.name for t in self._threads if t.is_alive()]

    def after_fork_in_child(self) -> None:
        """The relay threads did not come along: start them again (unless closed)."""
        self._joined.reinit_after_fork()
        if self._relay_name is not None and not self._closed.is_set():
            self._closed = threading.Event()
            self._start_relays()

    def own_event(self) -> SignalSafeEvent | None:
        """The event set whenever this combination is, when no part of it is polled."""
        if self._others or self._block_on is not self._joined:
            return None
        return self._joined

    def is_set(self) -> bool:
        return any(part.is_set() for part in self._parts)

    def wait(self, timeout: float | None = None) -> bool:
        timeout = os_timeout(timeout)
        polled = self._others or self._block_on is not self._joined
        if not polled:
            return self._joined.wait(timeout)
        # Real time, whatever clock the waiter uses: this waits on real events.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._joined.is_set() or self.is_set():
                return True
            remaining = FOREIGN_STOP_POLL if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._block_on.wait(min(remaining, FOREIGN_STOP_POLL)):
                return True

    def __repr__(self) -> str:
        return f"<stop signal: any of {', '.join(repr(p) for p in self._parts)}>"


def _relay(stop: Waitable, event: weakref.ref[SignalSafeEvent], closed: threading.Event) -> None:
    while not closed.is_set() and event() is not None:
        if stop.wait(RELAY_SLICE):
            target = event()
            if target is not None:
                target.set()
            return


def relayed_stop(*stops: Waitable | None, name: str) -> _AnyStop:
    """The combination of :func:`any_stop` for a long-lived owner that never polls: each foreign
    stop gets a daemon thread (``tickwork:stop relay (name)``) blocked on it, so a wait on
    ``.event`` ends at once on any stop and never polls (a relay thread wakes once every
    :data:`RELAY_SLICE` to see whether it was closed). The owner calls
    ``close()`` when done (the threads end within :data:`RELAY_SLICE`)."""
    return _AnyStop(tuple(stop for stop in stops if stop is not None), relay_name=name)


def any_stop(*stops: Waitable | None) -> Waitable | None:
    """One stop signal that is set when any of ``stops`` is (None entries are ignored).

    Returns None when none is given and the signal itself when one is. tickwork's own events wake
    a waiter at once; a foreign one (a plain :class:`threading.Event`, TensorFlow's coordinator) is
    blocked on when it is the only one, and otherwise looked at every :data:`FOREIGN_STOP_POLL`
    seconds.
    """
    parts = tuple(stop for stop in stops if stop is not None)
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return _AnyStop(parts)


def repeated_waits(
    clock: Clock, stop: Waitable
) -> tuple[Callable[[], float], Callable[[float], bool]]:
    """``(now, wait_until)`` for the one thread that waits on ``stop`` for deadline after
    deadline, as a periodic thread does between its calls: ``wait_until(deadline)`` is
    ``clock.wait_until(stop, deadline)``.

    On the real clock with a stop signal of tickwork's own (the stop of a TimedThread's run, a
    tickwork Coordinator, any combination of them) the wait is a :class:`~tickwork._sync.StopGate`:
    one call in C per wait instead of a Condition's Python, which is most of what a tick costs.
    """
    from ._sync import SignalSafeEvent, StopGate

    if type(clock) is MonotonicClock:
        event: SignalSafeEvent | None = None
        if isinstance(stop, SignalSafeEvent):
            event = stop
        elif isinstance(stop, _AnyStop):
            event = stop.own_event()
        if event is not None:
            return time.monotonic, StopGate(event, stop).wait_until
    return clock.now, functools.partial(clock.wait_until, stop)
