"""TimedThread's stop=: an Event, any Waitable or a Coordinator ends it; a Coordinator gets its
errors."""

from __future__ import annotations

import logging
import threading

import pytest

from tickwork import Coordinator, TimedThread, every
from tickwork.testing import FakeClock

REAL_WAIT = 30.0


class Boom(Exception):
    pass


class Flag:
    """A Waitable that is not a threading.Event."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class TestStopSignal:
    @pytest.mark.parametrize("make", [threading.Event, Flag], ids=["Event", "Waitable"])
    def test_setting_the_signal_ends_the_thread(self, clock: FakeClock, make: type) -> None:
        """The thread waiting for its next slot ends once stop= is set; stop= is left set and
        the thread's own stop() is not needed."""
        calls: list[float] = []
        signal = make()
        t = every(5.0, lambda: calls.append(clock.now()), clock=clock, stop=signal)
        t.start()
        clock.wait_for_sleepers(1)
        signal.set()
        assert t.join(REAL_WAIT)
        assert calls == [1000.0]
        assert signal.is_set()

    def test_own_stop_leaves_the_signal_alone(self, clock: FakeClock) -> None:
        """stop() ends the thread and does not set the stop= it was given."""
        signal = threading.Event()
        t = every(5.0, lambda: None, clock=clock, stop=signal)
        t.start()
        clock.wait_for_sleepers(1)
        assert t.stop(wait=True, timeout=REAL_WAIT)
        assert not signal.is_set()

    def test_a_set_signal_ends_each_new_run_at_once(self, clock: FakeClock) -> None:
        """Once stop= is set, start() runs no call: the schedule checks it before the first."""
        calls: list[float] = []
        signal = threading.Event()
        signal.set()
        t = every(5.0, lambda: calls.append(clock.now()), clock=clock, stop=signal)
        t.start()
        assert t.join(REAL_WAIT)
        assert calls == []

    def test_a_bad_stop_names_the_argument(self) -> None:
        """stop= must be a Waitable or a Coordinator."""
        with pytest.raises(TypeError, match="'stop' must be a threading.Event .* got 'soon'"):
            every(1.0, print, stop="soon")  # type: ignore[arg-type]  # on purpose


class TestCoordinator:
    def test_request_stop_ends_the_thread_and_join_waits_for_it(self, clock: FakeClock) -> None:
        """A Coordinator as stop= stops the thread; the thread is registered with it, so
        coord.join() waits for it."""
        coord = Coordinator(clock=clock)
        t = every(5.0, lambda: None, clock=clock, stop=coord)
        t.start()
        clock.wait_for_sleepers(1)
        coord.request_stop()
        coord.join(stop_grace_period_secs=REAL_WAIT)
        assert not t.is_alive()

    def test_an_error_is_reported_to_the_coordinator(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """on_interval's exception is kept by the thread and reported to the Coordinator, whose
        stop ends the thread and whose join() re-raises that very exception."""
        coord = Coordinator(clock=clock)
        error = Boom("no disk")

        def fail() -> None:
            raise error

        t = every(5.0, fail, clock=clock, stop=coord)
        with caplog.at_level(logging.ERROR, logger="tickwork"):
            t.start()
            assert coord.wait_for_stop(REAL_WAIT)
        assert t.join(REAL_WAIT)
        assert coord.reported_exceptions == (error,)
        assert t.errors == (error,)
        assert "reported to the coordinator" in caplog.text
        with pytest.raises(Boom, match="no disk"):
            coord.join()

    def test_an_error_after_the_coordinator_was_joined_is_kept(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A joined Coordinator refuses new errors; the thread keeps the error and ends."""
        coord = Coordinator(clock=clock)
        coord.join()
        coord.clear_stop()  # not stopped, but ...
        coord.join([])  # ... joined again, so request_stop(error) raises instead of keeping it
        error = Boom("late")

        class Failing(TimedThread):
            def on_interval(self) -> None:
                raise error

        t = Failing(5.0, clock=clock, stop=coord)
        with caplog.at_level(logging.WARNING, logger="tickwork"):
            t.start()
            assert t.join(REAL_WAIT)
        assert t.errors == (error,)
        assert "the coordinator refused the error" in caplog.text
        with pytest.raises(Boom):
            t.raise_errors()
