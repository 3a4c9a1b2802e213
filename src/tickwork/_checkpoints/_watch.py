"""Event-driven watching of one local directory through watchfiles.

A daemon thread runs :func:`watchfiles.watch` on the checkpoint directory (top level only: the
follower polls inside the few checkpoint directories still being written, so the number of
inotify watches stays one however many checkpoints there are). It adds the names of the entries
that changed to a set and sets the follower's wake-up event. The follower drains the set and
examines only those names: noticing one new checkpoint costs the same with 10 or 10,000 present.

watchfiles (the Rust ``notify`` crate) keeps collecting events while the follower is busy, so a
slow consumer loses none. The thread ends within a few milliseconds of the follower closing or
the user's stop signal being set (watchfiles checks ``stop_event.is_set()`` every ``step``), and
then sets the wake-up event too, which is how a stop reaches a follower waiting for events.

watchfiles reports created, modified and deleted entries; it does not pass on inotify's
close-after-write events, which is one reason completeness is decided from the files'
structure (see :mod:`tickwork._checkpoints._formats`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .._clock import Waitable
from .._errors import ErrorLog

__all__ = ["EventWatcher", "watchfiles_available"]

logger = logging.getLogger(__name__)

# Milliseconds. watchfiles yields a batch once no new change came for one step (or after
# `debounce` of continuous changes): detection takes one to two steps. It also checks the stop
# signal every step, which bounds how fast a stop is seen.
_STEP_MS = 10
_DEBOUNCE_MS = 50
# watchfiles returns to Python this often when nothing happens (the first return tells that the
# watch is in place).
_IDLE_RETURN_MS = 250
_THREAD_PREFIX = "tickwork checkpoint watcher"


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


class _StopProxy:
    """What watchfiles polls: set when the watcher is closed or the user's stop is set."""

    __slots__ = ("_closed", "_stop")

    def __init__(self, closed: threading.Event, stop: Waitable | None) -> None:
        self._closed = closed
        self._stop = stop

    def is_set(self) -> bool:
        return self._closed.is_set() or (self._stop is not None and self._stop.is_set())


class EventWatcher:
    """Watches ``directory`` in a daemon thread; :meth:`drain` returns what changed."""

    def __init__(
        self,
        directory: str,
        *,
        wake: threading.Event,
        stop: Waitable | None,
        errors: ErrorLog,
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
        self._closed = threading.Event()
        self._ended = threading.Event()
        self._proxy = _StopProxy(self._closed, stop)
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
            import watchfiles
        except ImportError as exc:  # checked before starting; kept for a clear log if not
            self._fail(exc)
            return
        kwargs: dict[str, Any] = {
            "watch_filter": None,
            "debounce": _DEBOUNCE_MS,
            "step": _STEP_MS,
            "stop_event": self._proxy,
            "rust_timeout": _IDLE_RETURN_MS,
            "yield_on_timeout": True,
            "raise_interrupt": False,
            "force_polling": False,
            "recursive": False,
            "ignore_permission_denied": True,
        }
        try:
            for changes in watchfiles.watch(self.directory, **kwargs):
                self._record(changes)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._ended.set()
            self._wake.set()

    def _record(self, changes: set[tuple[Any, str]]) -> None:
        with self._lock:
            first = not self._ready
            self._ready = True
            for _change, path in changes:
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
