"""LooperThread: tf.train.LooperThread's API on the shared fixed-rate schedule."""

from __future__ import annotations

import threading

import pytest

from tickwork import Coordinator, LooperThread
from tickwork.testing import FakeClock


class TestConstruction:
    def test_coord_must_be_a_coordinator(self) -> None:
        """A non-Coordinator is a ValueError (as in TensorFlow)."""
        with pytest.raises(ValueError, match="'coord' argument must be a tickwork Coordinator"):
            LooperThread(object(), 1.0)  # type: ignore[arg-type]

    def test_args_need_a_target(self) -> None:
        """args/kwargs without target is a ValueError."""
        with pytest.raises(ValueError, match="require that you also pass 'target'"):
            LooperThread(Coordinator(), 1.0, args=(1,))
        with pytest.raises(ValueError, match="require that you also pass 'target'"):
            LooperThread(Coordinator(), 1.0, kwargs={"a": 1})

    @pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf")])
    def test_interval_must_be_nonnegative_or_none(self, bad: float) -> None:
        """timer_interval_secs is None or a finite number >= 0 (a negative one is refused)."""
        with pytest.raises(ValueError, match="'timer_interval_secs' must be a finite number >= 0"):
            LooperThread(Coordinator(), bad)

    def test_interval_zero_runs_back_to_back_like_tensorflow(self, clock: FakeClock) -> None:
        """LooperThread.loop(coord, 0, target=...) (TensorFlow's own tests use it): runs back to
        back, the clock never waited on, until the coordinator stops."""
        coord = Coordinator(clock=clock)
        count = [0]

        def body() -> None:
            count[0] += 1
            if count[0] == 50:
                coord.request_stop()

        looper = LooperThread.loop(coord, 0, target=body)
        coord.join()
        assert count[0] == 50
        assert clock.now() == 1000.0
        assert "back-to-back" in repr(looper)
        assert coord.reported_exceptions == ()

    def test_daemon_and_registered(self) -> None:
        """A LooperThread is a daemon and registers with its coordinator."""
        coord = Coordinator()
        looper = LooperThread(coord, 1.0, target=print)
        assert looper.daemon
        assert looper in coord._registered_threads
        assert looper.name == "tickwork:LooperThread(print)"


class TestTimer:
    def test_loop_calls_the_target_on_the_grid(self, clock: FakeClock) -> None:
        """loop() returns a started thread calling target(*args, **kwargs) every interval."""
        coord = Coordinator(clock=clock)
        seen: list[tuple[float, int, str]] = []
        looper = LooperThread.loop(
            coord, 2.0, lambda a, b: seen.append((clock.now(), a, b)), args=(1,), kwargs={"b": "k"}
        )
        assert looper.is_alive()
        clock.wait_for_sleepers(1)
        clock.advance(2.0)
        clock.wait_for_sleepers(1)
        coord.request_stop()
        coord.join()
        assert seen == [(1000.0, 1, "k"), (1002.0, 1, "k")]

    def test_no_catch_up_burst_by_default(self, clock: FakeClock) -> None:
        """A run that overruns skips slots (TensorFlow bursts; overrun='catch_up' does too)."""
        coord = Coordinator(clock=clock)
        times: list[float] = []

        def body() -> None:
            times.append(clock.now())
            if len(times) == 1:
                clock.advance(7.0)

        looper = LooperThread.loop(coord, 2.0, body)
        clock.wait_for_sleepers(1)
        coord.request_stop()
        coord.join()
        assert times == [1000.0, 1007.0]  # slot 3 (due 1006) runs late; no burst
        assert looper.statistics().missed == 2  # slots at 1002 and 1004

    def test_catch_up_policy_bursts_like_tensorflow(self, clock: FakeClock) -> None:
        """overrun='catch_up' runs every covered slot back to back."""
        coord = Coordinator(clock=clock)
        times: list[float] = []

        def body() -> None:
            times.append(clock.now())
            if len(times) == 1:
                clock.advance(5.0)

        LooperThread(coord, 2.0, target=body, overrun="catch_up").start()
        clock.wait_for_sleepers(1)
        coord.request_stop()
        coord.join()
        assert times == [1000.0, 1005.0, 1005.0]

    def test_back_to_back_without_an_interval(self) -> None:
        """timer_interval_secs=None calls the target back to back until a stop."""
        coord = Coordinator()
        count = [0]

        def body() -> None:
            count[0] += 1
            if count[0] == 50:
                coord.request_stop()

        LooperThread.loop(coord, None, body)
        coord.join()
        assert count[0] == 50

    def test_a_stop_before_the_start_means_no_run(self) -> None:
        """The thread checks for a stop before each run, the first included."""
        coord = Coordinator()
        calls: list[int] = []
        coord.request_stop()
        LooperThread.loop(coord, 1.0, lambda: calls.append(1))
        coord.join()
        assert calls == []


