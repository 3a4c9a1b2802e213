"""StepsPerExecutionTuner: the thread, driven by a FakeClock and a fake step counter."""

from __future__ import annotations

import inspect
import math
import re
import threading
from typing import Any

import pytest

from tickwork import StepsPerExecution, StepsPerExecutionTuner
from tickwork._tuning._policy import PolicyConfig
from tickwork._tuning._tuner import DEFAULT_CANDIDATES
from tickwork.testing import FakeClock

from .spe_sim import Curve, saturating, simulate


class FakeLoop:
    """A training loop stand-in: its step counter moves with the fake clock at curve(spe)."""

    def __init__(self, curve: Curve, spe: StepsPerExecution) -> None:
        self.curve = curve
        self.spe = spe
        self.count = 0.0
        self.values: list[int] = []

    def __call__(self) -> int:
        return int(self.count)

    def run(self, clock: FakeClock, ticks: int, interval: float = 0.25) -> None:
        """Advance ``ticks`` intervals; after each, wait until the tuner waits again."""
        for _ in range(ticks):
            self.count += self.curve(int(self.spe), clock.now()) * interval
            clock.advance(interval)
            clock.wait_for_sleepers(1)
            self.values.append(int(self.spe))


def _started(
    fake_clock: FakeClock, curve: Curve | None = None, **options: Any
) -> tuple[StepsPerExecutionTuner, FakeLoop, StepsPerExecution]:
    spe = StepsPerExecution(1)
    loop = FakeLoop(curve or saturating(1000.0, 1.0), spe)
    tuner = StepsPerExecutionTuner(loop, spe, clock=fake_clock, **options)
    tuner.start()
    fake_clock.wait_for_sleepers(1)
    return tuner, loop, spe


