"""Fork safety.

``os.fork()`` copies only the thread that called it. A tickwork object whose thread was running in
the parent would, in the child, hold locks that nobody will release and report a thread that does
not exist. Objects register here; in the child each one gets fresh locks and forgets the threads
that did not survive, and a warning names them, so a child never inherits that state silently.
"""

from __future__ import annotations

import os
import threading
import weakref

from ._log import get_logger

__all__ = ["ForkAware", "track"]

logger = get_logger(__name__)


TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from ._protocols import ForkAware

_tracked: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_tracked_lock = threading.Lock()
_running_at_fork: list[tuple[ForkAware, list[str]]] = []


def track(obj: ForkAware) -> None:
    """Have ``obj._after_fork_in_child()`` called in every child forked from now on."""
    with _tracked_lock:
        _tracked.add(obj)


def _before_fork() -> None:
    # Hold the registry lock across fork() so the child never sees it held by a vanished thread.
    _tracked_lock.acquire()
    _running_at_fork.clear()
    for obj in list(_tracked):
        names = obj._running_thread_names()  # noqa: SLF001 - the fork protocol's hook
        if names:
            _running_at_fork.append((obj, names))


def _after_fork_in_parent() -> None:
    _running_at_fork.clear()
    _tracked_lock.release()


def _after_fork_in_child() -> None:
    global _tracked_lock
    _tracked_lock = threading.Lock()
    running = {id(obj): names for obj, names in _running_at_fork}
    _running_at_fork.clear()
    for obj in list(_tracked):
        obj._after_fork_in_child()  # noqa: SLF001 - the fork protocol's hook
        lost = running.get(id(obj))
        if lost:
            logger.warning(
                "process %d was forked while %r had running threads (%s); they do not run in the "
                "child process, and %r no longer counts them",
                os.getpid(),
                obj,
                ", ".join(lost),
                obj,
            )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
