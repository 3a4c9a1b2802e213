"""Filesystem events for one local directory: the backend, and the thread that collects them.

An :class:`EventBackend` yields batches of changed paths until its stop signal is set;
:class:`WatchfilesBackend` is the real one (top level only), and tests pass a scripted one.
:class:`EventWatcher` runs a backend in a thread, keeps the names of the entries that changed
until :meth:`~EventWatcher.drain` takes them, and sets the follower's wake-up event on every
batch and when it ends (which is how a stop reaches a follower waiting for events).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Collection, Iterator
from typing import Any, Protocol

from .._clock import Waitable, any_stop
from .._errors import ErrorLog
from .._naming import thread_name
from .._sync import SignalSafeEvent

__all__ = ["EventBackend", "EventWatcher", "WatchfilesBackend", "watchfiles_available"]

logger = logging.getLogger(__name__)

# Milliseconds. watchfiles yields a batch once no new change came for one step (or after
# `debounce` of continuous changes): detection takes one to two steps. It also checks the stop
# signal every step, which bounds how fast a stop is seen.
_STEP_MS = 10
_DEBOUNCE_MS = 50
# watchfiles returns to Python this often when nothing happens (the first return tells that the
# watch is in place).
_IDLE_RETURN_MS = 250
_THREAD_PREFIX = thread_name("checkpoint watcher")


class _QuietOurBatches(logging.Filter):
    """watchfiles logs every batch of changes at INFO ("3 changes detected"); for a checkpoint
    directory that is noise in the user's INFO log. Drop those records, and only those: INFO
    records logged from our watcher threads (watchfiles' warnings and errors pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.threadName is not None and record.threadName.startswith(_THREAD_PREFIX)
        return not (ours and record.levelno == logging.INFO)


def _install_filter() -> None:
    watchfiles_logger = logging.getLogger("watchfiles.main")
    if not any(isinstance(f, _QuietOurBatches) for f in watchfiles_logger.filters):
        watchfiles_logger.addFilter(_QuietOurBatches())


def watchfiles_available() -> bool:
    """Whether the optional ``watchfiles`` package (extra ``watch``) can be imported."""
    try:
        import watchfiles  # noqa: F401 - only probing
    except ImportError:
        return False
    return True


class EventBackend(Protocol):
    """Where filesystem events come from."""

    def watch(self, directory: str, stop: Waitable) -> Iterator[Collection[str]]:
        """Yield the paths that changed in ``directory``, batch by batch. The first batch (empty
        when nothing changed) means the watch is in place; an empty batch may come whenever
        nothing changed for a while. It ends soon after ``stop`` is set; an error raised ends
        event watching (the follower falls back to polling)."""
        ...


class WatchfilesBackend:
    """Events through watchfiles (inotify, FSEvents, ReadDirectoryChangesW), top level only."""

    def watch(self, directory: str, stop: Waitable) -> Iterator[Collection[str]]:
        import watchfiles

        kwargs: dict[str, Any] = {
            "watch_filter": None,
            "debounce": _DEBOUNCE_MS,
            "step": _STEP_MS,
            "stop_event": stop,
            "rust_timeout": _IDLE_RETURN_MS,
            "yield_on_timeout": True,
            "raise_interrupt": False,
            "force_polling": False,
            "recursive": False,
            "ignore_permission_denied": True,
        }
        for changes in watchfiles.watch(directory, **kwargs):
            yield {path for _change, path in changes}

    def __repr__(self) -> str:
        return "WatchfilesBackend()"


class EventWatcher:
    """Watches ``directory`` in a daemon thread; :meth:`drain` returns what changed."""

    def __init__(
        self,
        directory: str,
        *,
        wake: threading.Event,
        stop: Waitable | None,
        errors: ErrorLog,
        backend: EventBackend,
    ) -> None:
        self.directory = directory
        self._forms = {os.path.normpath(os.path.abspath(directory))}
        self._forms.add(os.path.normpath(os.path.realpath(directory)))
        self._wake = wake
        self._errors = errors
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._self_changed = False
        self._batches = 0
        self._ready = False
        self.failed = False
        self._backend = backend
        self._closed = SignalSafeEvent()
        self._ended = threading.Event()
        stop_watching = any_stop(self._closed, stop)
        assert stop_watching is not None
        self._stop = stop_watching
        self._thread = threading.Thread(
            target=self._run,
            name=f"{_THREAD_PREFIX} ({directory})",
            daemon=True,
        )

    def start(self) -> None:
        _install_filter()
        self._thread.start()

    def _run(self) -> None:
        try:
            for changes in self._backend.watch(self.directory, self._stop):
                self._record(changes)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._ended.set()
            self._wake.set()

    def _record(self, changes: Collection[str]) -> None:
        with self._lock:
            first = not self._ready
            self._ready = True
            for path in changes:
                normal = os.path.normpath(path)
                if normal in self._forms:
                    self._self_changed = True
                else:
                    self._names.add(os.path.basename(normal))
            if changes:
                self._batches += 1
        if changes or first:
            self._wake.set()

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        self._errors.record(exc)
        logger.warning(
            "watching %r for events failed (%s: %s); the follower falls back to polling",
            self.directory,
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )

    def drain(self) -> tuple[set[str], bool, int]:
        """The names changed since the last call, whether the directory itself changed, and how
        many event batches arrived."""
        with self._lock:
            names, self._names = self._names, set()
            changed, self._self_changed = self._self_changed, False
            batches, self._batches = self._batches, 0
        return names, changed, batches

    @property
    def ready(self) -> bool:
        """True once watchfiles has returned at least once (its watch is in place)."""
        with self._lock:
            return self._ready

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def close(self, timeout: float | None = 1.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` real seconds)."""
        self._closed.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __repr__(self) -> str:
        state = "ended" if self.ended else ("ready" if self.ready else "starting")
        return f"<EventWatcher {self.directory!r} {state}>"
