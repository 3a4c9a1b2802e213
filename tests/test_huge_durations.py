"""Durations beyond threading.TIMEOUT_MAX (1e300) mean "forever": no wait anywhere overflows.

``Event.wait``, ``Lock.acquire`` and ``Thread.join`` raise OverflowError for a timeout above
``threading.TIMEOUT_MAX``; every tickwork wait goes through the clock (or
``check_optional_nonnegative``), which turns such a timeout into a wait without a limit. Each
test here failed with an OverflowError (or a thread that died of one) before that.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from pathlib import Path

import pytest

from tickwork import (
    Coordinator,
    LooperThread,
    SidecarEvaluator,
    StepsPerExecution,
    StepsPerExecutionTuner,
    TimedThread,
    checkpoints_iterator,
    every,
    wait_for_new_checkpoint,
)
from tickwork._clock import MONOTONIC, any_stop, os_timeout
from tickwork._sync import SignalSafeEvent
from tickwork._validate import check_optional_nonnegative

HUGE = 1e300
REAL_WAIT = 30.0  # real seconds; reached only when a test fails


@pytest.fixture
def excepthook_calls(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """What reaches threading.excepthook (a tickwork thread must never let anything through)."""
    seen: list[BaseException] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            seen.append(args.exc_value)

    monkeypatch.setattr(threading, "excepthook", hook)
    return seen


def set_soon(
    event: threading.Event | SignalSafeEvent, started: threading.Event
) -> threading.Thread:
    """A thread that sets ``event`` once ``started`` is set (the waiter is about to wait)."""

    def run() -> None:
        started.wait(REAL_WAIT)
        event.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class TestTheMechanism:
    @pytest.mark.parametrize("value", [HUGE, float("inf"), threading.TIMEOUT_MAX * 2])
    def test_a_timeout_beyond_timeout_max_is_no_limit(self, value: float) -> None:
        """os_timeout: None for a wait longer than TIMEOUT_MAX; negatives and NaN wait 0 s."""
        assert os_timeout(value) is None
        assert os_timeout(None) is None
        assert os_timeout(-1.0) == 0.0
        assert os_timeout(float("nan")) == 0.0
        assert os_timeout(threading.TIMEOUT_MAX) == threading.TIMEOUT_MAX

    def test_an_optional_timeout_beyond_timeout_max_is_kept(self) -> None:
        """The validator keeps 1e300 as it is (None means 'default' for some arguments); the
        waits make it a wait without a limit. inf stays refused where the rule is finite."""
        assert check_optional_nonnegative("timeout", HUGE) == HUGE
        with pytest.raises(ValueError, match="'timeout' must be None or a finite number >= 0"):
            check_optional_nonnegative("timeout", float("inf"))

    @pytest.mark.parametrize("value", [HUGE, float("inf")])
    def test_the_clock_waits_on_a_foreign_event(self, value: float) -> None:
        """MONOTONIC.wait(event, 1e300) ends when the event is set, without OverflowError."""
        stop, started = threading.Event(), threading.Event()
        setter = set_soon(stop, started)
        started.set()
        assert MONOTONIC.wait(stop, value) is True
        setter.join(REAL_WAIT)

    def test_the_clock_waits_on_its_own_event_and_on_a_combination(self) -> None:
        """SignalSafeEvent.wait and any_stop(...).wait take 1e300 too."""
        own, started = SignalSafeEvent(), threading.Event()
        setter = set_soon(own, started)
        started.set()
        assert own.wait(HUGE) is True
        setter.join(REAL_WAIT)
        combined = any_stop(SignalSafeEvent(), SignalSafeEvent())
        assert combined is not None
        own2, started2 = SignalSafeEvent(), threading.Event()
        combined = any_stop(own2, SignalSafeEvent())
        assert combined is not None
        setter = set_soon(own2, started2)
        started2.set()
        assert combined.wait(HUGE) is True
        setter.join(REAL_WAIT)
        assert MONOTONIC.wait_until(combined, MONOTONIC.now() + HUGE) is True


class TestTimedThreads:
    def test_timed_thread_with_a_huge_interval_calls_once_then_waits_for_stop(
        self, excepthook_calls: list[BaseException]
    ) -> None:
        """interval=1e300: the first call, then a wait that only stop() ends; no error."""
        called = threading.Event()

        class Once(TimedThread):
            def on_interval(self) -> None:
                called.set()

        t = Once(HUGE)
        t.start()
        assert called.wait(REAL_WAIT)
        assert not t.join(0.2)  # still waiting for its next slot, not dead of an OverflowError
        assert t.stop(wait=True, timeout=HUGE)
        assert t.join(HUGE)
        assert t.errors == ()
        assert excepthook_calls == []

    def test_every_with_a_huge_interval(self, excepthook_calls: list[BaseException]) -> None:
        """every(1e300, fn) behaves the same."""
        called = threading.Event()
        with every(HUGE, called.set) as t:
            assert called.wait(REAL_WAIT)
            assert not t.join(0.2)
        assert not t.is_alive()
        assert t.errors == ()
        assert excepthook_calls == []

    def test_the_tuner_with_a_huge_interval(self, excepthook_calls: list[BaseException]) -> None:
        """The tuner measures once, waits; stop(timeout=1e300) ends it; nothing is lost."""
        tuner = StepsPerExecutionTuner(lambda: 0, StepsPerExecution(1), interval=HUGE)
        thread = tuner.start()
        thread.join(0.2)
        assert thread.is_alive()
        assert tuner.stop(timeout=HUGE)
        assert tuner.errors == ()
        assert excepthook_calls == []


class TestCoordinator:
    def test_wait_for_stop_with_a_huge_timeout(self) -> None:
        """wait_for_stop(1e300) returns True when a stop is requested."""
        coord, started = Coordinator(), threading.Event()

        def stopper() -> None:
            started.wait(REAL_WAIT)
            coord.request_stop()

        thread = threading.Thread(target=stopper)
        thread.start()
        started.set()
        assert coord.wait_for_stop(HUGE) is True
        thread.join(REAL_WAIT)

    def test_join_with_a_huge_grace_period_and_a_looper_with_a_huge_interval(self) -> None:
        """LooperThread(coord, 1e300) runs once and waits; join(stop_grace_period_secs=1e300)
        returns once it has stopped, with no exception reported."""
        coord, ran = Coordinator(), threading.Event()
        looper = LooperThread.loop(coord, HUGE, target=ran.set)
        assert ran.wait(REAL_WAIT)
        looper.join(0.2)
        assert looper.is_alive()
        coord.request_stop()
        coord.join(stop_grace_period_secs=HUGE)
        assert coord.reported_exceptions == ()


def write_checkpoint(directory: Path, step: int) -> None:
    """A complete torch.save-style zip, renamed into place."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data/0", b"x" * 256)
    temporary = directory / f".model_step_{step}.pt.tmp"
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, directory / f"model_step_{step}.pt")


