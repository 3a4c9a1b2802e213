"""The lifecycle of an object that works in a thread of its own: start, stop, join, is_alive.

One implementation, used by TimedThread (and through it the steps-per-execution tuner) and by
SidecarEvaluator. The rules:

* ``start()`` while the thread runs and no stop was asked for starts nothing (the owner decides
  whether that is a warning or an answer).
* ``start()`` after ``stop()`` while the thread is still finishing waits for it to end, then starts
  a fresh one; called from that very thread it raises, since a thread cannot wait for itself.
* A restartable owner gets a fresh stop signal for each run; a run-once owner (``once=True``) keeps
  the one it was built with, and a second start (or :meth:`ThreadLifecycle.claim`) raises.
* ``stop()`` sets the run's stop signal and returns at once; ``join(timeout)`` waits for the thread
  (never from the thread itself); ``is_alive()`` is true while the thread runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from ._clock import os_timeout
from ._naming import mark_own, thread_name
from ._sync import SignalSafeEvent
from ._validate import check_optional_nonnegative

__all__ = ["RunsInWith", "ThreadLifecycle"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import TypeVar

    _S = TypeVar("_S", bound="RunsInWith")


class RunsInWith:
    """A ``with`` block runs the object: ``start()`` on entry, :meth:`_leave` on exit."""

    def start(self) -> object:
        raise NotImplementedError

    def _leave(self, error: BaseException | None) -> None:
        """End the run as the block ends (``error``: what the block raised, if anything)."""
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave(exc)


class ThreadLifecycle:
    """The thread of ``owner`` (named in errors by its repr) and the stop signal of its run.

    ``refusal`` completes the message a second start of a run-once owner raises
    (``"<owner> has already been started; <refusal>"``).
    """

    __slots__ = ("_claimed", "_lock", "_once", "_owner", "_refusal", "_stop", "_thread")

    def __init__(self, owner: object, *, once: bool = False, refusal: str = "it runs once") -> None:
        self._owner = owner
        self._once = once
        self._refusal = refusal
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = SignalSafeEvent()
        self._claimed = False

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of the latest start (None before the first)."""
        return self._thread

    @property
    def stop_event(self) -> SignalSafeEvent:
        """The stop signal of the current run (of the next one, before a restartable start)."""
        return self._stop

    @property
    def started(self) -> bool:
        """True once a thread was started (or a run-once owner claimed)."""
        return self._claimed or self._thread is not None

    def stop_requested(self) -> bool:
        """True once :meth:`stop` was called for the current run."""
        return self._stop.is_set()

    def claim(self) -> None:
        """Mark a run-once owner as started (its run may be in the calling thread).

        Raises RuntimeError the second time.
        """
        if not self._once:
            return
        with self._lock:
            if self._claimed:
                raise RuntimeError(f"{self._owner!r} has already been started; {self._refusal}")
            self._claimed = True

    def start(
        self,
        target: Callable[[SignalSafeEvent], object],
        *,
        name: str,
        daemon: bool,
        prepare: Callable[[], object] | None = None,
        group: None = None,
        exact_name: bool = False,
    ) -> threading.Thread | None:
        """Start ``target(stop_event)`` in a new thread called ``name`` (behind tickwork's prefix
        unless ``exact_name``: a name the user chose is the thread's name, exactly); return it.

        Returns None, starting nothing, when a thread runs and no stop was asked for. ``prepare()``
        runs once the previous thread (if any) has ended, just before the new one starts.
        """
        self.claim()  # a run-once owner's second start raises here, running or not
        while True:
            with self._lock:
                thread = self._thread
                if thread is None or not thread.is_alive():
                    if not self._once:
                        self._stop = SignalSafeEvent()
                    if prepare is not None:
                        prepare()
                    fresh = threading.Thread(
                        group=group,
                        target=target,
                        args=(self._stop,),
                        name=name if exact_name else thread_name(name),
                        daemon=daemon,
                    )
                    mark_own(fresh)
                    self._thread = fresh
                    fresh.start()
                    return fresh
                if not self._stop.is_set():
                    return None
            if thread is threading.current_thread():
                raise RuntimeError(
                    f"{self._owner!r}: start() called from its own thread after stop(); the "
                    "thread cannot wait for itself to finish"
                )
            thread.join()

    def stop(self, *, wait: bool = False, timeout: float | None = None) -> bool:
        """Set the stop signal; with ``wait``, also :meth:`join` (at most ``timeout`` s).

        Returns True when the thread is no longer running.
        """
        timeout = check_optional_nonnegative("timeout", timeout)
        self._stop.set()
        return self.join(timeout) if wait else not self.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` real seconds) for the thread to end; True when it has (or
        never started). Raises RuntimeError when called from the thread itself."""
        timeout = check_optional_nonnegative("timeout", timeout)
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            raise RuntimeError(f"{self._owner!r}: join() called from its own thread")
        thread.join(os_timeout(timeout))  # 1e300 is no limit, not an OverflowError
        return not thread.is_alive()

    def is_alive(self) -> bool:
        """True while the thread runs (a call still finishing after stop() included)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def in_own_thread(self) -> bool:
        """True when called from the thread of the latest start."""
        return self._thread is threading.current_thread()

    def running_thread_names(self) -> list[str]:
        """The thread's name while it runs (for the fork check), else nothing."""
        thread = self._thread
        return [thread.name] if thread is not None and thread.is_alive() else []

    def reinit_after_fork(self) -> None:
        """In a forked child: new locks; the thread did not come along, so its run is stopped."""
        self._lock = threading.RLock()
        self._stop.reinit_after_fork()
        self._stop.set()
