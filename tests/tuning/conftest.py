"""Fixtures for the steps-per-execution tuner's tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tickwork.testing import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake clock starting at t=1000 (not 0, so code that confuses 0 with 'unset' shows)."""
    return FakeClock(1000.0)


@pytest.fixture(autouse=True)
def _no_tuner_thread_left() -> Iterator[None]:
    """Fail a test that leaves a tuner thread running (bounded real wait)."""
    before = set(threading.enumerate())
    yield
    limit = time.monotonic() + 5.0
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name.startswith("StepsPerExecutionTuner")
        ]
        if not leaked or time.monotonic() > limit:
            break
        leaked[0].join(0.05)
    assert not leaked, f"tuner threads left running: {[t.name for t in leaked]}"
