"""What a tick costs beside its call (issue 18, item 3), checked by structure, not by timing.

A tick of a TimedThread on the real clock waits in one C call (a StopGate: a lock the stop
releases), notes its statistics in two appends and asks the schedule's policy nothing while it is
on time. These tests pin those properties, and that the fast paths give the answers the slow ones
gave: the gate's waits, the folded statistics, the schedule's on-time answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tickwork
from tickwork import _ticker
from tickwork._clock import MONOTONIC, any_stop, relayed_stop, repeated_waits
from tickwork._schedule import Overrun, Slot, claim, next_slot
from tickwork._sync import SignalSafeEvent, StopGate
from tickwork._ticker import FOLD_EVERY, LATENESS_WINDOW, Ticker, _StatsRecorder
from tickwork.testing import FakeClock


class TestStopGate:
    def test_a_wait_ends_at_its_deadline_never_before(self) -> None:
        """Unset, the gate waits until time.monotonic() reaches the deadline: False, not early."""
        gate = StopGate(SignalSafeEvent())
        deadline = time.monotonic() + 0.02
        assert gate.wait_until(deadline) is False
        assert time.monotonic() >= deadline

    def test_a_past_deadline_returns_at_once(self) -> None:
        """A deadline already past is a look at the stop, not a wait."""
        gate = StopGate(SignalSafeEvent())
        assert gate.wait_until(time.monotonic() - 1.0) is False

    def test_an_event_set_before_opens_it_at_once(self) -> None:
        """A gate on an event already set returns True at once, even for a deadline past."""
        event = SignalSafeEvent()
        event.set()
        gate = StopGate(event)
        assert gate.wait_until(time.monotonic() + 60.0) is True
        assert gate.wait_until(time.monotonic() - 1.0) is True

    def test_a_set_from_another_thread_ends_a_long_wait(self) -> None:
        """set() in another thread ends a 60 s wait at once."""
        event = SignalSafeEvent()
        gate = StopGate(event)
        threading.Timer(0.02, event.set).start()
        started = time.monotonic()
        assert gate.wait_until(started + 60.0) is True
        assert time.monotonic() - started < 10.0

    def test_set_twice_and_waited_on_again_stays_open(self) -> None:
        """A second set() (as from a signal handler inside the first) is harmless; every later
        wait returns True at once."""
        event = SignalSafeEvent()
        gate = StopGate(event)
        event.set()
        event.set()
        for _ in range(3):
            assert gate.wait_until(time.monotonic() + 60.0) is True

    def test_an_event_cleared_after_a_set_closes_it_again(self) -> None:
        """Set then cleared before the waiter came: the wait goes on to its deadline."""
        event = SignalSafeEvent()
        gate = StopGate(event)
        event.set()
        event.clear()
        deadline = time.monotonic() + 0.02
        assert gate.wait_until(deadline) is False
        assert time.monotonic() >= deadline
        event.set()
        assert gate.wait_until(time.monotonic() + 60.0) is True

    def test_a_deadline_beyond_timeout_max_is_no_overflow(self) -> None:
        """A deadline 1e300 s ahead waits (in parts) instead of raising OverflowError."""
        event = SignalSafeEvent()
        gate = StopGate(event)
        threading.Timer(0.02, event.set).start()
        assert gate.wait_until(time.monotonic() + 1e300) is True


class TestRepeatedWaits:
    def test_the_real_clock_and_an_own_event_wait_on_a_gate(self) -> None:
        """The real clock with tickwork's own event, or a combination of them: a StopGate."""
        event = SignalSafeEvent()
        for stop in (event, any_stop(event, SignalSafeEvent())):
            assert stop is not None
            now, wait_until = repeated_waits(MONOTONIC, stop)
            assert now is time.monotonic
            assert isinstance(getattr(wait_until, "__self__", None), StopGate)

    def test_a_relayed_combination_waits_on_a_gate(self) -> None:
        """Relayed (a foreign Event behind a relay thread): its own event opens the gate."""
        foreign = threading.Event()
        combined = relayed_stop(foreign, SignalSafeEvent(), name="test")
        try:
            _, wait_until = repeated_waits(MONOTONIC, combined)
            assert isinstance(getattr(wait_until, "__self__", None), StopGate)
            foreign.set()
            assert wait_until(time.monotonic() + 60.0) is True
        finally:
            combined.close()

    def test_a_combination_whose_part_was_cleared_waits_again(self) -> None:
        """A combination's own event stays set once a part was set; after the part is cleared
        the gate still waits to its deadline (it looks at the parts), and the part's next set()
        ends the wait at once. (The distributed sender re-runs its ticker so, after each wake.)"""
        wake, end = SignalSafeEvent(), SignalSafeEvent()
        combined = any_stop(wake, end)
        assert combined is not None
        wake.set()
        wake.clear()
        _, wait_until = repeated_waits(MONOTONIC, combined)
        deadline = time.monotonic() + 0.02
        assert wait_until(deadline) is False
        assert time.monotonic() >= deadline
        threading.Timer(0.02, wake.set).start()
        started = time.monotonic()
        assert wait_until(started + 60.0) is True
        assert time.monotonic() - started < 10.0

    def test_a_foreign_stop_or_a_fake_clock_waits_on_the_clock(self, clock: FakeClock) -> None:
        """A plain threading.Event, a polled combination, or any clock but the real one: the
        clock's own wait_until, which sees the stop."""
        foreign = threading.Event()
        polled = any_stop(foreign, SignalSafeEvent())
        own = SignalSafeEvent()
        assert polled is not None
        for the_clock, stop, signal in (
            (MONOTONIC, foreign, foreign),
            (MONOTONIC, polled, foreign),
            (clock, own, own),
        ):
            now, wait_until = repeated_waits(the_clock, stop)
            assert not isinstance(getattr(wait_until, "__self__", None), StopGate)
            assert the_clock is MONOTONIC or now() == clock.now()
            signal.set()
            assert wait_until(the_clock.now() + 60.0) is True
            signal.clear()


