"""Keeping exceptions from background threads so that none is lost.

An exception caught in a tickwork thread is logged with its traceback, counted, annotated with the
thread that raised it, and kept so the caller can re-raise it in its own thread. ``raise exc`` on a
kept exception re-raises it with its original traceback (the caller's frames are added on top).
"""

from __future__ import annotations

import enum
import sys
import threading
from collections.abc import Sequence

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    import logging

__all__ = [
    "BaseExceptionGroup",
    "ErrorLog",
    "LogKind",
    "LogThrottle",
    "add_note",
    "group_or_single",
    "log_kind",
    "summary_rule",
]

# Exceptions kept per object. Every one is counted; only the first ones are kept with their
# tracebacks, so a callback that fails on every tick does not hold on to unbounded memory.
DEFAULT_KEEP = 64

# A callback that fails again and again: its first failures are logged with their traceback, then
# one summary line at every power of ten (the 10th, 100th, 1000th, ... failure: quick news that
# it goes on failing, and a handful of lines however many come) and otherwise at most one line
# this often (in the object's clock seconds).
FULL_LOGS = 5
SUMMARY_SECONDS = 60.0


def summary_rule(every: float = SUMMARY_SECONDS) -> str:
    """What the log says about the lines to come once failures are no longer logged in full:
    the words for :func:`log_kind`'s rule (a test holds the two together)."""
    return (
        f"later failures are summarised: one line at the 10th, 100th, 1000th, ... failure, "
        f"and otherwise at most one line every {every:g} s"
    )


class LogKind(enum.Enum):
    """How one failure of a repeating callback is logged."""

    FULL = "full"  # the traceback
    SUMMARY = "summary"  # one line: how many so far, the last one
    QUIET = "quiet"  # counted and kept, not logged on its own (a later summary covers it)


def _power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def log_kind(
    count: int,
    now: float,
    last_line: float | None,
    *,
    full: int = FULL_LOGS,
    every: float = SUMMARY_SECONDS,
) -> LogKind:
    """How failure number ``count`` (1-based) is logged, the previous log line having been at
    ``last_line`` (None: never): in full up to ``full``, then a summary at each power of ten or
    when ``every`` seconds have passed since the last line, quiet otherwise."""
    if count <= full:
        return LogKind.FULL
    if _power_of_ten(count) or last_line is None or now - last_line >= every:
        return LogKind.SUMMARY
    return LogKind.QUIET


class LogThrottle:
    """Logs the failures of one repeating callback without flooding the log (see :func:`log_kind`).

    Every failure is still counted and kept by the caller's :class:`ErrorLog`; this only decides
    what reaches the logger, at ``level``. :meth:`flush` logs a last summary of quiet failures
    (at thread end).
    """

    def __init__(self, logger: logging.Logger, what: str, *, level: int = 40) -> None:  # ERROR
        self._logger = logger
        self._what = what
        self._level = level
        self._lock = threading.Lock()
        self._last_line: float | None = None
        self._quiet = 0
        self._count = 0
        self._last: BaseException | None = None

    def failed(self, owner: object, exc: BaseException, count: int, now: float, then: str) -> None:
        """Log failure number ``count`` as :func:`log_kind` says; ``then``: what happens next."""
        with self._lock:
            kind = log_kind(count, now, self._last_line)
            self._count = count
            self._last = exc
            if kind is LogKind.QUIET:
                self._quiet += 1
                return
            self._last_line = now
            quiet, self._quiet = self._quiet, 0
        if kind is LogKind.FULL:
            more = f"; {summary_rule()}" if count == FULL_LOGS else ""
            self._logger.log(
                self._level,
                "%r: %s raised %s (error %d); %s%s",
                owner,
                self._what,
                type(exc).__name__,
                count,
                then,
                more,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        else:
            self._summary(owner, count, quiet, exc, then)

    def flush(self, owner: object, then: str = "the thread has ended") -> None:
        """Log a summary of the failures not logged yet, if any."""
        with self._lock:
            quiet, self._quiet = self._quiet, 0
            count, last = self._count, self._last
        if quiet and last is not None:
            self._summary(owner, count, quiet, last, then)

    def _summary(
        self, owner: object, count: int, quiet: int, last: BaseException, then: str
    ) -> None:
        self._logger.log(
            self._level,
            "%r: %s has failed %d times (%d not logged one by one); last: %s: %s; %s",
            owner,
            self._what,
            count,
            quiet,
            type(last).__name__,
            last,
            then,
        )

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()


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


class ErrorLog:
    """A thread-safe record of the exceptions some background work raised.

    (A plain class, not a dataclass: ``import tickwork`` does not import dataclasses.)
    """

    __slots__ = ("_count", "_kept", "_lock", "keep")

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._kept: list[BaseException] = []
        self._count = 0

    def __repr__(self) -> str:
        return f"ErrorLog(keep={self.keep}, count={self._count})"

    def record(self, exc: BaseException) -> int:
        """Count and (while fewer than ``keep`` are) keep ``exc``; returns the count so far."""
        with self._lock:
            self._count += 1
            if len(self._kept) < self.keep:
                self._kept.append(exc)
            return self._count

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