class TestArguments:
    def test_signature_matches_tf_keras_with_new_defaults(self) -> None:
        """The five positional parameters of tf_keras come first, in order; the measurement
        defaults are 0.25 s and 4 windows (tf_keras: 5 s and 10), the threshold stays 0.1."""
        params = list(inspect.signature(StepsPerExecutionTuner).parameters.values())
        assert [p.name for p in params[:5]] == [
            "optimizer",
            "spe_variable",
            "interval",
            "change_spe_interval",
            "change_threshold",
        ]
        assert [p.default for p in params[2:5]] == [0.25, 4, 0.1]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[5:])

    def test_seed_attributes(self) -> None:
        """The attributes tf_keras exposes are there with the values given."""
        spe = StepsPerExecution(2)
        counter = lambda: 0  # noqa: E731
        tuner = StepsPerExecutionTuner(counter, spe, 1.5, 3, 0.2)
        assert tuner.optimizer is counter
        assert (tuner.interval, tuner.change_spe_interval, tuner.spe_change_threshold) == (
            1.5,
            3,
            0.2,
        )
        assert tuner.steps_per_execution is spe
        assert tuner.current_spe == 2
        assert tuner.thread is None

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"interval": math.nan}, ValueError, "'interval' must be a finite number > 0; got nan"),
            ({"interval": 0}, ValueError, "'interval' must be a finite number > 0; got 0"),
            ({"interval": "5"}, TypeError, "'interval' must be a finite number > 0; got '5'"),
            (
                {"change_spe_interval": 0},
                ValueError,
                "'change_spe_interval' must be an int >= 1; got 0",
            ),
            (
                {"change_spe_interval": 2.5},
                TypeError,
                "'change_spe_interval' must be an int >= 1; got 2.5",
            ),
            (
                {"change_threshold": -0.1},
                ValueError,
                "'change_threshold' must be a finite number >= 0; got -0.1",
            ),
            (
                {"change_threshold": math.inf},
                ValueError,
                "'change_threshold' must be a finite number >= 0; got inf",
            ),
            ({"tolerance": 1.0}, ValueError, "'tolerance' must be a finite number in [0, 1)"),
            ({"min_spe": 0}, ValueError, "'min_spe' must be an int >= 1; got 0"),
            ({"min_spe": 4, "max_spe": 2}, ValueError, "'max_spe' must be an int >= 4; got 2"),
            ({"candidates": [4, 2]}, ValueError, "'candidates' must be strictly increasing"),
            ({"candidates": [0, 1]}, ValueError, "'candidates[]' must be an int >= 1; got 0"),
            ({"candidates": "124"}, TypeError, "'candidates' must be an increasing sequence"),
            (
                {"candidates": [1, 2], "min_spe": 4},
                ValueError,
                "'candidates' must hold a value within [min_spe, max_spe] = [4, inf]",
            ),
            ({"clock": object()}, TypeError, "'clock' must be a tickwork.Clock"),
        ],
    )
    def test_invalid_arguments_name_argument_rule_and_value(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Each bad argument is refused with its name, the rule and the value received."""
        with pytest.raises(error, match=re.escape(message)):
            StepsPerExecutionTuner(lambda: 0, StepsPerExecution(), **kwargs)

    def test_counter_and_target_are_checked(self) -> None:
        """A counter that is neither .iterations nor callable, and a target without .assign(),
        are refused with what is expected."""
        with pytest.raises(TypeError, match=r"'optimizer' must have an \.iterations"):
            StepsPerExecutionTuner(42, StepsPerExecution())
        with pytest.raises(TypeError, match=r"'spe_variable' must have \.assign\(n\)"):
            StepsPerExecutionTuner(lambda: 0, 5)

    def test_default_candidates_are_powers_of_two(self) -> None:
        """Without candidates the tuner assigns powers of two, up to max_spe when given."""
        assert DEFAULT_CANDIDATES[:5] == (1, 2, 4, 8, 16)
        tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(), max_spe=100)
        assert tuner.candidates == (1, 2, 4, 8, 16, 32, 64)


class TestThread:
    def test_start_returns_the_running_thread(self, fake_clock: FakeClock) -> None:
        """start() returns the thread; a second start() returns the same one."""
        tuner, _, _ = _started(fake_clock)
        try:
            thread = tuner.thread
            assert isinstance(thread, threading.Thread)
            assert thread.is_alive()
            assert thread.daemon
            assert tuner.start() is thread
        finally:
            tuner.stop()
        assert not tuner.is_alive()

    def test_thread_makes_the_decisions_of_the_pure_simulation(self, fake_clock: FakeClock) -> None:
        """Driven by the fake clock, the thread assigns exactly what the core does in a
        simulation of the same curve: the thread adds nothing but reading and assigning."""
        curve = saturating(1000.0, 1.0)
        tuner, loop, _ = _started(fake_clock, curve)
        try:
            loop.run(fake_clock, 120)
        finally:
            tuner.stop()
        expected = simulate(curve, 30.0, config=PolicyConfig(candidates=DEFAULT_CANDIDATES))
        assert loop.values == [*expected.spes[1:], expected.spes[-1]]
        assert tuner.current_spe == expected.final_spe()
        assert tuner.errors == ()
        assert tuner.statistics().calls == 121

    def test_stop_then_start_tunes_again(self, fake_clock: FakeClock) -> None:
        """After stop() a start() runs a new thread that measures and decides again (tf_keras
        never clears its stop event, so its tuner stays stopped)."""
        tuner, loop, spe = _started(fake_clock)
        loop.run(fake_clock, 20)
        tuner.stop()
        first = tuner.thread
        before = len(tuner.history)
        spe.assign(64)  # someone changed it while stopped: a new search from 64
        tuner.start()
        fake_clock.wait_for_sleepers(1)
        try:
            loop.run(fake_clock, 40)
        finally:
            tuner.stop()
        assert tuner.thread is not first
        later = tuner.history.records()[before:]
        assert later[0].decision == "start"
        assert later[0].next_spe == 64
        assert any(r.decision == "probe" for r in later)

    def test_stop_waits_for_a_measurement_in_progress(self, fake_clock: FakeClock) -> None:
        """stop() does not wait on a counter read in progress, says (with a timeout) whether the
        thread has ended, and the measurement that was reading assigns and records nothing."""
        release = threading.Event()
        entered = threading.Event()
        calls = 0

        def counter() -> int:
            nonlocal calls
            calls += 1
            if calls == 3:
                entered.set()
                release.wait(10)
            return calls * 100

        spe = StepsPerExecution(1)
        tuner = StepsPerExecutionTuner(counter, spe, clock=fake_clock)
        tuner.start()
        fake_clock.wait_for_sleepers(1)
        fake_clock.advance(0.25)
        assert entered.wait(10)
        records = len(tuner.history)
        assert tuner.stop(timeout=0.05) is False
        release.set()
        assert tuner.stop(timeout=10) is True
        assert not tuner.is_alive()
        assert len(tuner.history) == records  # the tick that was reading did nothing after stop
        assert int(spe) == 1

    def test_errors_are_kept_and_the_thread_goes_on(self, fake_clock: FakeClock) -> None:
        """A counter that fails once is logged and kept; raise_errors() re-raises it in the
        caller's thread, and tuning goes on."""
        failure = RuntimeError("counter unavailable")
        spe = StepsPerExecution(1)
        loop = FakeLoop(saturating(1000.0, 1.0), spe)
        reads = 0

        def counter() -> int:
            nonlocal reads
            reads += 1
            if reads == 4:
                raise failure
            return loop()

        tuner = StepsPerExecutionTuner(counter, spe, clock=fake_clock)
        tuner.start()
        fake_clock.wait_for_sleepers(1)
        try:
            loop.run(fake_clock, 20)
        finally:
            tuner.stop()
        assert tuner.errors == (failure,)
        with pytest.raises(RuntimeError, match="counter unavailable"):
            tuner.raise_errors()
        assert tuner.statistics().errors == 1
        assert int(spe) > 1

    def test_context_manager_starts_and_stops(self, fake_clock: FakeClock) -> None:
        """`with tuner:` runs the thread inside the block only."""
        tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(), clock=fake_clock)
        with tuner:
            assert tuner.is_alive()
        assert not tuner.is_alive()


