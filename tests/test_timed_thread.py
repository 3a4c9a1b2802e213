"""TimedThread and every(): the seed's surface, the fixed-rate schedule, errors, stop and stats."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable

import pytest

from tickwork import OnError, Overrun, TimedThread, every
from tickwork._errors import BaseExceptionGroup
from tickwork.testing import FakeClock


class Recorder(TimedThread):
    """Records the fake time of each call; optionally takes fake time or raises."""

    def __init__(
        self,
        interval: float,
        clock: FakeClock,
        body: Callable[[int], object] | None = None,
        **kwargs: object,
    ) -> None:
        self.clock = clock
        self.times: list[float] = []
        self.body = body
        super().__init__(interval, clock=clock, **kwargs)  # type: ignore[arg-type]

    def on_interval(self) -> None:
        self.times.append(self.clock.now())
        if self.body is not None:
            self.body(len(self.times))


def step(clock: FakeClock, seconds: float) -> None:
    """Move fake time and let the thread reach its next wait."""
    clock.advance(seconds)
    clock.wait_for_sleepers(1)


class TestSchedule:
    def test_first_call_at_start_then_every_interval(self, clock: FakeClock) -> None:
        """on_interval runs at start, then at start + k * interval."""
        with Recorder(5.0, clock) as t:
            clock.wait_for_sleepers(1)
            for _ in range(3):
                step(clock, 5.0)
        assert t.times == [1000.0, 1005.0, 1010.0, 1015.0]

    def test_no_drift_when_calls_take_time(self, clock: FakeClock) -> None:
        """Calls that take 3 s of a 5 s interval still start on the 5 s grid (keras drifts)."""
        with Recorder(5.0, clock, body=lambda n: clock.advance(3.0)) as t:
            clock.wait_for_sleepers(1)
            for _ in range(3):
                step(clock, 2.0)
        assert t.times == [1000.0, 1005.0, 1010.0, 1015.0]
        assert t.statistics().missed == 0

    def test_an_overrun_skips_slots_and_counts_them(self, clock: FakeClock) -> None:
        """A 12 s call on a 5 s grid: slot 2 (due 1010) runs late at once, slot 1 is missed,
        and the next call is back on the grid at 1015."""
        body = lambda n: clock.advance(12.0) if n == 1 else None  # noqa: E731
        with Recorder(5.0, clock, body=body) as t:
            clock.wait_for_sleepers(1)
            step(clock, 3.0)  # 1015: slot 3
        assert t.times == [1000.0, 1012.0, 1015.0]
        stats = t.statistics()
        assert (stats.calls, stats.missed) == (3, 1)
        assert stats.lateness_max == pytest.approx(2.0)

    def test_catch_up_policy_bursts_like_tensorflow(self, clock: FakeClock) -> None:
        """overrun='catch_up' runs the covered slots back to back."""
        body = lambda n: clock.advance(12.0) if n == 1 else None  # noqa: E731
        with Recorder(5.0, clock, body=body, overrun="catch_up") as t:
            clock.wait_for_sleepers(1)
        assert t.times == [1000.0, 1012.0, 1012.0]

    def test_lateness_is_measured_against_the_grid(self, clock: FakeClock) -> None:
        """A wake-up 1.5 s after its due time shows as lateness 1.5."""
        with Recorder(5.0, clock) as t:
            clock.wait_for_sleepers(1)
            step(clock, 6.5)
        stats = t.statistics()
        assert stats.calls == 2
        assert stats.lateness_max == pytest.approx(1.5)
        assert stats.lateness_mean == pytest.approx(0.75)


class TestStop:
    def test_stop_wakes_the_thread_at_once(self) -> None:
        """With a 60 s interval on the real clock, stop(wait=True) returns long before 60 s."""
        called = threading.Event()
        t = every(60.0, called.set)
        t.start()
        assert called.wait(30)
        assert t.stop(wait=True, timeout=30) is True
        assert not t.is_alive()

    def test_stop_and_wait_lets_a_call_in_progress_finish(self, clock: FakeClock) -> None:
        """stop(wait=True) returns only after the running on_interval has returned."""
        entered, release = threading.Event(), threading.Event()
        finished: list[bool] = []

        def body(n: int) -> None:
            entered.set()
            release.wait(30)
            finished.append(True)

        t = Recorder(5.0, clock, body=body)
        t.start()
        assert entered.wait(30)
        assert t.stop(wait=True, timeout=0.05) is False  # still inside on_interval
        assert t.is_alive()
        release.set()
        assert t.stop(wait=True, timeout=30) is True
        assert finished == [True]
        assert not t.is_alive()

    def test_stop_without_wait_does_not_block(self, clock: FakeClock) -> None:
        """Plain stop() (the seed's) only requests the stop."""
        entered, release = threading.Event(), threading.Event()

        def body(n: int) -> None:
            entered.set()
            release.wait(30)

        t = Recorder(5.0, clock, body=body)
        t.start()
        assert entered.wait(30)
        assert t.stop() is False
        release.set()
        assert t.join(30) is True

    def test_stop_before_start_is_harmless(self, clock: FakeClock) -> None:
        """stop() and join() on a thread never started do nothing and report it ended."""
        t = Recorder(5.0, clock)
        assert t.stop(wait=True) is True
        assert t.join() is True
        assert not t.is_alive()

    def test_stop_from_inside_on_interval(self, clock: FakeClock) -> None:
        """on_interval may stop its own thread; the thread ends after that call."""
        holder: list[TimedThread] = []
        t = Recorder(5.0, clock, body=lambda n: holder[0].stop())
        holder.append(t)
        t.start()
        assert t.join(30)
        assert t.times == [1000.0]


class TestLifecycle:
    def test_start_while_running_warns_and_does_nothing(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A second start() logs a warning and starts no second thread."""
        with Recorder(5.0, clock) as t:
            clock.wait_for_sleepers(1)
            first = t.thread
            with caplog.at_level(logging.WARNING, logger="tickwork"):
                t.start()
            assert t.thread is first
            assert "already running" in caplog.text
        assert t.times == [1000.0]

    def test_restartable_after_stop(self, clock: FakeClock) -> None:
        """After stop(), start() runs a fresh thread on a fresh grid."""
        t = Recorder(5.0, clock)
        t.start()
        clock.wait_for_sleepers(1)
        t.stop(wait=True, timeout=30)
        clock.advance(1.0)
        t.start()
        clock.wait_for_sleepers(1)
        step(clock, 5.0)
        t.stop(wait=True, timeout=30)
        assert t.times == [1000.0, 1001.0, 1006.0]
        assert t.statistics().calls == 3

    def test_start_after_stop_waits_for_the_old_call(self, clock: FakeClock) -> None:
        """start() right after stop() waits for the old thread's call, then starts a new one."""
        entered, release = threading.Event(), threading.Event()

        def body(n: int) -> None:
            if n == 1:
                entered.set()
                release.wait(30)

        t = Recorder(5.0, clock, body=body)
        t.start()
        assert entered.wait(30)
        old = t.thread
        t.stop()
        threading.Timer(0.05, release.set).start()
        t.start()
        assert t.thread is not old
        clock.wait_for_sleepers(1)
        t.stop(wait=True, timeout=30)
        assert len(t.times) == 2

    def test_context_manager_returns_self_and_stops(self, clock: FakeClock) -> None:
        """`with` starts the thread, gives it back, and leaves it stopped."""
        t = Recorder(5.0, clock)
        with t as entered:
            assert entered is t
            assert t.is_alive()
        assert not t.is_alive()

    def test_daemon_by_default_and_thread_kwargs(self, clock: FakeClock) -> None:
        """The thread is a daemon unless daemon=False; name is passed to threading.Thread and is
        the thread's name, exactly (as in TensorFlow)."""
        with Recorder(5.0, clock, name="reporter") as t:
            assert t.thread is not None
            assert t.thread.daemon
            assert t.thread.name == "reporter"
        with Recorder(5.0, clock, daemon=False) as t:
            assert t.thread is not None
            assert not t.thread.daemon

    def test_default_thread_name_says_who_started_it(self, clock: FakeClock) -> None:
        """Without a name the thread is named after the TimedThread subclass."""
        with Recorder(5.0, clock) as t:
            assert t.thread is not None
            assert t.thread.name == "tickwork:TimedThread(Recorder)"

    def test_a_subclass_without_on_interval_is_refused_when_made(self) -> None:
        """A subclass that does not define on_interval is refused at construction, naming the
        class and the method (not started, then failing at every tick)."""

        class Forgot(TimedThread):
            pass

        with pytest.raises(TypeError, match=r"Forgot must define on_interval\(\)"):
            Forgot(1.0)  # type: ignore[abstract]  # on purpose: it forgot

    def test_a_subclass_that_forgot_super_init_is_told_so(self) -> None:
        """A subclass whose __init__ does not call super().__init__ gets an error saying that,
        not "no attribute 'thread_kwargs'"; it is still an AttributeError (hasattr works)."""

        class NoSuper(TimedThread):
            def __init__(self, interval: float) -> None:
                self.every = interval  # super().__init__(interval) forgotten

            def on_interval(self) -> None:
                pass

        thread = NoSuper(1.0)
        with pytest.raises(
            AttributeError,
            match=r"NoSuper is not set up: its __init__ must call super\(\).__init__\(interval\)",
        ):
            thread.start()
        assert not hasattr(thread, "_lifecycle")
        with pytest.raises(AttributeError, match="'NoSuper' object has no attribute 'other'"):
            thread.other  # type: ignore[attr-defined]  # noqa: B018


class TestErrors:
    def test_an_error_is_logged_counted_and_the_schedule_goes_on(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """By default an exception is logged with its traceback and the next slot still runs."""

        def body(n: int) -> None:
            if n == 1:
                raise ValueError("bad metric")

        with (
            caplog.at_level(logging.ERROR, logger="tickwork"),
            Recorder(5.0, clock, body=body) as t,
        ):
            clock.wait_for_sleepers(1)
            step(clock, 5.0)
        assert t.times == [1000.0, 1005.0]
        assert t.statistics().errors == 1
        assert "ValueError: bad metric" in caplog.text  # the traceback is in the log
        assert "Traceback" in caplog.text

    def test_raise_errors_reraises_with_the_original_traceback(self, clock: FakeClock) -> None:
        """raise_errors() re-raises in the caller's thread; the traceback reaches on_interval."""

        def failing_body(n: int) -> None:
            raise KeyError("missing")

        with Recorder(5.0, clock, body=failing_body) as t:
            clock.wait_for_sleepers(1)
        with pytest.raises(KeyError, match="missing") as info:
            t.raise_errors()
        frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert "failing_body" in frames
        assert any("raised by on_interval()" in n for n in getattr(info.value, "__notes__", []))

    def test_several_errors_come_back_as_a_group(self, clock: FakeClock) -> None:
        """Two failures are raised together as an ExceptionGroup, oldest first."""

        def body(n: int) -> None:
            raise RuntimeError(f"call {n}")

        with Recorder(5.0, clock, body=body) as t:
            clock.wait_for_sleepers(1)
            step(clock, 5.0)
        with pytest.raises(BaseExceptionGroup) as info:
            t.raise_errors()
        assert [str(e) for e in info.value.exceptions] == ["call 1", "call 2"]
        assert len(t.errors) == 2

    def test_no_errors_means_raise_errors_is_silent(self, clock: FakeClock) -> None:
        """raise_errors() on the thread that ran, and whose on_interval never raised, does
        nothing: no error kept, none counted."""
        with Recorder(5.0, clock) as t:
            clock.wait_for_sleepers(1)
            step(clock, 5.0)
        assert t.times == [1000.0, 1005.0]
        assert t.errors == ()
        assert t.statistics().errors == 0
        t.raise_errors()

    def test_on_error_stop_ends_the_thread(self, clock: FakeClock) -> None:
        """on_error='stop' ends the thread after the first failure."""

        def body(n: int) -> None:
            raise OSError("disk full")

        t = Recorder(5.0, clock, body=body, on_error=OnError.STOP)
        t.start()
        assert t.join(30)
        assert t.times == [1000.0]
        with pytest.raises(OSError, match="disk full"):
            t.raise_errors()

    def test_a_base_exception_always_ends_the_thread(self, clock: FakeClock) -> None:
        """KeyboardInterrupt from on_interval is kept and ends the loop even with 'continue'."""

        def body(n: int) -> None:
            raise KeyboardInterrupt

        t = Recorder(5.0, clock, body=body)
        t.start()
        assert t.join(30)
        assert isinstance(t.errors[0], KeyboardInterrupt)


class TestValidation:
    @pytest.mark.parametrize("bad", [-1.0, -0.001, float("nan"), float("inf")])
    def test_interval_must_be_finite_and_not_negative(self, bad: float) -> None:
        """ValueError naming 'interval' (0 is allowed: back to back, as in tf_keras)."""
        with pytest.raises(ValueError, match="'interval' must be a finite number >= 0"):
            every(bad, print)

    @pytest.mark.parametrize("bad", [True, "5", None])
    def test_interval_must_be_a_number(self, bad: object) -> None:
        """TypeError naming 'interval' (bools rejected)."""
        with pytest.raises(TypeError, match="'interval' must be a finite number >= 0"):
            every(bad, print)  # type: ignore[arg-type]

    def test_thread_kwargs_that_make_no_sense_are_refused(self) -> None:
        """target/args are TimedThread's own; passing them is a TypeError."""

        class T(TimedThread):
            def on_interval(self) -> None:
                pass

        with pytest.raises(TypeError, match=r"got \['target'\]"):
            T(1.0, target=print)

    def test_bad_policies_are_refused(self) -> None:
        """on_error and overrun name their choices."""
        with pytest.raises(ValueError, match="'on_error' must be one of 'continue', 'stop'"):
            every(1.0, print, on_error="ignore")
        with pytest.raises(ValueError, match="'overrun' must be one of"):
            every(1.0, print, overrun="burst")
        with pytest.raises(TypeError, match="'clock' must be a tickwork.Clock"):
            every(1.0, print, clock="fake")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'fn' must be callable"):
            every(1.0, 42)  # type: ignore[arg-type]


class TestEvery:
    def test_calls_the_function_with_its_arguments(self, clock: FakeClock) -> None:
        """every(interval, fn, args=..., kwargs=...) calls fn(*args, **kwargs) each interval."""
        seen: list[tuple[int, str]] = []
        t = every(2.0, lambda a, b: seen.append((a, b)), args=(1,), kwargs={"b": "x"}, clock=clock)
        assert not t.is_alive()  # not started until asked, like threading.Timer
        with t:
            clock.wait_for_sleepers(1)
            step(clock, 2.0)
        assert seen == [(1, "x"), (1, "x")]

    def test_thread_named_after_the_function(self, clock: FakeClock) -> None:
        """The thread is named every(<qualname>)."""

        def report() -> None:
            pass

        with every(2.0, report, clock=clock) as t:
            assert t.thread is not None
            assert t.thread.name == "tickwork:every(report)"
            assert "every(" in repr(t)

    def test_overrun_policy_is_passed_on(self, clock: FakeClock) -> None:
        """every(..., overrun='shift') moves the grid after an overrun."""
        times: list[float] = []

        def body() -> None:
            times.append(clock.now())
            if len(times) == 1:
                clock.advance(7.0)

        with every(5.0, body, overrun=Overrun.SHIFT, clock=clock):
            clock.wait_for_sleepers(1)
            step(clock, 5.0)
        assert times == [1000.0, 1007.0, 1012.0]


class TestIntervalZero:
    def test_zero_calls_back_to_back_until_stopped(self, clock: FakeClock) -> None:
        """interval=0 (tf_keras waits 0 s between calls): calls follow each other without the
        clock moving, a stop is checked before each one, and stop() ends it."""
        enough = threading.Event()

        def body(n: int) -> None:
            if n == 50:
                enough.set()

        t = Recorder(0, clock, body=body)
        t.start()
        assert enough.wait(30)
        assert t.stop(wait=True, timeout=30)
        assert len(t.times) >= 50
        assert set(t.times) == {1000.0}  # no wait on the clock in between
        assert t.errors == ()


class TestRepeatedFailures:
    def test_a_callback_failing_on_every_tick_is_counted_but_not_logged_every_time(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """1000 failures: all counted, the first 5 logged with their traceback, then a summary
        line at each power of ten (the clock does not move); the first 64 kept and re-raisable."""
        done = threading.Event()

        def body(n: int) -> None:
            if n == 1000:
                done.set()
            raise ValueError(f"failure {n}")

        t = Recorder(0, clock, body=body)
        with caplog.at_level(logging.ERROR, logger="tickwork"):
            t.start()
            assert done.wait(30)
            assert t.stop(wait=True, timeout=30)
        calls = len(t.times)
        assert t.statistics().errors == calls >= 1000
        ours = [r for r in caplog.records if r.name == "tickwork._timed_thread"]
        with_traceback = [r for r in ours if r.exc_info]
        assert [str(r.exc_info[1]) for r in with_traceback if r.exc_info] == [
            f"failure {n}" for n in range(1, 6)
        ]
        summaries = [r.getMessage() for r in ours if not r.exc_info]
        assert 3 <= len(summaries) <= 5, summaries  # at 10, 100, 1000 (+ the end, + 10000 at most)
        assert "has failed 10 times" in summaries[0]
        assert "last: ValueError: failure 10" in summaries[0]
        assert "has failed 1000 times" in summaries[2]
        with pytest.raises(BaseExceptionGroup) as info:
            t.raise_errors()
        assert len(info.value.exceptions) == 64
        assert f"({calls} raised, the first 64 kept)" in str(info.value)

    def test_a_summary_at_most_once_a_minute_and_one_at_the_end(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Failures a second apart: 5 in full, then one summary per 60 s of the clock; what is
        left unlogged when the thread ends gets a last summary."""

        def body(n: int) -> None:
            raise OSError(f"disk {n}")

        with caplog.at_level(logging.ERROR, logger="tickwork"), Recorder(1.0, clock, body=body):
            clock.wait_for_sleepers(1)
            for _ in range(129):  # 130 failures over 129 s
                step(clock, 1.0)
        ours = [r for r in caplog.records if r.name == "tickwork._timed_thread"]
        assert len([r for r in ours if r.exc_info]) == 5
        summaries = [r.getMessage() for r in ours if not r.exc_info]
        # failure 6 (no summary yet ... 60 s after the 5th), 10, 65, 100, 125, and the end.
        assert len(summaries) <= 7, summaries
        assert "has failed 10 times" in summaries[0]
        assert "the thread has ended" in summaries[-1]
        assert "has failed 130 times" in summaries[-1]


class TestLoopErrors:
    def test_an_error_of_the_loop_itself_is_kept_and_logged_not_left_to_excepthook(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A clock whose wait raises ends the thread; the error is in errors and in the log,
        and threading.excepthook never sees it."""
        from tickwork._clock import Clock
        from tickwork._protocols import Waitable

        class Broken(Clock):
            def now(self) -> float:
                return 0.0

            def wait(self, stop: Waitable | None, timeout: float | None) -> bool:
                raise OverflowError("timeout value is too large")

        hooked: list[BaseException | None] = []
        monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args.exc_value))
        calls: list[int] = []
        t = every(5.0, lambda: calls.append(1), clock=Broken())
        with caplog.at_level(logging.ERROR, logger="tickwork"):
            t.start()
            assert t.join(30)
        assert calls == [1]
        assert hooked == []
        assert len(t.errors) == 1
        assert isinstance(t.errors[0], OverflowError)
        assert "the thread was ended by OverflowError" in caplog.text
        with pytest.raises(OverflowError):
            t.raise_errors()
