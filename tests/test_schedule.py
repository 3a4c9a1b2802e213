"""The fixed-rate schedule policy, as pure functions: no threads, no clocks."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwork._schedule import Overrun, Slot, claim, first_slot, next_slot


def run(
    policy: Overrun, interval: float, durations: list[float], wake_delays: list[float] | None = None
) -> list[tuple[Slot, float]]:
    """Simulate a ticker: each call takes durations[i] and wakes wake_delays[i] after its due
    time. Returns (claimed slot, start time) per call."""
    wake_delays = wake_delays or [0.0] * len(durations)
    slot = first_slot(100.0)
    out = []
    free_at = 100.0  # when the previous call ended
    for duration, delay in zip(durations, wake_delays, strict=True):
        start = max(slot.due, free_at) + delay
        slot = claim(slot, interval, start, policy)
        out.append((slot, start))
        free_at = start + duration
        slot = next_slot(slot, interval, free_at, policy)
    return out


class TestOnTime:
    def test_calls_are_due_on_the_grid_whatever_the_call_takes(self) -> None:
        """Call k is due at start + k * interval when calls fit in their slots."""
        calls = run(Overrun.SKIP, 10.0, [0.0, 9.9, 3.0, 10.0, 0.1])
        assert [s.number for s, _ in calls] == [0, 1, 2, 3, 4]
        assert [s.due for s, _ in calls] == [100.0, 110.0, 120.0, 130.0, 140.0]
        assert sum(s.missed for s, _ in calls) == 0

    def test_a_call_ending_exactly_on_the_next_slot_misses_nothing(self) -> None:
        """Finishing at the next due time is on time, not an overrun."""
        nxt = next_slot(first_slot(0.0), 1.0, 1.0, Overrun.SKIP)
        assert (nxt.number, nxt.due, nxt.missed) == (1, 1.0, 0)


class TestSkip:
    def test_an_overrun_runs_the_latest_due_slot_and_skips_the_rest(self) -> None:
        """A 25 s call on a 10 s grid: slot 2 (due 120) runs at once at 125, slot 1 is missed,
        and the call after it is back on the grid at 130."""
        calls = run(Overrun.SKIP, 10.0, [25.0, 1.0, 1.0])
        assert [(s.number, s.due, s.missed, start) for s, start in calls] == [
            (0, 100.0, 0, 100.0),
            (2, 120.0, 1, 125.0),
            (3, 130.0, 0, 130.0),
        ]

    def test_a_slight_overrun_runs_late_instead_of_missing(self) -> None:
        """A call ending 0.5 s after the next due time: that slot runs at once, nothing missed."""
        nxt = next_slot(first_slot(0.0), 10.0, 10.5, Overrun.SKIP)
        assert (nxt.number, nxt.due, nxt.missed) == (1, 10.0, 0)

    def test_no_burst_after_an_overrun(self) -> None:
        """After an overrun of 3.5 intervals only one late call runs, then the grid resumes."""
        calls = run(Overrun.SKIP, 1.0, [3.5, 0.1, 0.1, 0.1])
        assert [(s.number, start) for s, start in calls] == [
            (0, 100.0),
            (3, 103.5),
            (4, 104.0),
            (5, 105.0),
        ]

    def test_a_late_wake_runs_the_latest_due_slot(self) -> None:
        """A thread that wakes 2.5 intervals late runs slot 2 now and counts 0 and 1 as missed."""
        planned = first_slot(0.0)
        claimed = claim(planned, 1.0, 2.5, Overrun.SKIP)
        assert (claimed.number, claimed.due, claimed.missed) == (2, 2.0, 2)

    def test_a_slightly_late_wake_keeps_its_slot(self) -> None:
        """Lateness under one interval is lateness, not a missed slot."""
        claimed = claim(Slot(5, 5.0, 0.0), 1.0, 5.9, Overrun.SKIP)
        assert (claimed.number, claimed.missed) == (5, 0)

    @pytest.mark.parametrize("now", [0.3, 0.30000000000000004, 0.29999999999999993])
    def test_rounding_picks_the_right_slot(self, now: float) -> None:
        """With an interval that is not exact in binary the chosen overdue slot is due at or
        before now and less than one interval before it."""
        interval = 0.1
        nxt = next_slot(first_slot(0.0), interval, now, Overrun.SKIP)
        assert nxt.due <= now < nxt.due + interval


class TestCatchUp:
    def test_every_slot_runs_back_to_back(self) -> None:
        """CATCH_UP (TensorFlow's LooperThread) runs the covered slots at once: a burst."""
        calls = run(Overrun.CATCH_UP, 10.0, [25.0, 0.0, 0.0, 0.0])
        assert [s.number for s, _ in calls] == [0, 1, 2, 3]
        assert [start for _, start in calls] == [100.0, 125.0, 125.0, 130.0]
        assert sum(s.missed for s, _ in calls) == 0

    def test_a_late_wake_keeps_its_slot(self) -> None:
        """CATCH_UP never relabels a call."""
        assert claim(first_slot(0.0), 1.0, 5.0, Overrun.CATCH_UP).number == 0


class TestShift:
    def test_the_grid_moves_after_an_overrun(self) -> None:
        """SHIFT runs the late call at once and keeps the interval from it."""
        calls = run(Overrun.SHIFT, 10.0, [25.0, 1.0, 1.0])
        assert [start for _, start in calls] == [100.0, 125.0, 135.0]
        assert sum(s.missed for s, _ in calls) == 0

    def test_a_very_late_wake_moves_the_grid(self) -> None:
        """SHIFT re-anchors on a wake-up a whole interval late."""
        claimed = claim(Slot(1, 1.0, 0.0), 1.0, 3.5, Overrun.SHIFT)
        assert (claimed.number, claimed.due) == (1, 3.5)
        assert next_slot(claimed, 1.0, 3.6, Overrun.SHIFT).due == 4.5


durations = st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=40)
intervals = st.floats(min_value=0.01, max_value=10.0)