class TestValue:
    def test_setting_the_attribute_assigns_and_searches_from_it(
        self, fake_clock: FakeClock
    ) -> None:
        """`tuner.steps_per_execution = 8` assigns 8, records it, and the search goes on from 8."""
        tuner, loop, spe = _started(fake_clock)
        try:
            tuner.steps_per_execution = 8
            assert int(spe) == 8
            assert tuner.current_spe == 8
            loop.run(fake_clock, 12)
        finally:
            tuner.stop()
        records = tuner.history.records()
        sets = [r for r in records if r.decision == "set"]
        assert [(r.spe, r.next_spe) for r in sets] == [(1, 8)]
        probes_after = [r for r in records if r.decision == "probe" and r.spe == 8]
        assert probes_after

    def test_setting_outside_the_bounds_is_refused(self) -> None:
        """A value above max_spe is refused with the bounds and the value."""
        tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(), max_spe=16)
        with pytest.raises(ValueError, match=re.escape("[min_spe, max_spe] = [1, 16]; got 32")):
            tuner.steps_per_execution = 32

    def test_callable_max_bounds_what_is_assigned(self, fake_clock: FakeClock) -> None:
        """max_spe as a callable (steps left) is read at each measurement and never exceeded."""
        limit = {"value": 8}
        tuner, loop, _ = _started(
            fake_clock, saturating(1000.0, 4.0), max_spe=lambda: limit["value"]
        )
        try:
            loop.run(fake_clock, 40)
            assert max(loop.values) <= 8
            limit["value"] = 2
            loop.run(fake_clock, 4)
            assert loop.values[-1] <= 2
        finally:
            tuner.stop()

    def test_bad_max_spe_result_is_an_error(self, fake_clock: FakeClock) -> None:
        """max_spe() returning something that is not a number fails start() at once; if it goes
        bad later, the thread keeps the error and goes on."""
        result: dict[str, object] = {"value": "eight"}
        spe = StepsPerExecution(1)
        loop = FakeLoop(saturating(1000.0, 1.0), spe)
        tuner = StepsPerExecutionTuner(loop, spe, clock=fake_clock, max_spe=lambda: result["value"])
        with pytest.raises(
            TypeError, match=re.escape("'max_spe()' must return an int; got 'eight'")
        ):
            tuner.start()
        result["value"] = 16
        tuner.start()
        fake_clock.wait_for_sleepers(1)
        try:
            loop.run(fake_clock, 2)
            result["value"] = None
            loop.run(fake_clock, 2)
        finally:
            tuner.stop()
        assert [type(e) for e in tuner.errors] == [TypeError, TypeError]
        assert "'max_spe()' must return an int; got None" in str(tuner.errors[0])

    def test_unreadable_target_gets_the_smallest_candidate(self, fake_clock: FakeClock) -> None:
        """A target with only .assign() is given the smallest candidate at start."""

        class WriteOnly:
            def __init__(self) -> None:
                self.assigned: list[int] = []

            def assign(self, value: int) -> None:
                self.assigned.append(value)

        target = WriteOnly()
        tuner = StepsPerExecutionTuner(lambda: 0, target, candidates=(2, 4, 8), clock=fake_clock)
        tuner.start()
        tuner.stop()
        assert target.assigned == [2]

    def test_mark_boundary_discards_the_open_window(self, fake_clock: FakeClock) -> None:
        """A window open when mark_boundary() is called is recorded as a discarded 'boundary'."""
        tuner, loop, _ = _started(fake_clock)
        try:
            loop.run(fake_clock, 3)
            tuner.mark_boundary()
            loop.run(fake_clock, 3)
        finally:
            tuner.stop()
        reasons = [r.reason for r in tuner.history.records() if r.decision == "discard"]
        assert "window discarded (boundary)" in reasons

    def test_iterations_attribute_with_numpy(self, fake_clock: FakeClock) -> None:
        """An optimizer-like object whose .iterations has .numpy() is a step counter."""

        class Iterations:
            def __init__(self) -> None:
                self.value = 0

            def numpy(self) -> int:
                return self.value

        class Optimizer:
            def __init__(self) -> None:
                self.iterations = Iterations()

        optimizer = Optimizer()
        spe = StepsPerExecution(1)
        tuner = StepsPerExecutionTuner(optimizer, spe, clock=fake_clock)
        tuner.start()
        fake_clock.wait_for_sleepers(1)
        try:
            for _ in range(12):
                optimizer.iterations.value += 100 * int(spe)
                fake_clock.advance(0.25)
                fake_clock.wait_for_sleepers(1)
        finally:
            tuner.stop()
        assert any(r.decision == "probe" for r in tuner.history.records())


