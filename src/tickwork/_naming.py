"""Names for the threads tickwork starts, so a thread dump says who started what."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

__all__ = ["THREAD_PREFIX", "callable_name", "is_own", "mark_own", "start_daemon", "thread_name"]

# Every thread tickwork starts, whatever its name (a user's TimedThread(name="log") is "log").
_own: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

THREAD_PREFIX = "tickwork:"
"""Every tickwork thread's name starts with this, so a leak or a thread dump is easy to spot."""


def thread_name(what: str) -> str:
    """The name of a thread tickwork starts: ``tickwork:TimedThread(log)``."""
    return what if what.startswith(THREAD_PREFIX) else THREAD_PREFIX + what


def callable_name(fn: object) -> str:
    """``Trainer.log`` for a method, ``report`` for a function (local-scope prefixes dropped)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return str(name).rsplit("<locals>.", 1)[-1]


def mark_own(thread: threading.Thread) -> threading.Thread:
    """Record ``thread`` as one tickwork started (see :func:`is_own`); returns it."""
    _own.add(thread)
    return thread


def is_own(thread: threading.Thread) -> bool:
    """True for a thread tickwork started, named by tickwork or by its user."""
    return thread in _own or thread.name.startswith(THREAD_PREFIX)


def start_daemon(target: Callable[[], object], what: str) -> threading.Thread:
    """Start ``target`` in a daemon thread named :func:`thread_name` (``what``)."""
    thread = mark_own(threading.Thread(target=target, name=thread_name(what), daemon=True))
    thread.start()
    return thread