class TestCheckpoints:
    def test_wait_for_new_checkpoint_with_a_huge_sleep(self, tmp_path: Path) -> None:
        """seconds_to_sleep=1e300 with a short timeout: None when the timeout passes."""
        found = wait_for_new_checkpoint(
            tmp_path, seconds_to_sleep=HUGE, timeout=0.05, watch="poll", settle_secs=0
        )
        assert found is None

    def test_wait_for_new_checkpoint_with_a_huge_sleep_and_no_timeout(self, tmp_path: Path) -> None:
        """seconds_to_sleep=1e300 and no timeout: a wait (no OverflowError) that stop= ends."""
        stop, started = threading.Event(), threading.Event()
        setter = set_soon(stop, started)
        started.set()
        found = wait_for_new_checkpoint(
            tmp_path, seconds_to_sleep=HUGE, stop=stop, watch="poll", settle_secs=0
        )
        assert found is None
        setter.join(REAL_WAIT)

    def test_checkpoints_iterator_with_huge_min_interval_and_timeout(self, tmp_path: Path) -> None:
        """min_interval_secs=1e300 / timeout=1e300: the first checkpoint, then a wait that the
        stop ends (no OverflowError)."""
        write_checkpoint(tmp_path, 1)
        stop = threading.Event()
        iterator = checkpoints_iterator(
            tmp_path,
            min_interval_secs=HUGE,
            timeout=HUGE,
            stop=stop,
            watch="poll",
            settle_secs=0,
        )
        first = next(iterator)
        assert first.step == 1
        started = threading.Event()
        setter = set_soon(stop, started)
        started.set()
        assert list(iterator) == []
        setter.join(REAL_WAIT)

    def test_sidecar_backoff_and_finish_timeout(
        self, tmp_path: Path, excepthook_calls: list[BaseException]
    ) -> None:
        """backoff=1e300: after a failed attempt the evaluator waits (alive), stop() ends it;
        finish(timeout=1e300) and join(1e300) do not overflow."""
        write_checkpoint(tmp_path, 1)
        attempted = threading.Event()

        def evaluate(checkpoint: object) -> None:
            attempted.set()
            raise RuntimeError("no GPU yet")

        evaluator = SidecarEvaluator(
            tmp_path,
            evaluate,
            backoff=HUGE,
            backoff_max=HUGE,
            max_attempts=3,
            watch="poll",
            settle_secs=0,
        )
        evaluator.start()
        assert attempted.wait(REAL_WAIT)
        assert not evaluator.join(0.2)  # waiting out its backoff, not dead of an OverflowError
        assert evaluator.stop(wait=True, timeout=HUGE)
        assert evaluator.join(HUGE)
        assert not any(isinstance(e, OverflowError) for e in evaluator.errors)
        assert excepthook_calls == []

    def test_sidecar_finish_with_a_huge_timeout(self, tmp_path: Path) -> None:
        """finish(timeout=1e300) evaluates what is there and returns True."""
        write_checkpoint(tmp_path, 1)
        seen: list[int | None] = []
        evaluator = SidecarEvaluator(
            tmp_path, lambda c: seen.append(c.step), watch="poll", settle_secs=0
        )
        evaluator.start()
        assert evaluator.finish(timeout=HUGE)
        assert seen == [1]
