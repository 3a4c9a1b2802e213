"""The sidecar evaluator's decisions, as pure functions: retry and backoff, and when to end."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwork._checkpoints._sidecar_policy import (
    AfterFailure,
    EndReason,
    EndRules,
    Idle,
    IdleAction,
    RetryPolicy,
    after_failure,
    end_after_checkpoint,
    wait_limit,
    when_idle,
)


class TestBackoff:
    def test_delays_grow_exponentially_up_to_the_cap(self) -> None:
        """backoff * factor ** (n - 1), capped at backoff_max."""
        policy = RetryPolicy(max_attempts=10, backoff=0.5, backoff_factor=3.0, backoff_max=10.0)
        assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]

    def test_a_factor_of_one_gives_constant_delays(self) -> None:
        """backoff_factor=1 retries at a fixed interval."""
        policy = RetryPolicy(backoff=2.0, backoff_factor=1.0)
        assert {policy.delay(n) for n in range(1, 50)} == {2.0}

    def test_huge_failure_counts_do_not_overflow(self) -> None:
        """However many failures, the delay is the cap (no OverflowError from **)."""
        policy = RetryPolicy(backoff=1.0, backoff_factor=10.0, backoff_max=60.0)
        assert policy.delay(100_000) == 60.0

    @given(
        backoff=st.floats(0, 100),
        factor=st.floats(1, 10),
        extra=st.floats(0, 1000),
        failures=st.integers(1, 200),
    )
    def test_delays_never_shrink_and_never_pass_the_cap(
        self, backoff: float, factor: float, extra: float, failures: int
    ) -> None:
        """Each delay is >= the one before and within [backoff, backoff_max]."""
        policy = RetryPolicy(backoff=backoff, backoff_factor=factor, backoff_max=backoff + extra)
        first, second = policy.delay(failures), policy.delay(failures + 1)
        assert backoff <= first <= second <= backoff + extra
        assert math.isfinite(second)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"max_attempts": 0}, "'max_attempts' must be an int >= 1; got 0"),
            ({"max_attempts": 1.5}, "'max_attempts' must be an int >= 1; got 1.5"),
            ({"backoff": -1}, "'backoff' must be a finite number >= 0; got -1"),
            ({"backoff": math.nan}, "'backoff' must be a finite number >= 0; got nan"),
            ({"backoff_factor": 0.5}, "'backoff_factor' must be a finite number >= 1"),
            ({"backoff_factor": math.inf}, "'backoff_factor' must be a finite number > 0"),
            ({"backoff": 5, "backoff_max": 1}, r"'backoff_max' must be >= backoff \(5\); got 1"),
        ],
    )
    def test_bad_settings_are_refused_naming_the_argument(
        self, options: dict[str, object], message: str
    ) -> None:
        """Each bad setting raises an error naming the argument, the rule and the value."""
        with pytest.raises((ValueError, TypeError), match=message):
            RetryPolicy(**options)  # type: ignore[arg-type]

    def test_delay_needs_a_failure(self) -> None:
        """delay(0) is a caller's mistake and says so."""
        with pytest.raises(ValueError, match="'failures' must be an int >= 1; got 0"):
            RetryPolicy().delay(0)


class TestAfterFailure:
    policy = RetryPolicy(max_attempts=3, backoff=1.0, backoff_factor=2.0, backoff_max=60.0)

    def decide(self, attempts: int, **facts: bool) -> tuple[AfterFailure, float]:
        facts = {"stopping": False, "retryable": True, "still_there": True, **facts}
        return after_failure(self.policy, attempts, **facts)

    def test_retries_with_growing_delays_then_gives_up(self) -> None:
        """Attempts 1 and 2 are retried after 1 s and 2 s; after attempt 3 it gives up."""
        assert self.decide(1) == (AfterFailure.RETRY, 1.0)
        assert self.decide(2) == (AfterFailure.RETRY, 2.0)
        assert self.decide(3) == (AfterFailure.GIVE_UP, 0.0)

    def test_a_stop_interrupts_rather_than_retries_or_fails(self) -> None:
        """With a stop requested the checkpoint is neither retried nor reported as failed."""
        assert self.decide(1, stopping=True) == (AfterFailure.INTERRUPTED, 0.0)
        assert self.decide(3, stopping=True, still_there=False) == (AfterFailure.INTERRUPTED, 0.0)

    def test_a_deleted_checkpoint_is_not_retried(self) -> None:
        """Gone (max_to_keep) means retrying cannot help: DELETED, even with attempts left."""
        assert self.decide(1, still_there=False) == (AfterFailure.DELETED, 0.0)
        assert self.decide(3, still_there=False) == (AfterFailure.DELETED, 0.0)

    def test_errors_not_to_retry_give_up_at_once(self) -> None:
        """An error outside retry_on fails on the first attempt."""
        assert self.decide(1, retryable=False) == (AfterFailure.GIVE_UP, 0.0)

    def test_one_attempt_never_retries(self) -> None:
        """max_attempts=1 gives up after the first failure."""
        policy = RetryPolicy(max_attempts=1)
        verdict = after_failure(policy, 1, stopping=False, retryable=True, still_there=True)
        assert verdict == (AfterFailure.GIVE_UP, 0.0)


