"""The error path of a trainer with no error hook (the Hugging Face Trainer, Keras ``fit()``):
a chained ``sys.excepthook`` while training runs, and an ``atexit`` fallback."""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["UncaughtWatch", "UnfinishedTraining"]

logger = logging.getLogger(__name__)


class UnfinishedTraining(RuntimeError):
    """What the marker names when the process exited with training unfinished."""


class UncaughtWatch:
    """The error path of a trainer with no error hook (the Hugging Face Trainer, Keras fit()):
    while training runs, ``sys.excepthook`` is chained, so an exception that leaves the script
    uncaught calls ``on_error`` with it (the previous hook then prints it as usual); an
    ``atexit`` fallback calls it with :class:`UnfinishedTraining` when the process exits with
    training unfinished (the caller caught the exception)."""

    def __init__(self, on_error: Callable[[BaseException], object]) -> None:
        self._on_error = on_error
        self._running = False
        self._previous: Any = None
        self._registered = False

    def watch(self) -> None:
        self._running = True
        if sys.excepthook != self._hook:  # bound methods compare equal, never identical
            self._previous = sys.excepthook
            sys.excepthook = self._hook
        if not self._registered:
            atexit.register(self._at_exit)
            self._registered = True

    def unwatch(self) -> None:
        self._running = False
        if sys.excepthook == self._hook:
            sys.excepthook = self._previous
        self._previous = None

    def _fail(self, error: BaseException) -> None:
        if self._running:
            self._running = False
            self._on_error(error)

    def _hook(
        self, kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        previous = self._previous or sys.__excepthook__
        running = self._running
        self.unwatch()
        self._running = running
        try:
            if threading.current_thread() is threading.main_thread():
                self._fail(error)
        except Exception:
            logger.exception("the done marker could not be written for an uncaught exception")
        finally:
            previous(kind, error, tb)

    def _at_exit(self) -> None:
        if self._running:
            logger.error(
                "the process exits with training unfinished (training raised and its caller "
                "caught the exception): writing the done marker as failed"
            )
            self._fail(
                UnfinishedTraining("training did not reach its end before the process exited")
            )
