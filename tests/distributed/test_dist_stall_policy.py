"""The stall verdict and the suspect as pure functions (no threads, no store), and the
Coordinator's stall arguments."""

from __future__ import annotations

import pytest

from tickwork.distributed import Coordinator, MemoryStore
from tickwork.distributed._stall_policy import AUTO_FACTOR, AUTO_FLOOR, StallWatch, suspect

RANKS = [0, 1, 2]


def run(watch: StallWatch, t0: float, steps_per_rank: dict[int, list[tuple[float, int]]]) -> None:
    """Feed (time, step) samples of each rank, in time order."""
    samples = sorted((t, r, s) for r, seq in steps_per_rank.items() for t, s in seq)
    for t, r, s in samples:
        watch.observe(t0 + t, {r: s})


class TestVerdict:
    def test_a_rank_that_stops_advancing_is_stalled_after_the_timeout(self) -> None:
        """Steps every second, then rank 1 stands still: a verdict once 10 s have passed."""
        watch = StallWatch(RANKS, 10.0)
        for t in range(6):
            watch.observe(float(t), {r: t if r != 1 or t < 3 else 3 for r in RANKS})
        assert watch.verdict(12.9, RANKS) is None
        stall = watch.verdict(13.0, RANKS)
        assert stall is not None
        assert stall.rank == 1
        assert stall.seconds == 10.0
        assert stall.steps == {0: 5, 1: 3, 2: 5}

    def test_steps_faster_than_the_reads_still_start_the_clock(self) -> None:
        """Every step so far fell between two reads (a fast start, then a stuck step): the
        ranks' first steps tell that steps were completed, so the stall is still named."""
        watch = StallWatch(RANKS, 3.0)
        watch.observe(0.0, dict.fromkeys(RANKS), dict.fromkeys(RANKS))
        for t in (1.0, 2.0, 3.0, 4.0):  # steps 1..4 ran before the read at 1 s; then stuck
            watch.observe(t, {0: 5, 1: 4, 2: 5}, dict.fromkeys(RANKS, 1))
        assert watch.verdict(3.9, RANKS) is None
        stall = watch.verdict(4.0, RANKS)
        assert stall is not None
        assert (stall.seconds, stall.steps) == (3.0, {0: 5, 1: 4, 2: 5})
        without_firsts = StallWatch(RANKS, 3.0)  # what the reads alone cannot tell
        without_firsts.observe(0.0, dict.fromkeys(RANKS))
        for t in (1.0, 2.0, 3.0, 4.0):
            without_firsts.observe(t, {0: 5, 1: 4, 2: 5})
        assert without_firsts.verdict(10.0, RANKS) is None

    def test_a_dead_rank_is_not_a_stall(self) -> None:
        """Only live ranks count (a silent rank is the heartbeats' business)."""
        watch = StallWatch(RANKS, 10.0)
        watch.observe(0.0, dict.fromkeys(RANKS, 0))
        watch.observe(1.0, {0: 1, 1: 1})
        assert watch.verdict(100.0, [0, 1]) is not None
        watch.observe(100.0, {0: 2, 1: 2})
        assert watch.verdict(105.0, [0, 1]) is None

    def test_a_long_step_of_0_8_timeout_is_no_stall(self) -> None:
        """Steps of varying length, one of 0.8 x the timeout: never a verdict."""
        watch = StallWatch(RANKS, 10.0)
        t = 0.0
        for step, length in enumerate([0.1, 2.0, 0.5, 8.0, 0.3, 7.9, 1.0]):
            watch.observe(t, dict.fromkeys(RANKS, step))
            for k in range(1, 9):
                assert watch.verdict(t + length * k / 8, RANKS) is None
            t += length

    def test_the_first_step_and_a_late_rank_count_from_the_first_completed_step(self) -> None:
        """Compilation (a first step of 100 s) and a rank whose first step comes 50 s late
        never trigger; the clock starts when a step is first seen to complete."""
        watch = StallWatch(RANKS, 10.0)
        watch.observe(0.0, {0: 0, 1: 0})
        assert watch.verdict(100.0, RANKS) is None  # nothing completed yet
        watch.observe(100.0, {0: 1, 1: 1})  # first completed step
        assert watch.verdict(109.0, RANKS) is None
        watch.observe(109.0, {0: 2, 1: 2, 2: 2})  # rank 2 arrives
        assert watch.verdict(118.0, RANKS) is None
        stall = watch.verdict(119.5, RANKS)
        assert stall is not None


