"""TuningCore: bounds, candidates, events and the history, driven tick by tick without threads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwork._tuning._core import TuningCore
from tickwork._tuning._history import TuningHistory
from tickwork._tuning._policy import PolicyConfig

from .spe_sim import powers_of_two, saturating, simulate

CANDIDATES = powers_of_two()


def _core(candidates: tuple[int, ...] = CANDIDATES, min_spe: int = 1) -> TuningCore:
    config = PolicyConfig(candidates=candidates)
    return TuningCore(config, interval=0.25, min_spe=min_spe, history=TuningHistory(), origin=0.0)


class TestBounded:
    def test_value_within_bounds_is_kept_even_off_the_candidates(self) -> None:
        """A value in [min, ceiling] stays as it is: it is already in effect."""
        assert _core().bounded(100, 1000) == 100

    def test_above_the_ceiling_becomes_the_largest_candidate_below_it(self) -> None:
        """64 with a ceiling of 37 becomes 32."""
        assert _core().bounded(64, 37) == 32

    def test_ceiling_below_every_candidate_wins(self) -> None:
        """With candidates 8 and 16 and a ceiling of 3, the value is 3: the bound wins."""
        assert _core((8, 16), min_spe=8).bounded(16, 3) == 3

    def test_below_min_becomes_the_smallest_candidate(self) -> None:
        """With min_spe 4, a value of 1 becomes the smallest candidate, 4."""
        assert _core(powers_of_two()[2:], min_spe=4).bounded(1, None) == 4


class TestAssignments:
    def test_steps_left_in_the_epoch_bound_every_assignment(self) -> None:
        """With max_spe the steps left in a 300-step-per-second 'epoch' of 2 s, every value
        assigned is at most the bound at that moment and at least 1."""

        def steps_left(t: float) -> int:
            return max(1, 600 - int((t % 2.0) * 300))

        run = simulate(saturating(300.0, 1.0), 40.0, ceiling=steps_left)
        assert run.assigned
        for t, spe in zip(run.times, run.spes[1:], strict=False):
            assert 1 <= spe <= steps_left(t)

    @settings(max_examples=30, deadline=None)
    @given(
        bounds=st.lists(st.integers(1, 5000), min_size=1, max_size=20),
        half=st.floats(0.1, 100.0),
        start_spe=st.sampled_from(CANDIDATES[:10]),
    )
    def test_never_outside_one_and_the_ceiling(
        self, bounds: list[int], half: float, start_spe: int
    ) -> None:
        """Whatever the ceiling does over time, every value in effect after a tick lies in
        [1, ceiling at that tick], and every value the tuner picks is a candidate or, when no
        candidate fits, the ceiling itself."""

        def ceiling(t: float) -> int:
            return bounds[int(t) % len(bounds)]

        run = simulate(saturating(1000.0, half), 30.0, ceiling=ceiling, start_spe=start_spe)
        for t, spe in zip(run.times, run.spes[1:], strict=False):
            assert 1 <= spe <= ceiling(t)
        for value in run.assigned:
            assert value in CANDIDATES or value in bounds

    def test_only_candidates_are_assigned(self) -> None:
        """A runner's candidates (1, 4, 16, 64, 256) are the only values assigned."""
        config = PolicyConfig(candidates=(1, 4, 16, 64, 256))
        run = simulate(saturating(1000.0, 3.0), 40.0, config=config)
        assert run.assigned
        assert set(run.assigned) <= {1, 4, 16, 64, 256}

    def test_clamp_then_release(self) -> None:
        """A bound that drops to 8 for two seconds clamps the value to 8 and releases it back to
        the tuned value afterwards, both recorded as 'clamp' events."""

        def ceiling(t: float) -> int | None:
            return 8 if 30.0 <= t < 32.0 else None

        run = simulate(saturating(1000.0, 1.0), 40.0, ceiling=ceiling)
        tuned = run.spes[int(29.0 / 0.25)]
        assert tuned > 8
        assert run.spes[int(31.0 / 0.25)] == 8
        assert run.final_spe() == tuned
        clamps = [r for r in run.history.records() if r.decision == "clamp"]
        assert [r.next_spe for r in clamps] == [8, tuned]


