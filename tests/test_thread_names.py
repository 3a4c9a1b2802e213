"""Every thread tickwork starts is named "tickwork:...", so the leak guard (tests/conftest.py) and
a thread dump see them all."""

from __future__ import annotations

import threading

from tickwork import (
    Coordinator,
    LooperThread,
    StepsPerExecution,
    StepsPerExecutionTuner,
    TimedThread,
    every,
)
from tickwork._naming import THREAD_PREFIX, thread_name
from tickwork.testing import FakeClock

REAL_WAIT = 30.0


def test_thread_name_adds_the_prefix_once() -> None:
    """thread_name('x') is 'tickwork:x'; a name that has it already is kept."""
    assert thread_name("x") == "tickwork:x"
    assert thread_name("tickwork:x") == "tickwork:x"


def test_timed_threads_every_and_the_tuner(clock: FakeClock) -> None:
    """TimedThread (default name and a given one), every() and the tuner's thread."""

    class Job(TimedThread):
        def on_interval(self) -> None:
            pass

    tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1), clock=clock)
    threads = [
        Job(5.0, clock=clock),
        Job(5.0, clock=clock, name="mine", group=None),
        every(5.0, print, clock=clock),
    ]
    names = []
    for t in threads:
        t.start()
        assert t.thread is not None
        names.append(t.thread.name)
    names.append(tuner.start().name)
    for t in threads:
        t.stop(wait=True, timeout=REAL_WAIT)
    tuner.stop(timeout=REAL_WAIT)
    assert names == [
        "tickwork:TimedThread(Job)",
        "mine",  # a name the user chose is the thread's name, exactly
        "tickwork:every(print)",
        "tickwork:StepsPerExecutionTuner",
    ]


def test_looper_and_the_coordinators_join_helpers() -> None:
    """A LooperThread, and the helper threads Coordinator.join() starts to watch each thread."""
    coord = Coordinator()
    release = threading.Event()
    looper = LooperThread.loop(coord, None, lambda: release.wait(REAL_WAIT))
    joiner = threading.Thread(target=coord.join)
    joiner.start()
    try:
        helpers: list[str] = []
        for _ in range(int(REAL_WAIT / 0.01)):
            helpers = [t.name for t in threading.enumerate() if "Coordinator.join(" in t.name]
            if helpers:
                break
            release.wait(0.01)
    finally:
        coord.request_stop()
        release.set()
        joiner.join(REAL_WAIT)
    assert looper.name.startswith(THREAD_PREFIX)
    assert helpers
    assert all(name.startswith(THREAD_PREFIX) for name in helpers), helpers