class TestAuto:
    def test_auto_gives_no_verdict_before_a_step_completes(self) -> None:
        """The automatic timeout needs one completed step to learn from."""
        watch = StallWatch(RANKS, None)
        watch.observe(0.0, dict.fromkeys(RANKS, 0))
        assert watch.effective_timeout() is None
        assert watch.verdict(10_000.0, RANKS) is None

    def test_auto_is_the_floor_or_a_multiple_of_the_longest_gap(self) -> None:
        """0.1 s steps: the floor; once a 5 s gap was seen: 100 x 5 s."""
        watch = StallWatch(RANKS, None)
        for k in range(5):
            watch.observe(0.125 * k, dict.fromkeys(RANKS, k))
        assert watch.effective_timeout() == AUTO_FLOOR
        watch.observe(0.5 + 5.0, dict.fromkeys(RANKS, 5))
        assert watch.effective_timeout() == AUTO_FACTOR * 5.0

    def test_a_save_50_times_the_step_time_is_no_stall_in_auto_mode(self) -> None:
        """Steps of 2 s (longest gap 2 s: timeout 200 s), then a save of 100 s inside a step."""
        watch = StallWatch(RANKS, None)
        for k in range(10):
            watch.observe(2.0 * k, dict.fromkeys(RANKS, k))
        for t in range(18, 119):  # the save: 100 s without a step
            assert watch.verdict(float(t), RANKS) is None
        watch.observe(119.0, dict.fromkeys(RANKS, 10))
        assert watch.effective_timeout() == AUTO_FACTOR * 101.0


class TestPhases:
    def test_a_long_evaluation_leaves_the_training_timeout_as_it_was(self) -> None:
        """Steps of 1 s (auto: 100 s), an evaluation of 80 s marked as a phase (no verdict:
        under 100 x the longest segment), then a rank stuck in a training step: named after
        100 s, where one timeout for everything (100 x 81 s) would wait over two hours."""
        watch = StallWatch(RANKS, None)
        t = 0.0
        for k in range(10):
            t = float(k)
            watch.observe(t, dict.fromkeys(RANKS, k), phases=dict.fromkeys(RANKS))
        watch.observe(t + 0.5, dict.fromkeys(RANKS, 9), phases=dict.fromkeys(RANKS, "evaluation"))
        for dt in range(1, 81):
            assert watch.verdict(t + 0.5 + dt, RANKS) is None
        t += 80.5
        watch.observe(t, dict.fromkeys(RANKS, 9), phases=dict.fromkeys(RANKS))
        assert watch.effective_timeout("evaluation") == AUTO_FACTOR * 80.0
        assert watch.effective_timeout(None) == AUTO_FACTOR * 1.0
        for k in range(10, 13):
            t += 1.0
            watch.observe(t, {0: k, 1: k, 2: min(k, 11)}, phases=dict.fromkeys(RANKS))
        stuck_since = t - 1.0  # rank 2 last moved a second ago
        assert watch.verdict(stuck_since + 99.0, RANKS) is None
        stall = watch.verdict(stuck_since + 101.0, RANKS)
        assert stall is not None
        assert stall.rank == 2
        assert stall.timeout == AUTO_FACTOR * 1.0

    def test_a_new_phase_uses_the_longest_segment_of_any(self) -> None:
        """A phase never seen before has nothing of its own to learn from."""
        watch = StallWatch(RANKS, None)
        for k in range(5):
            watch.observe(2.0 * k, dict.fromkeys(RANKS, k))
        assert watch.effective_timeout("save") == AUTO_FACTOR * 2.0

    def test_entering_and_leaving_a_phase_is_progress(self) -> None:
        """A fixed timeout of 3 s: 2.5 s without a step, then 2.5 s in a phase, then 2.5 s
        more: no segment reaches 3 s, so no verdict; 3 s more in the phase is one."""
        watch = StallWatch(RANKS, 3.0)
        watch.observe(0.0, dict.fromkeys(RANKS, 0))
        watch.observe(1.0, dict.fromkeys(RANKS, 1))
        watch.observe(3.5, dict.fromkeys(RANKS, 1), phases=dict.fromkeys(RANKS, "save"))
        assert watch.verdict(5.9, RANKS) is None
        watch.observe(6.0, dict.fromkeys(RANKS, 1), phases=dict.fromkeys(RANKS))
        assert watch.verdict(8.5, RANKS) is None
        watch.observe(8.5, dict.fromkeys(RANKS, 1), phases=dict.fromkeys(RANKS, "save"))
        stall = watch.verdict(11.6, RANKS)
        assert stall is not None
        assert watch.phase_of(stall.rank) == "save"


