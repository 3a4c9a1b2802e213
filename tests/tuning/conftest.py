"""Fixtures for the steps-per-execution tuner's tests."""

from __future__ import annotations

import pytest

from tickwork.testing import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake clock starting at t=1000 (not 0, so code that confuses 0 with 'unset' shows)."""
    return FakeClock(1000.0)


# Tuner threads left running are caught by the guard in tests/conftest.py (every tickwork thread's
# name starts with tickwork:), here and in tests/integrations alike.