class TestErrors:
    def test_an_exception_stops_everyone_and_reaches_join(self, clock: FakeClock) -> None:
        """A failing target reports to the coordinator, which stops the other loopers."""
        coord = Coordinator(clock=clock)
        quiet = LooperThread.loop(coord, 60.0, lambda: None)

        def fail() -> None:
            raise ValueError("bad batch")

        LooperThread.loop(coord, 1.0, fail)
        with pytest.raises(ValueError, match="bad batch") as info:
            coord.join()
        assert not quiet.is_alive()
        notes = getattr(info.value, "__notes__", [])  # a 3.11 attribute; mypy targets 3.10
        assert "reported to the Coordinator by thread 'tickwork:LooperThread(fail)'" in notes


class Hooks(LooperThread):
    def __init__(self, coord: Coordinator, fail: bool) -> None:
        super().__init__(coord, None)
        self.events: list[str] = []
        self.fail = fail

    def start_loop(self) -> None:
        self.events.append("start")

    def run_loop(self) -> None:
        self.events.append("run")
        if self.fail:
            raise RuntimeError("run failed")
        self._coord.request_stop()

    def stop_loop(self) -> None:
        self.events.append("stop")


class TestHooks:
    def test_subclass_hooks_run_in_order(self) -> None:
        """start_loop, run_loop (until stop), stop_loop."""
        coord = Coordinator()
        looper = Hooks(coord, fail=False)
        looper.start()
        coord.join()
        assert looper.events == ["start", "run", "stop"]

    def test_stop_loop_runs_after_a_failure_too(self) -> None:
        """stop_loop() is cleanup: it runs even when run_loop() raised."""
        coord = Coordinator()
        looper = Hooks(coord, fail=True)
        looper.start()
        with pytest.raises(RuntimeError, match="run failed"):
            coord.join()
        assert looper.events == ["start", "run", "stop"]

    def test_when_start_loop_and_stop_loop_both_raise_both_are_kept(self) -> None:
        """start_loop()'s error is reported first (join() re-raises it) and stop_loop()'s after
        it: neither is lost."""

        class Both(LooperThread):
            def start_loop(self) -> None:
                raise ValueError("could not open the log")

            def stop_loop(self) -> None:
                raise OSError("could not close the log")

        coord = Coordinator()
        Both(coord, None).start()
        with pytest.raises(ValueError, match="could not open the log"):
            coord.join()
        kept = coord.reported_exceptions
        assert [type(e) for e in kept] == [ValueError, OSError]
        assert str(kept[1]) == "could not close the log"

    def test_a_failing_run_loop_and_stop_loop_are_both_kept(self) -> None:
        """The same when run_loop() fails first."""

        class Both(Hooks):
            def stop_loop(self) -> None:
                super().stop_loop()
                raise OSError("cleanup failed")

        coord = Coordinator()
        looper = Both(coord, fail=True)
        looper.start()
        with pytest.raises(RuntimeError, match="run failed"):
            coord.join()
        assert [type(e) for e in coord.reported_exceptions] == [RuntimeError, OSError]
        assert looper.events == ["start", "run", "stop"]


def test_join_waits_for_a_looper_that_was_never_asked_to_stop() -> None:
    """Coordinator.join() with no stop request waits for loopers ending on their own."""
    coord = Coordinator()
    done = threading.Event()

    def once() -> None:
        done.set()
        raise StopIteration  # a clean stop

    LooperThread.loop(coord, None, once)
    coord.join()
    assert done.is_set()
    assert coord.reported_exceptions == ()
