"""An Event that a signal handler may set.

Python runs signal handlers in the main thread between two bytecodes. If the main thread was inside
``threading.Event.set()`` (which holds a plain Lock) when the signal came, a handler that sets the
same event deadlocks. This Event's condition uses an RLock, so the handler's nested ``set()``
simply goes through.

It can also be subscribed to: :meth:`SignalSafeEvent.subscribe` registers a callback that ``set()``
calls, which is how :func:`tickwork._clock.any_stop` combines tickwork's own stop signals without
polling them, and how a :class:`StopGate` opens.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from ._clock import os_timeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from ._protocols import Waitable

__all__ = ["SignalSafeEvent", "StopGate"]

_TIMEOUT_MAX = threading.TIMEOUT_MAX


class SignalSafeEvent:
    """Same interface as :class:`threading.Event`; safe to set from a signal handler."""

    __slots__ = ("__weakref__", "_cond", "_flag", "_listeners")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._flag = False
        self._listeners: list[weakref.ref[Callable[[], None]]] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()
            listeners = [ref() for ref in self._listeners]
            self._listeners = [
                ref for ref, fn in zip(self._listeners, listeners, strict=True) if fn is not None
            ]
        for fn in listeners:
            if fn is not None:
                fn()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (a bound method, held weakly) each time the event is set.

        A callback registered while the event is already set is called at once. It must be quick
        and must not raise: it runs inside ``set()``, possibly in a signal handler.
        """
        with self._cond:
            self._listeners = [ref for ref in self._listeners if ref() is not None]
            self._listeners.append(weakref.WeakMethod(callback))
            already = self._flag
        if already:
            callback()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            if not self._flag:
                self._cond.wait(os_timeout(timeout))
            return self._flag

    def reinit_after_fork(self) -> None:
        self._cond = threading.Condition(threading.RLock())

    def __repr__(self) -> str:
        return f"<SignalSafeEvent {'set' if self._flag else 'unset'}>"


class StopGate:
    """The cheapest interruptible wait, for the one thread that waits on ``event`` again and again.

    A lock held while ``event`` is unset, which the event's ``set()`` releases (through
    :meth:`SignalSafeEvent.subscribe`; that is signal safe too: a lock's release never blocks). A
    wait is then one call of ``Lock.acquire(True, timeout)`` in C, where a
    :class:`threading.Condition` wait runs a dozen lines of Python, allocates a lock and takes
    and gives back its own lock twice: that is the cost of a tick of a periodic thread, between two
    calls. Only one thread may wait on a gate at a time.
    """

    __slots__ = ("__weakref__", "_acquire", "_lock", "_stop")

    def __init__(self, event: SignalSafeEvent, stop: Waitable | None = None) -> None:
        # `stop` (default: `event`) is what the gate stands for; `event` is set whenever it is.
        # They differ for a combination of stops, whose own event stays set once any part was
        # set: an open gate is then confirmed against the parts, as they are now.
        self._stop: Waitable = event if stop is None else stop
        self._lock = threading.Lock()
        self._lock.acquire()
        self._acquire = self._lock.acquire
        event.subscribe(self._open)  # opens at once if the event is set already

    def _open(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # open already: set() twice before the waiter came through
            pass

    def wait_until(self, deadline: float) -> bool:
        """Wait until the stop is set (True, at once if it is) or ``time.monotonic()`` reaches
        ``deadline`` (False; never earlier)."""
        acquire = self._acquire
        stop = self._stop
        remaining = deadline - time.monotonic()
        while True:
            if remaining > 0:
                if remaining > _TIMEOUT_MAX:  # a longer wait is an OverflowError: wait in parts
                    remaining = _TIMEOUT_MAX
                opened = acquire(True, remaining)
            else:
                opened = acquire(False)
            if opened:
                # The event was set. If the stop still is, leave the gate open behind this
                # waiter; if it was cleared meanwhile, the gate is closed again (the waiter holds
                # the lock) until the next set(), and the wait goes on.
                if stop.is_set():
                    self._open()
                    return True
            elif remaining <= 0:
                return False  # looked once, and the time had come
            remaining = deadline - time.monotonic()
            if not opened and remaining <= 0:
                return False  # waited until the deadline (the wait looked at the gate)
