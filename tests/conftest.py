"""Shared fixtures: a fake clock, and a check that no test leaves a tickwork thread running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tickwork._naming import THREAD_PREFIX
from tickwork.testing import FakeClock

# Every thread tickwork starts is named "tickwork:..." (tickwork._naming.thread_name), so one
# prefix catches a TimedThread, a SidecarEvaluator, a checkpoint watcher or a follow reader alike.
_OWN_THREADS = (THREAD_PREFIX,)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at t=1000 (not 0, so code that confuses 0 with 'unset' shows)."""
    return FakeClock(1000.0)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves one of tickwork's threads running (bounded real wait)."""
    before = set(threading.enumerate())
    yield
    limit = time.monotonic() + 5.0
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name.startswith(_OWN_THREADS)
        ]
        if not leaked or time.monotonic() > limit:
            break
        leaked[0].join(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"
