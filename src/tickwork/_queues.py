"""A put on a bounded queue that a stop ends: the loader's side of a Coordinator example.

A loader thread that calls ``queue.put(item)`` on a full bounded queue waits until the consumer
takes something; once training stops, nothing is taken again and the loader waits forever
(``coord.join()`` then names it as a thread that would not stop), and ``put(item, timeout=...)``
raises ``queue.Full``, which the Coordinator reports as the loader's error: a clean Ctrl-C ends
in a traceback and exit 1. :func:`stoppable_put` waits for room *or* a stop, and says which.
"""

from __future__ import annotations

import queue

from ._clock import Clock, as_waitable, check_clock
from ._validate import check_positive

__all__ = ["stoppable_put"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import TypeVar

    from ._protocols import CoordinatorLike, Waitable

    T = TypeVar("T")

# Seconds. How often a put waiting for room looks for it (a queue cannot wake a waiter on a
# stop, so the wait is on the stop, which ends it at once, and the room is looked for this often).
_CHECK_EVERY = 0.01


def stoppable_put(
    q: queue.Queue[T],
    item: T,
    stop: Waitable | CoordinatorLike,
    *,
    check_every: float = _CHECK_EVERY,
    clock: Clock | None = None,
) -> bool:
    """Put ``item`` on ``q``, waiting while it is full, until it is put or ``stop`` is set.

    Args:
        q: a :class:`queue.Queue` (bounded or not).
        item: what to put.
        stop: a :class:`threading.Event` or a Coordinator: once set, the wait for room ends at
            once and the item is not put.
        check_every: how often (seconds) a wait for room looks for it.
        clock: the clock to wait on (tests use :class:`tickwork.testing.FakeClock`).

    Returns:
        True once the item is on the queue; False if the stop came first (nothing was put). A
        loop body can simply return either way: a :class:`LooperThread` under the same
        Coordinator ends cleanly after a stop, so Ctrl-C never becomes a ``queue.Full`` error.
    """
    check_every = check_positive("check_every", check_every)
    clock_ = check_clock(clock)
    waitable = as_waitable(stop)
    if waitable is None:
        raise TypeError("'stop' must be a threading.Event or a Coordinator; got None")
    while not waitable.is_set():
        try:
            q.put_nowait(item)
        except queue.Full:
            if clock_.wait(waitable, check_every):
                break
            continue
        return True
    return False
