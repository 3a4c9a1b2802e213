"""Run one piece of work (a final save) in a thread of its own, waiting for it until a deadline.

The one mechanism behind "save once, within the deadline" for the cross-rank Coordinator's
preemption stop and the trainer callbacks: the work runs in a named thread; the caller waits on
the clock until the work ends or the deadline passes. An overrun sets ``cancelled`` (work that
can, watches it) and leaves the thread to finish on its own; the caller goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import final

from ._clock import Clock
from ._naming import thread_name

__all__ = ["Outcome", "run_until"]


@final
@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What became of work run with :func:`run_until`.

    ``finished``: it returned or raised before the deadline (``error`` is what it raised, None
    when it returned ``result``). Otherwise it overran: ``cancelled`` was set, and ``thread`` may
    still be running. ``seconds``: how long the caller waited.
    """

    finished: bool
    result: object = None
    error: BaseException | None = None
    seconds: float
    thread: threading.Thread

    @property
    def overran(self) -> bool:
        return not self.finished


def run_until(
    work: Callable[[], object],
    *,
    deadline: float,
    clock: Clock,
    name: str,
    cancelled: threading.Event | None = None,
    daemon: bool = False,
) -> Outcome:
    """Run ``work()`` in a thread named ``name`` and wait for it until ``deadline`` (on ``clock``).

    Nothing is swallowed: an exception from ``work`` is returned in ``Outcome.error`` for the
    caller to log and raise or record. ``daemon=False`` (the default) lets an overrunning save
    still finish if the process lives on.
    """
    done = threading.Event()
    box: list[object] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as e:
            failure.append(e)
        finally:
            done.set()

    began = clock.now()
    thread = threading.Thread(target=run, name=thread_name(name), daemon=daemon)
    thread.start()
    finished = clock.wait_until(done, deadline)
    seconds = clock.now() - began
    if not finished:
        if cancelled is not None:
            cancelled.set()
        return Outcome(finished=False, seconds=seconds, thread=thread)
    return Outcome(
        finished=True,
        result=box[0] if box else None,
        error=failure[0] if failure else None,
        seconds=seconds,
        thread=thread,
    )
