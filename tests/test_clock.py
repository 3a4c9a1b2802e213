"""The clock abstraction: the real monotonic clock, waits a stop interrupts, and FakeClock."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tickwork import Coordinator, MonotonicClock
from tickwork._clock import MONOTONIC, as_waitable
from tickwork._sync import SignalSafeEvent
from tickwork.testing import FakeClock

NEVER = 1e300  # a timeout that never passes (a wait without a limit)
REAL_WAIT = 30.0  # real seconds a test waits for its own thread; reached only on a hang


class TestMonotonicClock:
    def test_now_is_monotonic_time(self) -> None:
        """now() reads time.monotonic()."""
        before = time.monotonic()
        now = MonotonicClock().now()
        assert before <= now <= time.monotonic()

    def test_a_set_stop_returns_at_once(self) -> None:
        """wait() on a stop that is already set returns True; its timeout is one that never
        passes, so returning at all shows it did not wait for it."""
        stop = threading.Event()
        stop.set()
        assert MONOTONIC.wait(stop, NEVER) is True

    @pytest.mark.parametrize("stop_kind", ["event", "own", "coordinator"])
    def test_a_stop_set_from_another_thread_ends_the_wait(self, stop_kind: str) -> None:
        """A wait whose timeout never passes ends when another thread sets the stop: the waiter
        is seen waiting, the stop is set, and the wait returns True (it could not time out)."""
        coord = Coordinator()
        stop: Any = {
            "event": threading.Event(),
            "own": SignalSafeEvent(),
            "coordinator": as_waitable(coord),
        }[stop_kind]
        result: list[bool] = []
        entered = threading.Event()

        def waiter() -> None:
            entered.set()
            result.append(MONOTONIC.wait(stop, NEVER))

        thread = threading.Thread(target=waiter)
        thread.start()
        assert entered.wait(REAL_WAIT)
        if stop_kind == "coordinator":
            coord.request_stop()
        else:
            stop.set()
        thread.join(REAL_WAIT)  # bounded only against a hang; it returns as the stop is set
        assert result == [True]

    def test_the_timeout_elapses(self) -> None:
        """Without a stop the wait returns False once the timeout has passed."""
        started = time.monotonic()
        assert MONOTONIC.wait(threading.Event(), 0.01) is False
        assert time.monotonic() - started >= 0.01

    def test_wait_until_never_returns_early(self) -> None:
        """wait_until() returns only once now() has reached the deadline."""
        deadline = MONOTONIC.now() + 0.02
        assert MONOTONIC.wait_until(threading.Event(), deadline) is False
        assert MONOTONIC.now() >= deadline

    def test_a_wait_with_neither_stop_nor_timeout_is_refused(self) -> None:
        """A wait that could never end is a ValueError."""
        with pytest.raises(ValueError, match="stop signal or a timeout"):
            MONOTONIC.wait(None, None)


class TestAsWaitable:
    def test_an_event_is_used_as_is(self) -> None:
        """A threading.Event is already waitable."""
        event = threading.Event()
        assert as_waitable(event) is event

    def test_a_coordinator_gives_its_stop_signal(self) -> None:
        """A Coordinator's stop request is seen through the waitable."""
        coord = Coordinator()
        waitable = as_waitable(coord)
        assert waitable is not None
        assert not waitable.is_set()
        coord.request_stop()
        assert waitable.is_set()

    def test_a_duck_typed_coordinator_is_adapted(self) -> None:
        """Anything with should_stop()/wait_for_stop() (e.g. tf.train.Coordinator) works."""

        class TfLike:
            def __init__(self) -> None:
                self.event = threading.Event()

            def should_stop(self) -> bool:
                return self.event.is_set()

            def wait_for_stop(self, timeout: float | None = None) -> bool:
                return self.event.wait(timeout)

        tf_like = TfLike()
        waitable = as_waitable(tf_like)
        assert waitable is not None
        tf_like.event.set()
        assert waitable.is_set()
        assert waitable.wait(0) is True

    def test_none_means_no_stop(self) -> None:
        """None is allowed and stays None."""
        assert as_waitable(None) is None

    def test_anything_else_is_a_type_error_naming_the_argument(self) -> None:
        """A value that cannot be waited on is refused with the argument's name."""
        with pytest.raises(TypeError, match="'stop' must be a threading.Event"):
            as_waitable(42)


class TestFakeClock:
    def test_time_moves_only_when_advanced(self, clock: FakeClock) -> None:
        """now() stays put until advance()."""
        assert clock.now() == 1000.0
        clock.advance(2.5)
        assert clock.now() == 1002.5
        clock.advance_to(1001.0)  # the past: no-op
        assert clock.now() == 1002.5

    def test_time_never_goes_backwards(self, clock: FakeClock) -> None:
        """advance() refuses negative and non-finite steps."""
        with pytest.raises(ValueError, match="'seconds' must be >= 0"):
            clock.advance(-1)
        with pytest.raises(ValueError, match="'seconds' must be a finite number"):
            clock.advance(float("nan"))

    def test_a_waiter_wakes_when_its_deadline_comes(self, clock: FakeClock) -> None:
        """A thread waiting 5 fake seconds wakes when time reaches its deadline, not before."""
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(clock.wait(threading.Event(), 5)))
        thread.start()
        clock.wait_for_sleepers(1)
        assert clock.next_deadline() == 1005.0
        clock.advance(4.9)
        assert clock.sleepers == 1
        clock.advance(0.1)
        thread.join(10)
        assert result == [False]

    def test_advance_returns_after_due_waiters_left(self, clock: FakeClock) -> None:
        """After advance() the waiters it made due are no longer counted as sleeping."""
        threads = [threading.Thread(target=clock.wait, args=(None, 1.0)) for _ in range(3)]
        for t in threads:
            t.start()
        clock.wait_for_sleepers(3)
        clock.advance(1.0)
        assert clock.sleepers == 0
        for t in threads:
            t.join(10)

    def test_a_stop_interrupts_a_fake_wait(self, clock: FakeClock) -> None:
        """Setting the stop ends a fake wait without moving time."""
        stop = threading.Event()
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(clock.wait(stop, 100)))
        thread.start()
        clock.wait_for_sleepers(1)
        stop.set()
        thread.join(10)
        assert result == [True]
        assert clock.now() == 1000.0

    def test_wait_for_sleepers_times_out_with_a_clear_error(self, clock: FakeClock) -> None:
        """Waiting for a sleeper that never comes raises TimeoutError instead of hanging."""
        with pytest.raises(TimeoutError, match="expected 1 thread"):
            clock.wait_for_sleepers(1, timeout=0.05)
