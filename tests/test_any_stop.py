"""any_stop(): one stop signal for several, woken at once by tickwork's own events."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from tickwork._clock import MONOTONIC, any_stop, check_clock
from tickwork._sync import SignalSafeEvent
from tickwork.testing import FakeClock


class TestAnyStop:
    def test_none_and_single(self) -> None:
        """No signal gives None; one signal is returned itself."""
        event = threading.Event()
        assert any_stop() is None
        assert any_stop(None, None) is None
        assert any_stop(None, event) is event

    def test_own_events_wake_a_waiter(self) -> None:
        """Setting one of two tickwork events ends a wait on the combination."""
        a, b = SignalSafeEvent(), SignalSafeEvent()
        both = any_stop(a, b)
        assert both is not None
        assert not both.is_set()
        assert not both.wait(0)
        started = threading.Event()
        result: list[bool] = []

        def waiter() -> None:
            started.set()
            result.append(both.wait(60))

        thread = threading.Thread(target=waiter)
        thread.start()
        assert started.wait(10)
        b.set()
        thread.join(10)
        assert result == [True]
        assert both.is_set()

    def test_foreign_event_is_seen(self) -> None:
        """A plain threading.Event beside a tickwork event also ends a wait."""
        own, foreign = SignalSafeEvent(), threading.Event()
        both = any_stop(own, foreign)
        assert both is not None
        foreign.set()
        assert both.wait(10)
        assert both.is_set()

    def test_own_event_set_while_blocked_on_a_foreign_one(self) -> None:
        """With a foreign part blocked on, a tickwork part set later still ends the wait."""
        own, foreign = SignalSafeEvent(), threading.Event()
        both = any_stop(own, foreign)
        assert both is not None
        timer = threading.Timer(0.05, own.set)
        timer.start()
        try:
            assert both.wait(30)
        finally:
            timer.cancel()

    def test_timeout_without_stop(self) -> None:
        """A wait with nothing set returns False."""
        both = any_stop(SignalSafeEvent(), threading.Event())
        assert both is not None
        assert both.wait(0.01) is False

    def test_already_set_part(self) -> None:
        """A part set before combining makes the combination set."""
        own = SignalSafeEvent()
        own.set()
        both = any_stop(own, SignalSafeEvent())
        assert both is not None
        assert both.is_set()
        assert both.wait(0)

    def test_combination_does_not_keep_listeners_alive(self) -> None:
        """A dropped combination is not called back: its subscription is weak."""
        own = SignalSafeEvent()
        ref = weakref.ref(any_stop(own, SignalSafeEvent()))
        gc.collect()
        assert ref() is None
        own.set()  # the dead listener is pruned, not called


class TestCheckClock:
    def test_default_and_fake(self) -> None:
        """None is the monotonic clock; a Clock is itself."""
        fake = FakeClock()
        assert check_clock(None) is MONOTONIC
        assert check_clock(fake) is fake

    def test_rejects_other(self) -> None:
        """Anything else is a TypeError naming the argument and the value."""
        with pytest.raises(TypeError, match=r"'timer' must be a tickwork.Clock.*got 3"):
            check_clock(3, argument="timer")