class TestEvents:
    def test_begin_out_of_bounds_assigns_a_candidate(self) -> None:
        """Starting with 100 in effect under a ceiling of 50, the core asks to assign 32."""
        core = _core()
        assert core.begin(0.0, 0, 100, 50) == 32
        assert core.assigned == 32
        assert core.state is not None
        assert core.state.spe == 32

    def test_begin_in_bounds_assigns_nothing(self) -> None:
        """Starting with 4 in effect and no bound, nothing needs assigning."""
        core = _core()
        assert core.begin(0.0, 0, 4, None) is None
        assert core.assigned == 4

    def test_begin_unreadable_target_starts_from_the_smallest_candidate(self) -> None:
        """A target whose value cannot be read starts from the smallest candidate, assigned."""
        core = _core((2, 4, 8), min_spe=2)
        assert core.begin(0.0, 0, None, None) == 2

    def test_resume_keeps_the_settled_state(self) -> None:
        """Stopped while settled and started again with the same value in effect, the core
        resumes settled rather than searching again."""
        core = _core()
        core.begin(0.0, 0, 1, None)
        count, t = 0, 0.0
        spe = 1
        curve = saturating(1000.0, 1.0)
        # Settling takes about a hundred ticks on this curve; the cap turns a tuner that never
        # settles into a failure instead of a hang.
        for _ in range(10_000):
            if core.state is not None and core.state.settled:
                break
            t += 0.25
            count += int(curve(spe, t) * 0.25)
            new = core.tick(t, count, None, spe)
            spe = new if new is not None else spe
        else:
            pytest.fail(f"the core did not settle in 10000 ticks: {core.state}")
        settled = core.state
        core.begin(t + 10.0, count + 5, spe, None)
        assert core.state is not None
        assert core.state.settled
        assert core.state.measured == settled.measured
        assert core.state.pending is None

    def test_new_search_when_the_value_changed_while_stopped(self) -> None:
        """Started again with another value in effect, the core searches anew from it."""
        history = TuningHistory()
        core = TuningCore(
            PolicyConfig(candidates=CANDIDATES),
            interval=0.25,
            min_spe=1,
            history=history,
            origin=0.0,
        )
        core.begin(0.0, 0, 1, None)
        core.begin(5.0, 100, 16, None)
        assert core.state is not None
        assert core.state.spe == 16
        assert not core.state.settled
        last = history.records()[-1]
        assert (last.decision, last.next_spe) == ("start", 16)
        assert last.reason.startswith("new search")

    def test_external_assignment_starts_a_new_search_from_it(self) -> None:
        """A value someone else assigned is detected on the next tick, recorded as 'external',
        and the search restarts from it without the tuner assigning anything."""
        history = TuningHistory()
        core = TuningCore(
            PolicyConfig(candidates=CANDIDATES),
            interval=0.25,
            min_spe=1,
            history=history,
            origin=0.0,
        )
        core.begin(0.0, 0, 4, None)
        assert core.tick(0.25, 100, None, 4) is None
        assert core.tick(0.5, 200, None, 16) is None
        assert core.assigned == 16
        assert core.state is not None
        assert core.state.spe == 16
        assert history.records()[-1].decision == "external"

    def test_user_set_value_starts_a_new_search(self) -> None:
        """set_value() records a 'set' event and the policy searches from that value."""
        history = TuningHistory()
        core = TuningCore(
            PolicyConfig(candidates=CANDIDATES),
            interval=0.25,
            min_spe=1,
            history=history,
            origin=0.0,
        )
        core.begin(0.0, 0, 1, None)
        core.set_value(1.0, 500, 8)
        assert core.assigned == 8
        assert core.state is not None
        assert (core.state.spe, core.state.settled) == (8, False)
        last = history.records()[-1]
        assert (last.decision, last.spe, last.next_spe) == ("set", 1, 8)
