"""Keeping exceptions from background threads so that none is lost.

An exception caught in a tickwork thread is logged with its traceback, counted, annotated with the
thread that raised it, and kept so the caller can re-raise it in its own thread. ``raise exc`` on a
kept exception re-raises it with its original traceback (the caller's frames are added on top).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

__all__ = ["BaseExceptionGroup", "ErrorLog", "add_note", "group_or_single"]

# Exceptions kept per object. Every one is logged and counted; only the first ones are kept with
# their tracebacks, so a callback that fails on every tick does not hold on to unbounded memory.
DEFAULT_KEEP = 64


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10 (where only the backport's printer shows it)."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover - exercised on 3.10 only
        notes = getattr(exc, "__notes__", None)
        if not isinstance(notes, list):
            notes = []
            exc.__notes__ = notes  # type: ignore[attr-defined]
        notes.append(note)


def group_or_single(message: str, errors: Sequence[BaseException]) -> BaseException | None:
    """None for no errors, the exception itself for one, else a BaseExceptionGroup of them all.

    The group is an ``ExceptionGroup`` (catchable with ``except Exception``) when every member is
    an Exception, which the BaseExceptionGroup constructor arranges.
    """
    if not errors:
        return None
    if len(errors) == 1:
        return errors[0]
    return BaseExceptionGroup(message, list(errors))


@dataclass
class ErrorLog:
    """A thread-safe record of the exceptions some background work raised."""

    keep: int = DEFAULT_KEEP
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _kept: list[BaseException] = field(default_factory=list, repr=False)
    _count: int = 0

    def record(self, exc: BaseException) -> None:
        with self._lock:
            self._count += 1
            if len(self._kept) < self.keep:
                self._kept.append(exc)

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def kept(self) -> tuple[BaseException, ...]:
        with self._lock:
            return tuple(self._kept)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._count = 0

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