def idle(**fields: object) -> Idle:
    values: dict[str, object] = {"now": 100.0, "waiting_since": 100.0, "last_new": 100.0}
    values.update(fields)
    return Idle(**values)  # type: ignore[arg-type]


class TestEndAfterCheckpoint:
    def test_max_evaluations_counts_finished_checkpoints(self) -> None:
        """The evaluator ends once max_evaluations checkpoints are finished, not before."""
        rules = EndRules(max_evaluations=3)
        assert end_after_checkpoint(rules, 2, 500) is None
        assert end_after_checkpoint(rules, 3, 500) is EndReason.MAX_EVALUATIONS

    def test_until_step_is_tf_keras_max_evaluations(self) -> None:
        """A checkpoint at until_step or later ends it; one without a step does not."""
        rules = EndRules(until_step=10)
        assert end_after_checkpoint(rules, 1, 9) is None
        assert end_after_checkpoint(rules, 1, None) is None
        assert end_after_checkpoint(rules, 1, 10) is EndReason.UNTIL_STEP
        assert end_after_checkpoint(rules, 1, 12) is EndReason.UNTIL_STEP

    def test_no_limits_never_end(self) -> None:
        """Without limits no checkpoint ends the evaluator."""
        assert end_after_checkpoint(EndRules(), 10**9, 10**9) is None

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"timeout": math.nan}, "'timeout' must be a number \\(not NaN; a negative one"),
            ({"stall_timeout": 0}, "'stall_timeout' must be None or a finite number > 0; got 0"),
            ({"stall_timeout": math.inf}, "'stall_timeout' must be None or a finite number"),
            ({"max_evaluations": 0}, "'max_evaluations' must be an int >= 1; got 0"),
            ({"max_evaluations": True}, "'max_evaluations' must be an int >= 1; got True"),
            ({"until_step": "5"}, "'until_step' must be an int; got '5'"),
        ],
    )
    def test_bad_limits_are_refused_naming_the_argument(
        self, options: dict[str, object], message: str
    ) -> None:
        """Each bad limit raises an error naming the argument, the rule and the value."""
        with pytest.raises((ValueError, TypeError), match=message):
            EndRules(**options)  # type: ignore[arg-type]

    def test_timeout_reads_as_tensorflows(self) -> None:
        """As checkpoints_iterator's timeout in TensorFlow: a negative one is no wait (the first
        idle moment is a timeout), an infinite one no limit at all."""
        negative = EndRules(timeout=-3)
        assert negative.timeout == 0
        assert when_idle(negative, idle(now=100.0), drain_grace=3.0) == (
            IdleAction.ASK_TIMEOUT_FN,
            EndReason.TIMEOUT,
        )
        endless = EndRules(timeout=math.inf)
        assert endless.timeout is None
        assert when_idle(endless, idle(now=10.0**12), drain_grace=3.0) == (IdleAction.WAIT, None)


