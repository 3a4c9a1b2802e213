"""ThreadLifecycle: the one start/stop/join/is_alive of TimedThread, the tuner and the evaluator."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tickwork._lifecycle import ThreadLifecycle
from tickwork._sync import SignalSafeEvent

REAL_WAIT = 30.0  # real seconds; generous, since a loaded machine may be slow to schedule


class Owner:
    def __repr__(self) -> str:
        return "<Owner>"


def until_stopped(seen: list[SignalSafeEvent]) -> Callable[[SignalSafeEvent], None]:
    """A thread body that records its stop signal and waits for it (bounded)."""

    def body(stop: SignalSafeEvent) -> None:
        seen.append(stop)
        stop.wait(REAL_WAIT)

    return body


class TestStart:
    def test_start_runs_the_target_in_a_named_thread_with_the_stop_signal(self) -> None:
        """The target gets the run's stop signal, in a thread of the given name and daemon flag."""
        seen: list[SignalSafeEvent] = []
        life = ThreadLifecycle(Owner())
        thread = life.start(until_stopped(seen), name="worker(x)", daemon=True)
        assert thread is not None
        assert (thread.name, thread.daemon) == ("tickwork:worker(x)", True)
        assert life.thread is thread
        assert life.is_alive()
        assert life.stop(wait=True, timeout=REAL_WAIT)
        assert seen == [life.stop_event]
        assert not life.is_alive()

    def test_start_while_running_starts_nothing(self) -> None:
        """A second start() while the thread runs and no stop was asked returns None."""
        seen: list[SignalSafeEvent] = []
        life = ThreadLifecycle(Owner())
        first = life.start(until_stopped(seen), name="w", daemon=True)
        assert life.start(until_stopped(seen), name="w", daemon=True) is None
        assert life.thread is first
        assert life.stop(wait=True, timeout=REAL_WAIT)
        assert len(seen) == 1

    def test_restart_waits_for_the_old_thread_then_prepares_a_fresh_run(self) -> None:
        """start() after stop() joins the finishing thread, calls prepare(), and gives the new
        run a fresh (unset) stop signal."""
        release = threading.Event()
        order: list[str] = []

        def slow(stop: SignalSafeEvent) -> None:
            stop.wait(REAL_WAIT)
            release.wait(REAL_WAIT)
            order.append("old ended")

        life = ThreadLifecycle(Owner())
        old = life.start(slow, name="w", daemon=True)
        life.stop()
        assert life.stop_requested()
        threading.Timer(0.05, release.set).start()
        seen: list[SignalSafeEvent] = []
        new = life.start(
            until_stopped(seen), name="w", daemon=True, prepare=lambda: order.append("prepared")
        )
        assert new is not None
        assert new is not old
        assert order == ["old ended", "prepared"]
        assert not life.stop_requested()
        assert life.stop(wait=True, timeout=REAL_WAIT)
        assert seen == [life.stop_event]

    def test_a_stop_before_the_first_start_does_not_stop_a_restartable_run(self) -> None:
        """A restartable owner's run always begins unstopped."""
        life = ThreadLifecycle(Owner())
        assert life.stop() is True  # never started: ended
        seen: list[SignalSafeEvent] = []
        life.start(until_stopped(seen), name="w", daemon=True)
        assert not life.stop_requested()
        assert life.stop(wait=True, timeout=REAL_WAIT)

    def test_start_from_its_own_thread_after_stop_raises(self) -> None:
        """A thread cannot wait for itself: start() from it after stop() is a RuntimeError."""
        errors: list[BaseException] = []
        life = ThreadLifecycle(Owner())

        def body(stop: SignalSafeEvent) -> None:
            life.stop()
            try:
                life.start(body, name="w", daemon=True)
            except RuntimeError as exc:
                errors.append(exc)

        life.start(body, name="w", daemon=True)
        assert life.join(REAL_WAIT)
        assert len(errors) == 1
        assert "<Owner>: start() called from its own thread after stop()" in str(errors[0])


class TestRunOnce:
    def test_a_second_start_raises_with_the_refusal(self) -> None:
        """once=True: the second start (or claim) raises, naming the owner and the rule."""
        life = ThreadLifecycle(Owner(), once=True, refusal="make another")
        life.start(lambda stop: None, name="w", daemon=True)
        assert life.join(REAL_WAIT)
        with pytest.raises(RuntimeError, match="<Owner> has already been started; make another"):
            life.start(lambda stop: None, name="w", daemon=True)
        with pytest.raises(RuntimeError, match="already been started"):
            life.claim()

    def test_a_second_start_while_running_raises_too(self) -> None:
        """A run-once owner refuses a second start even while its thread still runs."""
        seen: list[SignalSafeEvent] = []
        life = ThreadLifecycle(Owner(), once=True)
        life.start(until_stopped(seen), name="w", daemon=True)
        with pytest.raises(RuntimeError, match="already been started; it runs once"):
            life.start(until_stopped(seen), name="w", daemon=True)
        assert life.stop(wait=True, timeout=REAL_WAIT)
        assert len(seen) == 1

    def test_a_run_once_owner_keeps_its_stop_signal(self) -> None:
        """A stop before start() is seen by the run: the signal is the one built at first."""
        life = ThreadLifecycle(Owner(), once=True)
        signal = life.stop_event
        life.stop()
        seen: list[bool] = []
        life.start(
            lambda stop: seen.append(stop is signal and stop.is_set()), name="w", daemon=True
        )
        assert life.join(REAL_WAIT)
        assert seen == [True]


class TestJoin:
    def test_join_before_start_is_true_and_from_its_own_thread_raises(self) -> None:
        """join() of a never-started lifecycle returns True; from its own thread it raises."""
        life = ThreadLifecycle(Owner())
        assert life.join() is True
        errors: list[BaseException] = []

        def body(stop: SignalSafeEvent) -> None:
            try:
                life.join(0)
            except RuntimeError as exc:
                errors.append(exc)

        life.start(body, name="w", daemon=True)
        assert life.join(REAL_WAIT)
        assert [str(e) for e in errors] == ["<Owner>: join() called from its own thread"]

    def test_join_times_out_while_the_thread_runs(self) -> None:
        """join(timeout) returns False while the thread still runs, True once it ended."""
        seen: list[SignalSafeEvent] = []
        life = ThreadLifecycle(Owner())
        life.start(until_stopped(seen), name="w", daemon=True)
        assert life.join(0.01) is False
        assert life.running_thread_names() == ["tickwork:w"]
        life.stop()
        assert life.join(REAL_WAIT) is True
        assert life.running_thread_names() == []

    def test_timeouts_are_checked(self) -> None:
        """A negative timeout names the argument."""
        life = ThreadLifecycle(Owner())
        with pytest.raises(ValueError, match="'timeout' must be None or a finite number >= 0"):
            life.join(-1)
        with pytest.raises(ValueError, match="'timeout'"):
            life.stop(wait=True, timeout=float("nan"))
