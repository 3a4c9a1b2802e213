"""Which rank is slow, decided from readings alone (no threads, no store, no clock)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tickwork.distributed import SlowRank
from tickwork.distributed._pace_policy import (
    CHRONIC_WINDOWS,
    NAMED_AFTER,
    PaceReading,
    PaceWatch,
)


class Job:
    """Ranks in lockstep (a collective ends each step): each rank's main thread is busy for its
    own compute time per step and waits for the slowest; readings every ``window`` seconds."""

    def __init__(self, world: int, window: float = 1.0) -> None:
        self.watch = PaceWatch(list(range(world)), window)
        self.world = world
        self.window = window
        self.now = 100.0
        self.step = 0
        self.busy = [0.0] * world
        self.changes: list[tuple[str, SlowRank]] = []
        self.watch.observe(self.now, self.readings())

    def readings(self) -> dict[int, PaceReading | None]:
        return {r: PaceReading(self.step, self.busy[r]) for r in range(self.world)}

    def run(self, compute: Mapping[int, float], windows: int = 1, default: float = 0.02) -> None:
        """``windows`` windows in which rank r computes ``compute.get(r, default)`` s a step."""
        for _ in range(windows):
            per_rank = [compute.get(r, default) for r in range(self.world)]
            steps = max(1, round(self.window / max(per_rank)))
            self.step += steps
            for r in range(self.world):
                self.busy[r] += per_rank[r] * steps
            self.now += self.window
            self.changes += self.watch.observe(self.now, self.readings())

    def named(self) -> list[int]:
        return [s.rank for what, s in self.changes if what == "named"]


class TestNamed:
    def test_a_rank_30_percent_slower_is_named_after_three_windows(self) -> None:
        """Every step takes the slowest rank's time (lockstep); busy time tells rank 2 apart."""
        job = Job(4)
        job.run({}, windows=5)
        assert job.changes == []
        onset = job.now
        job.run({2: 0.026}, windows=NAMED_AFTER - 1)
        assert job.named() == []
        job.run({2: 0.026})
        assert job.named() == [2]
        (slow,) = job.watch.slow_now()
        assert slow.rank == 2
        assert slow.slower_by == pytest.approx(0.3)
        assert slow.busy_per_step == pytest.approx(0.026)
        assert slow.others_per_step == pytest.approx(0.02)
        assert slow.since == onset
        assert slow.until is None
        assert slow.windows == NAMED_AFTER
        assert not slow.chronic

    def test_two_ranks_compare_each_with_the_other(self) -> None:
        """With two ranks the median of the others is the other one: 20 % slower is named."""
        job = Job(2)
        job.run({1: 0.024}, windows=NAMED_AFTER)
        assert job.named() == [1]

    def test_just_under_the_threshold_is_not_slow(self) -> None:
        job = Job(3)
        job.run({0: 0.0228}, windows=20)  # 14 % more
        assert job.changes == []

    def test_ranks_without_a_collective_are_compared_by_their_own_steps(self) -> None:
        """No lockstep (each rank at its own rate, always busy): the slow one makes fewer steps
        in a window, so its busy time per step is higher."""
        watch = PaceWatch([0, 1, 2], 1.0)
        steps = [0, 0, 0]
        busy = 0.0
        changes = []
        for window in range(6):
            busy += 1.0
            steps = [steps[0] + 50, steps[1] + 50, steps[2] + 35]
            readings: dict[int, PaceReading | None] = {
                r: PaceReading(steps[r], busy) for r in range(3)
            }
            changes += watch.observe(100.0 + window, readings)
        assert [s.rank for what, s in changes if what == "named"] == [2]


class TestPausesAndLaggards:
    def test_a_one_off_pause_is_counted_not_named(self) -> None:
        """Rank 1 slow for one window (a collection) then two (a slow read): pauses."""
        job = Job(3)
        job.run({1: 0.06})
        job.run({}, windows=3)
        job.run({1: 0.05}, windows=2)
        job.run({}, windows=3)
        assert job.changes == []
        job.run({1: 0.03}, windows=NAMED_AFTER)
        (slow,) = job.watch.slow_now()
        assert slow.pauses == 2

    def test_an_episode_ends_and_is_kept(self) -> None:
        job = Job(3)
        job.run({0: 0.03}, windows=4)
        ended_at = job.now
        job.run({})
        assert [what for what, _ in job.changes] == ["named", "ended"]
        assert job.watch.slow_now() == []
        (episode,) = job.watch.episodes()
        assert episode.rank == 0
        assert episode.until == ended_at
        assert episode.windows == 4

    def test_a_chronic_laggard_is_told_apart_from_an_episode(self) -> None:
        """Slow in most windows, with short recoveries: chronic once half of its last 30
        windows were slow; a rank slow once for 3 windows is an episode, not chronic."""
        job = Job(3)
        job.run({2: 0.03}, windows=NAMED_AFTER)
        job.run({})
        assert not job.watch.episodes()[0].chronic
        for _ in range(CHRONIC_WINDOWS // 4):
            job.run({1: 0.03}, windows=NAMED_AFTER)
            job.run({})
        chronic = [s for _, s in job.changes if s.chronic]
        assert {s.rank for s in chronic} == {1}
        assert not job.watch.episodes()[0].chronic  # rank 2's one episode
        assert job.watch.episodes()[-1].chronic  # rank 1's last

    def test_an_episode_that_goes_on_becomes_chronic(self) -> None:
        job = Job(3)
        job.run({1: 0.03}, windows=CHRONIC_WINDOWS // 2 - 1)
        assert [what for what, _ in job.changes] == ["named"]
        job.run({1: 0.03})
        assert [what for what, _ in job.changes] == ["named", "chronic"]
        (slow,) = job.watch.slow_now()
        assert slow.chronic
        assert slow.windows == CHRONIC_WINDOWS // 2

    def test_windows_without_a_step_tell_nothing(self) -> None:
        """A long step (a save) spanning windows neither names a rank nor ends an episode."""
        job = Job(3)
        job.run({2: 0.03}, windows=NAMED_AFTER)
        for _ in range(5):  # no step completes: same step, busy time grows
            job.now += 1.0
            job.busy = [b + 1.0 for b in job.busy]
            job.changes += job.watch.observe(job.now, job.readings())
        assert [what for what, _ in job.changes] == ["named"]
        assert [s.rank for s in job.watch.slow_now()] == [2]

    def test_readings_closer_than_a_window_are_merged(self) -> None:
        """Heartbeats every 0.25 s: windows of 1 s all the same."""
        job = Job(3, window=0.25)
        job.watch = PaceWatch([0, 1, 2], 1.0)
        job.watch.observe(job.now, job.readings())
        job.run({1: 0.03}, windows=4 * NAMED_AFTER - 1)
        assert job.named() == []
        job.run({1: 0.03})
        assert job.named() == [1]

    def test_unreadable_or_missing_readings_are_left_out(self) -> None:
        watch = PaceWatch([0, 1, 2], 1.0)
        watch.observe(0.0, {0: PaceReading(0, 0.0), 1: None, 2: PaceReading(None, 0.0)})
        changes = []
        for t in range(1, 6):
            changes += watch.observe(
                float(t), {0: PaceReading(10 * t, 0.1 * t), 1: None, 2: PaceReading(None, 0.0)}
            )
        assert changes == []
