"""An Event that a signal handler may set.

Python runs signal handlers in the main thread between two bytecodes. If the main thread was inside
``threading.Event.set()`` (which holds a plain Lock) when the signal came, a handler that sets the
same event deadlocks. This Event's condition uses an RLock, so the handler's nested ``set()``
simply goes through.
"""

from __future__ import annotations

import threading

__all__ = ["SignalSafeEvent"]


class SignalSafeEvent:
    """Same interface as :class:`threading.Event`; safe to set from a signal handler."""

    __slots__ = ("_cond", "_flag")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            if not self._flag:
                self._cond.wait(timeout)
            return self._flag

    def reinit_after_fork(self) -> None:
        self._cond = threading.Condition(threading.RLock())

    def __repr__(self) -> str:
        return f"<SignalSafeEvent {'set' if self._flag else 'unset'}>"