@given(intervals, durations)
def test_skip_keeps_every_call_on_the_grid(interval: float, ds: list[float]) -> None:
    """Under SKIP every call's due time is anchor + index * interval, indices increase, and
    calls + missed == index of the last call + 1 (no slot is lost from the count)."""
    calls = run(Overrun.SKIP, interval, ds)
    indices = [s.number for s, _ in calls]
    assert indices == sorted(set(indices))
    for slot, start in calls:
        assert math.isclose(slot.due, 100.0 + slot.number * interval, rel_tol=1e-9, abs_tol=1e-9)
        assert start >= slot.due
    assert len(calls) + sum(s.missed for s, _ in calls) == indices[-1] + 1


@given(intervals, durations, st.lists(st.floats(min_value=0.0, max_value=30.0), max_size=40))
def test_skip_lateness_is_under_one_interval(
    interval: float, ds: list[float], delays: list[float]
) -> None:
    """Under SKIP a call starts less than one interval after its slot's due time, however late
    the wake-up."""
    delays = (delays + [0.0] * len(ds))[: len(ds)]
    for slot, start in run(Overrun.SKIP, interval, ds, delays):
        assert 0.0 <= start - slot.due < interval * (1 + 1e-9)


@given(intervals, durations, st.lists(st.floats(min_value=0.0, max_value=30.0), max_size=40))
def test_skip_never_bursts(interval: float, ds: list[float], delays: list[float]) -> None:
    """Under SKIP each call starts inside its own slot's grid cell [due(k), due(k+1)) and slot
    numbers increase, so no two calls ever start in the same cell: there is never a burst."""
    delays = (delays + [0.0] * len(ds))[: len(ds)]
    calls = run(Overrun.SKIP, interval, ds, delays)
    for slot, start in calls:
        assert slot.anchor + slot.number * interval <= start
        assert start < slot.anchor + (slot.number + 1) * interval
    numbers = [slot.number for slot, _ in calls]
    assert all(b > a for a, b in itertools.pairwise(numbers))


def test_a_wake_at_exactly_the_next_due_time_takes_that_slot() -> None:
    """Found by hypothesis: a call waking exactly one interval late (0.1 s in floating point)
    must run in the next slot, not in its own and then again in the next at the same instant."""
    calls = run(Overrun.SKIP, 0.1, [0.0, 0.0], [0.1, 0.0])
    assert [(s.number, s.missed) for s, _ in calls] == [(1, 1), (2, 0)]