class TestWhenIdle:
    def test_waits_when_no_limit_is_reached(self) -> None:
        """Without limits, an idle evaluator waits forever (tf_keras's behaviour)."""
        action = when_idle(EndRules(), idle(now=10**9), drain_grace=3.0)
        assert action == (IdleAction.WAIT, None)

    def test_a_stop_ends_it_before_anything_else(self) -> None:
        """A stop wins over done, stall and timeout."""
        rules = EndRules(timeout=1, stall_timeout=1)
        state = idle(now=200.0, done_since=150.0, stopped=True)
        assert when_idle(rules, state, drain_grace=3.0) == (IdleAction.END, EndReason.STOPPED)

    def test_done_ends_once_nothing_is_being_written(self) -> None:
        """Done with nothing pending ends at once; with a checkpoint being written it waits for
        it, at most drain_grace seconds."""
        rules = EndRules()
        assert when_idle(rules, idle(done_since=100.0), drain_grace=3.0) == (
            IdleAction.END,
            EndReason.DONE,
        )
        pending = idle(now=102.9, done_since=100.0, pending=1)
        assert when_idle(rules, pending, drain_grace=3.0) == (IdleAction.WAIT, None)
        late = idle(now=103.0, done_since=100.0, pending=1)
        assert when_idle(rules, late, drain_grace=3.0) == (IdleAction.END, EndReason.DONE)

    def test_stall_counts_from_the_last_checkpoint_handed_out(self) -> None:
        """stall_timeout seconds after the last new checkpoint the evaluator ends as stalled."""
        rules = EndRules(stall_timeout=60)
        assert when_idle(rules, idle(now=159.9), drain_grace=3.0)[0] is IdleAction.WAIT
        assert when_idle(rules, idle(now=160.0), drain_grace=3.0) == (
            IdleAction.END,
            EndReason.STALLED,
        )

    def test_done_wins_over_stall(self) -> None:
        """Training that said it is done did not stall."""
        rules = EndRules(stall_timeout=1)
        state = idle(now=500.0, done_since=499.0)
        assert when_idle(rules, state, drain_grace=3.0) == (IdleAction.END, EndReason.DONE)

    def test_timeout_asks_timeout_fn_counting_from_the_current_wait(self) -> None:
        """After timeout seconds of waiting the caller asks timeout_fn (TensorFlow's rule); the
        wait is counted from waiting_since, not from the last checkpoint."""
        rules = EndRules(timeout=5)
        assert when_idle(rules, idle(now=104.9), drain_grace=3.0)[0] is IdleAction.WAIT
        assert when_idle(rules, idle(now=105.0), drain_grace=3.0) == (
            IdleAction.ASK_TIMEOUT_FN,
            EndReason.TIMEOUT,
        )
        renewed = idle(now=105.0, waiting_since=105.0, last_new=50.0)
        assert when_idle(rules, renewed, drain_grace=3.0)[0] is IdleAction.WAIT


class TestWaitLimit:
    def test_waits_are_sliced_without_limits(self) -> None:
        """With no limit near, a wait lasts one slice."""
        assert wait_limit(EndRules(), idle(), slice_secs=0.25, drain_grace=3.0) == 0.25

    def test_a_wait_ends_exactly_when_a_limit_comes_due(self) -> None:
        """The wait is cut to the nearest of stall, timeout and drain deadlines."""
        rules = EndRules(timeout=5, stall_timeout=60)
        state = idle(now=104.9, waiting_since=100.0, last_new=50.0)
        assert wait_limit(rules, state, slice_secs=1.0, drain_grace=3.0) == pytest.approx(0.1)
        stalled = idle(now=109.95, waiting_since=109.0, last_new=50.0)
        assert wait_limit(rules, stalled, slice_secs=1.0, drain_grace=3.0) == pytest.approx(0.05)
        draining = idle(now=102.5, done_since=100.0, pending=2)
        assert wait_limit(EndRules(), draining, slice_secs=1.0, drain_grace=3.0) == 0.5

    def test_past_deadlines_give_no_wait(self) -> None:
        """A limit already due gives a wait of 0, never a negative one."""
        rules = EndRules(timeout=1)
        assert wait_limit(rules, idle(now=200.0), slice_secs=1.0, drain_grace=3.0) == 0.0

    def test_done_with_nothing_pending_takes_only_a_last_look(self) -> None:
        """Once training is done and nothing is being written, the next look does not wait."""
        state = idle(done_since=100.0, pending=0)
        assert wait_limit(EndRules(), state, slice_secs=1.0, drain_grace=3.0) == 0.0