class TestATick:
    def test_on_the_real_clock_a_tick_makes_no_condition_wait(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ticks of every(0.002, f) on the real clock: no threading.Condition wait in the ticking
        thread (its wait is one Lock.acquire), and every call is counted."""
        waited: list[str] = []
        ticking: list[threading.Thread] = []
        real_wait = threading.Condition.wait

        def counting_wait(self: threading.Condition, timeout: float | None = None) -> bool:
            if threading.current_thread() in ticking:
                waited.append(threading.current_thread().name)
            return real_wait(self, timeout)

        calls = []
        enough = threading.Event()

        def tick() -> None:
            if not ticking:
                ticking.append(threading.current_thread())
                monkeypatch.setattr(threading.Condition, "wait", counting_wait)
            calls.append(1)
            if len(calls) >= 20:
                enough.set()

        with tickwork.every(0.002, tick) as timed:
            assert enough.wait(30)
        assert timed.statistics().calls == len(calls)
        assert waited == []

    def test_the_policy_is_asked_only_off_the_grid(
        self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On time, claim() and next_slot() are not called; a call that overruns its slot asks
        next_slot(), which (Overrun.SKIP) runs the latest due slot at once and skips the rest."""
        asked: list[str] = []

        def spy(name: str, real: Callable[..., Slot]) -> Callable[..., Slot]:
            def asking(*args: object) -> Slot:
                asked.append(name)
                return real(*args)

            return asking

        monkeypatch.setattr(_ticker, "claim", spy("claim", claim))
        monkeypatch.setattr(_ticker, "next_slot", spy("next_slot", next_slot))
        times: list[float] = []

        def tick() -> None:
            times.append(clock.now())
            if len(times) == 3:
                clock.advance(12.0)  # this call overruns two slots and more

        with tickwork.every(5.0, tick, clock=clock) as timed:
            clock.wait_for_sleepers(1)
            clock.advance(5.0)
            clock.wait_for_sleepers(1)
            assert asked == []
            clock.advance(5.0)  # the third call, which overruns
            clock.wait_for_sleepers(1)
            assert asked == ["next_slot"]
            clock.advance(3.0)
            clock.wait_for_sleepers(1)
        # The slot due at 1015 passed during the call; the one due at 1020 runs at once, late.
        assert times == [1000.0, 1005.0, 1010.0, 1022.0, 1025.0]
        assert timed.statistics().missed == 1


class TestFoldedStatistics:
    def test_a_snapshot_counts_the_notes_not_folded_yet(self) -> None:
        """Notes taken but not folded are in a snapshot; folding does not change it."""
        stats = _StatsRecorder()
        lateness, busy = stats.notes()
        for value in (0.003, 0.001, 0.002):
            lateness.append(value)
            busy.append(value / 10)
        before = stats.snapshot()
        stats.fold()
        after = stats.snapshot()
        assert before == after
        assert after.calls == 3
        assert after.lateness_max == 0.003
        assert after.lateness_p50 == 0.002
        assert after.lateness_mean == pytest.approx(0.002)
        assert after.busy_seconds == pytest.approx(0.0006)

    def test_percentiles_cover_the_most_recent_window_across_folds(self) -> None:
        """The percentile window holds the most recent LATENESS_WINDOW calls, folded or not."""
        stats = _StatsRecorder()
        lateness, busy = stats.notes()
        for _ in range(LATENESS_WINDOW):
            lateness.append(1.0)  # old and slow
            busy.append(0.0)
            if len(busy) >= FOLD_EVERY:
                stats.fold()
        for _ in range(LATENESS_WINDOW):
            lateness.append(0.0)  # recent and on time, partly not folded
            busy.append(0.0)
            if len(busy) >= FOLD_EVERY - 1:
                stats.fold()
        snap = stats.snapshot()
        assert snap.calls == 2 * LATENESS_WINDOW
        assert snap.lateness_p99 == 0.0
        assert snap.lateness_max == 1.0
        assert snap.lateness_mean == pytest.approx(0.5)

    def test_reset_forgets_the_notes_too(self) -> None:
        """reset() clears the pending notes, through the same lists the ticking thread holds."""
        stats = _StatsRecorder()
        lateness, busy = stats.notes()
        lateness.append(1.0)
        busy.append(1.0)
        stats.reset()
        assert stats.snapshot().calls == 0
        assert stats.notes() == ([], [])
        assert stats.notes()[0] is lateness

    def test_thousands_of_ticks_are_counted_exactly(self) -> None:
        """A back-to-back ticker over many folds counts every call and every error."""
        n = 3 * FOLD_EVERY + 7
        done = SignalSafeEvent()
        count = [0]

        def call() -> None:
            count[0] += 1
            if count[0] == n:
                done.set()
            if count[0] % 100 == 0:
                raise ValueError(count[0])

        ticker = Ticker(None, call, clock=MONOTONIC, overrun=Overrun.SKIP, on_error=lambda e: True)
        ticker.run(done)
        stats = ticker.statistics()
        assert stats.calls == n
        assert stats.errors == n // 100


class TestScheduleOnTime:
    """What the ticker takes for granted without asking the policy (see _ticker.Ticker.run)."""

    @given(
        number=st.integers(0, 10**6),
        anchor=st.floats(-1e6, 1e6),
        interval=st.floats(1e-4, 1e3),
        fraction=st.floats(0.0, 1.0, exclude_max=True),
        policy=st.sampled_from(list(Overrun)),
    )
    def test_before_the_next_due_time_the_call_keeps_its_slot_and_the_next_is_the_next_cell(
        self, number: int, anchor: float, interval: float, fraction: float, policy: Overrun
    ) -> None:
        """Up to the next cell's due time, anchor + (number + 1) * interval: claim() keeps the
        planned slot and next_slot() is that next cell, with nothing missed."""
        due = anchor + number * interval
        next_due = anchor + (number + 1) * interval
        planned = Slot(number, due, anchor)
        now = min(due + fraction * (next_due - due), next_due)
        if now < next_due:
            assert claim(planned, interval, now, policy) is planned
        assert next_slot(planned, interval, now, policy) == Slot(number + 1, next_due, anchor, 0)
        assert next_slot(planned, interval, next_due, policy) == Slot(
            number + 1, next_due, anchor, 0
        )