class TestCallBudgetArgument:
    @pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
    def test_max_call_seconds_must_be_positive_or_none(self, bad: float) -> None:
        """max_call_seconds is None or a finite number > 0; errors name it."""
        with pytest.raises(ValueError, match="'max_call_seconds' must be a finite number > 0"):
            StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1), max_call_seconds=bad)

    def test_none_lifts_the_budget(self) -> None:
        """max_call_seconds=None is accepted and reaches the policy."""
        tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1), max_call_seconds=None)
        assert tuner._config.max_call_seconds is None  # noqa: SLF001 - what the policy got
        default = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1))
        assert default._config.max_call_seconds == 0.5  # noqa: SLF001 - what the policy got


class TestHostileCounters:
    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_a_counter_returning_nan_or_inf_is_named(self, bad: float) -> None:
        """start() with a counter that returns NaN/inf: a ValueError naming the counter, not
        int()'s 'cannot convert float NaN to integer'."""
        tuner = StepsPerExecutionTuner(lambda: bad, StepsPerExecution(1))
        with pytest.raises(ValueError, match=r"'optimizer\(\)' must be a finite number; got"):
            tuner.start()
        assert not tuner.is_alive()

    def test_an_iterations_attribute_returning_nan_is_named(self) -> None:
        """The same for an optimizer whose .iterations holds NaN."""

        class Optimizer:
            iterations = math.nan

        tuner = StepsPerExecutionTuner(Optimizer(), StepsPerExecution(1))
        with pytest.raises(ValueError, match=r"'optimizer\.iterations' must be a finite number"):
            tuner.start()

    def test_nan_later_is_kept_as_an_error_of_the_thread(self, fake_clock: FakeClock) -> None:
        """A counter that turns NaN while tuning: the measuring thread keeps the named error
        (errors, raise_errors) and goes on."""
        values = iter([0.0, 0.0, math.nan])

        def counter() -> float:
            return next(values, 10.0)

        tuner = StepsPerExecutionTuner(counter, StepsPerExecution(1), clock=fake_clock)
        tuner.start()
        try:
            fake_clock.wait_for_sleepers(1)
            fake_clock.advance(tuner.interval)
            fake_clock.wait_for_sleepers(1)
        finally:
            tuner.stop()
        assert len(tuner.errors) == 1
        assert "'optimizer()' must be a finite number; got nan" in str(tuner.errors[0])

    @pytest.mark.parametrize("bad", [math.nan, math.inf])
    def test_max_spe_returning_nan_and_a_nan_value_are_named(self, bad: float) -> None:
        """max_spe() and steps_per_execution = x get the same rule, naming themselves."""
        tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1), max_spe=lambda: bad)
        with pytest.raises(ValueError, match=r"'max_spe\(\)' must be a finite number"):
            tuner.start()
        plain = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1))
        with pytest.raises(ValueError, match="'steps_per_execution' must be a finite number"):
            plain.steps_per_execution = bad


class TestTensorFlowArguments:
    def test_an_integral_float_change_spe_interval_is_that_int(self) -> None:
        """change_spe_interval=10.0 works in tf_keras (count % 10.0); here it is 10. 2.5 is not."""
        tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1), change_spe_interval=10.0)
        assert tuner.change_spe_interval == 10
        assert isinstance(tuner.change_spe_interval, int)
        with pytest.raises(TypeError, match="'change_spe_interval' must be an int >= 1; got 2.5"):
            StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1), change_spe_interval=2.5)

    def test_the_tf_keras_positional_call_works(self) -> None:
        """StepsPerExecutionTuner(optimizer, spe_variable, 5, 10, 0.1), as tf_keras is called."""

        class Optimizer:
            iterations = 0

        tuner = StepsPerExecutionTuner(Optimizer(), StepsPerExecution(1), 5, 10, 0.1)
        assert (tuner.interval, tuner.change_spe_interval, tuner.spe_change_threshold) == (
            5.0,
            10,
            0.1,
        )
