"""Filesystem events for one local directory: the backends, and the thread that collects them.

An :class:`EventBackend` yields batches of changed paths until its stop signal is set (top level
only). :class:`InotifyBackend` (Linux, the standard library through ctypes) blocks in
``select()`` on the inotify descriptor and a self-pipe that a tickwork stop writes to, so an idle
watcher never wakes; :class:`WatchfilesBackend` (macOS, Windows) runs watchfiles. Tests pass a
scripted one. :class:`EventWatcher` runs a backend in a thread, keeps the names of the entries
that changed until :meth:`~EventWatcher.drain` takes them, and sets the follower's wake-up event
on every batch and when it ends.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Collection, Iterator
from typing import Any, Protocol

from .._clock import FOREIGN_STOP_POLL
from .._errors import ErrorLog
from .._naming import thread_name
from .._protocols import Waitable
from .._sync import SignalSafeEvent

__all__ = [
    "EventBackend",
    "EventWatcher",
    "InotifyBackend",
    "WatchfilesBackend",
    "default_backend",
    "inotify_available",
    "watchfiles_available",
]

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

# inotify (linux/inotify.h). IN_MODIFY is not watched: a writer's every write() would be an
# event; IN_CLOSE_WRITE says when it is done, and pending files are looked at again anyway.
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_FROM = 0x00000040
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_WATCH_MASK = (
    _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_GONE = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
# Seconds. A batch is handed on once no event came for _BATCH_QUIET (at most _BATCH_MAX after its
# first event), so a burst of events costs one look, not one per event.
_BATCH_QUIET = 0.002
_BATCH_MAX = 0.05


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


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


def inotify_available() -> bool:
    """Whether this is Linux with inotify (the standard library's ctypes reaches it)."""
    return _libc() is not None


def default_backend() -> EventBackend | None:
    """inotify on Linux, else watchfiles where it is installed (a dependency on macOS and
    Windows), else None: no events here, the follower polls."""
    if inotify_available():
        return InotifyBackend()
    if watchfiles_available():
        return WatchfilesBackend()
    return None


def _os_error(call: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno() or errno.EIO
    hint = (
        " (raise fs.inotify.max_user_watches or max_user_instances)"
        if code
        in (
            errno.ENOSPC,
            errno.EMFILE,
        )
        else ""
    )
    return OSError(code, f"{call} failed: {os.strerror(code)}{hint}", path)


class _Poke:
    """Writes a byte to a self-pipe when a stop is set (subscribed to a tickwork event, which
    holds it weakly); once closed it writes nothing, so a reused descriptor is never touched."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._lock = threading.Lock()

    def poke(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.write(self._fd, b"x")
                except OSError:  # the pipe is full: a wake-up is already pending
                    pass

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class InotifyBackend:
    """Events through Linux's inotify, with no dependency and no wake-up while idle.

    A stop that is a tickwork event (``SignalSafeEvent``) wakes the ``select()`` at once through
    a self-pipe; any other stop is looked at every ``FOREIGN_STOP_POLL`` seconds.
    """

    def watch(self, directory: str, stop: Waitable) -> Iterator[Collection[str]]:
        libc = _libc()
        if libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this system", directory)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        wake_r, wake_w = os.pipe()
        poke = _Poke(wake_w)
        try:
            os.set_blocking(wake_r, False)
            os.set_blocking(wake_w, False)
            if libc.inotify_add_watch(fd, os.fsencode(directory), _WATCH_MASK) < 0:
                raise _os_error("inotify_add_watch", directory)
            subscribed = isinstance(stop, SignalSafeEvent)
            if isinstance(stop, SignalSafeEvent):
                stop.subscribe(poke.poke)
            timeout = None if subscribed else FOREIGN_STOP_POLL
            yield set()  # the watch is in place
            while not stop.is_set():
                ready = select.select([fd, wake_r], [], [], timeout)[0]
                if wake_r in ready:
                    _drain(wake_r)
                if fd not in ready or stop.is_set():
                    continue
                paths, gone = _collect(fd, wake_r, directory)
                if paths:
                    yield paths
                if gone:  # the watch went with the directory; the follower takes it from here
                    return
        finally:
            poke.close()
            os.close(wake_r)
            os.close(fd)

    def __repr__(self) -> str:
        return "InotifyBackend()"


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _collect(fd: int, wake_r: int, directory: str) -> tuple[set[str], bool]:
    """The paths named by the events that are ready, and those that follow within
    _BATCH_QUIET; whether the directory itself went away (its watch with it)."""
    paths: set[str] = set()
    gone = False
    until = time.monotonic() + _BATCH_MAX
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            data = b""
        at = 0
        while at + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, at)
            name = data[at + _EVENT.size : at + _EVENT.size + length].rstrip(b"\0")
            at += _EVENT.size + length
            if mask & _GONE or mask & _IN_Q_OVERFLOW or not name:
                paths.add(directory)  # the directory itself, or events were lost: look at all
                gone = gone or bool(mask & _GONE)
            else:
                paths.add(os.path.join(directory, os.fsdecode(name)))
        left = until - time.monotonic()
        if gone or left <= 0:
            return paths, gone
        ready = select.select([fd, wake_r], [], [], min(_BATCH_QUIET, left))[0]
        if fd not in ready:
            return paths, gone


class EventWatcher:
    """Watches ``directory`` in a daemon thread; :meth:`drain` returns what changed."""

    def __init__(
        self,
        directory: str,
        *,
        wake: SignalSafeEvent,
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
        # The backend waits on its own event: closing sets it, and so does a stop that is a
        # tickwork event (another stop is seen by the follower, which then closes the watcher).
        self._closed = SignalSafeEvent()
        if isinstance(stop, SignalSafeEvent):
            stop.subscribe(self._closed.set)
        self._ended = threading.Event()
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
            for changes in self._backend.watch(self.directory, self._closed):
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
        """True once the backend has yielded at least once (its watch is in place)."""
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