class TestSuspect:
    def test_the_lowest_step_is_the_suspect(self) -> None:
        """One rank behind the others is the one holding the job back."""
        assert suspect({0: 7, 1: 6, 2: 7}, {}) == (1, "the lowest step (6)")

    def test_a_rank_without_a_step_is_the_lowest(self) -> None:
        """A rank that never passed a step is behind everyone."""
        assert suspect({0: 7, 1: None, 2: 7}, {})[0] == 1

    def test_of_two_ranks_at_one_step_the_one_not_in_a_collective_is_the_suspect(self) -> None:
        """Two ranks (no majority to tell the odd one): rank 0 waits in backward (DDP's
        all-reduce), rank 1 is in its own code: rank 1 holds the job back."""
        stacks = {
            0: ("graph.py:_engine_run_backward", "__init__.py:backward", "_tensor.py:backward"),
            1: ("train.py:training_step", "strategy.py:wrapped_forward", "module.py:_call_impl"),
        }
        named, reason = suspect({0: 5, 1: 5}, stacks)
        assert named == 1
        assert "collective" in reason
        both_waiting = {0: stacks[0], 1: ("distributed_c10d.py:all_reduce", "x.py:f")}
        assert suspect({0: 5, 1: 5}, both_waiting)[0] is None

    def test_equal_steps_are_told_apart_by_the_odd_main_thread(self) -> None:
        """All at step 5: the rank whose main thread is not in the all-reduce is the suspect."""
        reduce = ["c10d.py:all_reduce", "train.py:step"]
        stacks = {0: reduce, 1: ["queue.py:get", "train.py:step"], 2: reduce}
        named, why = suspect({0: 5, 1: 5, 2: 5}, stacks)
        assert named == 1
        assert "elsewhere" in why

    def test_undecidable_cases_name_no_rank(self) -> None:
        """Two ranks in two places, or all in the same place: no rank is named."""
        assert suspect({0: 5, 1: 5}, {0: ["a"], 1: ["b"]})[0] is None
        assert suspect({0: 5, 1: 5, 2: 5}, {r: ["a"] for r in range(3)})[0] is None
        assert suspect({}, {}) == (None, "no rank answered")


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"stall_timeout": 0}, ValueError, "'stall_timeout' must be a finite number > 0"),
            ({"stall_timeout": float("nan")}, ValueError, "'stall_timeout' must be a finite"),
            ({"stall_timeout": "soon"}, ValueError, "'stall_timeout' must be a number of seconds"),
            ({"stall_timeout": 0.5}, ValueError, "must be > heartbeat_interval=1"),
            ({"stall_dir": "/tmp/x"}, ValueError, "'stall_dir' needs stall_timeout"),
            ({"stall_timeout": 5, "stall_dir": 3}, TypeError, "'stall_dir' must be a path"),
        ],
    )
    def test_bad_stall_arguments_are_named(
        self, kwargs: dict[str, object], error: type[Exception], match: str
    ) -> None:
        """Each bad stall argument is refused with its name, the rule and the value."""
        with pytest.raises(error, match=match):
            Coordinator(MemoryStore(), **kwargs)  # type: ignore[arg-type]
