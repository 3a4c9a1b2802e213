"""An Event that a signal handler may set.

Python runs signal handlers in the main thread between two bytecodes. If the main thread was inside
``threading.Event.set()`` (which holds a plain Lock) when the signal came, a handler that sets the
same event deadlocks. This Event's condition uses an RLock, so the handler's nested ``set()``
simply goes through.

It can also be subscribed to: :meth:`SignalSafeEvent.subscribe` registers a callback that ``set()``
calls, which is how :func:`tickwork._clock.any_stop` combines tickwork's own stop signals without
polling them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from ._clock import os_timeout

__all__ = ["SignalSafeEvent"]


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
