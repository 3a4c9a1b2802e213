"""Coordinator: tf.train.Coordinator's API and semantics, event-driven join, all exceptions kept."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tickwork import Coordinator
from tickwork._errors import BaseExceptionGroup
from tickwork.testing import FakeClock


@pytest.fixture
def blocker() -> Iterator[tuple[threading.Thread, threading.Event]]:
    """A thread that runs until its event is set (always released at the end)."""
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(60,), name="straggler")
    thread.start()
    yield thread, release
    release.set()
    thread.join(30)


def raise_in(exc: BaseException) -> BaseException:
    """Raise and catch exc so it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


class TestStopRequests:
    def test_request_stop_is_seen_by_should_stop_and_wait_for_stop(self) -> None:
        """request_stop() flips should_stop() and ends wait_for_stop()."""
        coord = Coordinator()
        assert not coord.should_stop()
        assert coord.wait_for_stop(0) is False
        coord.request_stop()
        assert coord.should_stop()
        assert coord.wait_for_stop(10) is True

    def test_wait_for_stop_times_out_on_the_clock(self, clock: FakeClock) -> None:
        """wait_for_stop(timeout) measures the timeout with the coordinator's clock."""
        coord = Coordinator(clock=clock)
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(coord.wait_for_stop(5)))
        thread.start()
        clock.wait_for_sleepers(1)
        clock.advance(5)
        thread.join(30)
        assert result == [False]

    def test_clear_stop_starts_afresh(self) -> None:
        """clear_stop() forgets the stop, the exceptions and the join."""
        coord = Coordinator()
        coord.request_stop(raise_in(ValueError("x")))
        with pytest.raises(ValueError, match="x"):
            coord.join()
        assert coord.joined
        coord.clear_stop()
        assert (coord.should_stop(), coord.joined) == (False, False)
        assert coord.reported_exceptions == ()
        coord.join()  # nothing to raise now


class TestExceptions:
    def test_join_reraises_the_first_exception_and_says_which_thread(self) -> None:
        """The first reported exception wins; its note names the reporting thread."""
        coord = Coordinator()

        def worker() -> None:
            with coord.stop_on_exception():
                raise RuntimeError("worker failed")

        thread = threading.Thread(target=worker, name="worker-7")
        coord.register_thread(thread)
        thread.start()
        with pytest.raises(RuntimeError, match="worker failed") as info:
            coord.join()
        notes = getattr(info.value, "__notes__", [])  # a 3.11 attribute; mypy targets 3.10
        assert "reported to the Coordinator by thread 'worker-7'" in notes

    def test_later_exceptions_are_kept_and_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """A second exception is not dropped: it is logged with traceback and kept."""
        coord = Coordinator()
        first, second = raise_in(ValueError("first")), raise_in(KeyError("second"))
        with caplog.at_level(logging.INFO, logger="tickwork"):
            coord.request_stop(first)
            coord.request_stop((type(second), second, second.__traceback__))
        assert coord.reported_exceptions == (first, second)
        assert "Another error reported" in caplog.text
        assert "KeyError: 'second'" in caplog.text
        group = coord.exception_group()
        assert isinstance(group, BaseExceptionGroup)
        assert list(group.exceptions) == [first, second]
        with pytest.raises(ValueError, match="first") as info:
            coord.join()
        assert any("1 more exception(s)" in note for note in getattr(info.value, "__notes__", []))

    def test_an_exception_after_a_clean_stop_is_not_lost(self) -> None:
        """TensorFlow drops errors reported after a plain stop; tickwork keeps and raises them."""
        coord = Coordinator()
        coord.request_stop()
        coord.request_stop(raise_in(OSError("during shutdown")))
        with pytest.raises(OSError, match="during shutdown"):
            coord.join()

    def test_clean_stop_types_count_as_a_plain_stop(self) -> None:
        """StopIteration is a clean stop by default; custom types replace the default."""
        coord = Coordinator()
        coord.request_stop(raise_in(StopIteration()))
        assert coord.should_stop()
        assert coord.reported_exceptions == ()
        coord.join()

        custom = Coordinator(clean_stop_exception_types=[EOFError])
        custom.request_stop(raise_in(EOFError()))
        assert custom.reported_exceptions == ()
        custom.request_stop(raise_in(StopIteration()))
        assert len(custom.reported_exceptions) == 1

    def test_after_join_a_reported_exception_is_raised_at_once(self) -> None:
        """Once joined, request_stop(ex) raises ex in the caller (TensorFlow's rule)."""
        coord = Coordinator()
        coord.join()
        with pytest.raises(ValueError, match="late"):
            coord.request_stop(raise_in(ValueError("late")))
        coord.request_stop()  # a plain stop is fine

    def test_stop_on_exception_reports_and_swallows(self) -> None:
        """The context manager reports any exception and lets the thread end quietly."""
        coord = Coordinator()
        with coord.stop_on_exception():
            raise ZeroDivisionError("oops")
        assert coord.should_stop()
        with pytest.raises(ZeroDivisionError):
            coord.raise_requested_exception()

    def test_raise_requested_exception_is_silent_without_one(self) -> None:
        """Nothing reported, nothing raised; no group either."""
        coord = Coordinator()
        coord.raise_requested_exception()
        assert coord.exception_group() is None

    def test_bad_ex_arguments_name_the_argument(self) -> None:
        """ex must be an exception or an exc_info tuple."""
        coord = Coordinator()
        with pytest.raises(TypeError, match="'ex' must be None, an exception or an exc_info"):
            coord.request_stop("boom")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="'ex' must be an exception or an exc_info tuple"):
            coord.request_stop((1, 2))  # type: ignore[arg-type]
        assert not coord.should_stop()

    def test_bad_constructor_arguments_are_refused(self) -> None:
        """clean_stop_exception_types must hold exception classes; clock must be a Clock."""
        with pytest.raises(TypeError, match="'clean_stop_exception_types' must hold exception"):
            Coordinator(clean_stop_exception_types=[ValueError, "EOFError"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="'clock' must be a tickwork.Clock"):
            Coordinator(clock=time)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("given", "got"),
        [
            (5, "got 5 of type int"),
            (ValueError, "got the class ValueError itself (write (ValueError,))"),
            ("StopIteration", "got the string 'StopIteration'"),
        ],
    )
    def test_a_value_that_is_not_an_iterable_of_classes_is_named(
        self, given: object, got: str
    ) -> None:
        """Coordinator(5), a lone class or a string: a TypeError naming the argument, the rule
        and the value received, not Python's "'int' object is not iterable"."""
        with pytest.raises(TypeError) as raised:
            Coordinator(given)  # type: ignore[arg-type]
        message = str(raised.value)
        assert message.startswith(
            "'clean_stop_exception_types' must be an iterable of exception classes"
        )
        assert message.endswith(got)


class TestJoin:
    def test_join_returns_when_the_threads_end(self) -> None:
        """Without a stop request, join() returns once every thread has ended."""
        coord = Coordinator()
        go = threading.Event()
        threads = [threading.Thread(target=go.wait, args=(30,)) for _ in range(3)]
        for t in threads:
            t.start()
        threading.Timer(0.05, go.set).start()
        coord.join(threads)
        assert not any(t.is_alive() for t in threads)

    def test_join_returns_promptly_after_the_last_thread_ends(self) -> None:
        """join() is woken by the thread ending, not by a 1 s poll (TensorFlow's)."""
        coord = Coordinator()
        go = threading.Event()
        ended_at: list[float] = []

        def work() -> None:
            go.wait(30)
            ended_at.append(time.monotonic())

        thread = threading.Thread(target=work)
        thread.start()
        threading.Timer(0.05, go.set).start()
        coord.join([thread])
        # Generous bound for a loaded machine; TensorFlow's poll would take up to 1 s here.
        assert time.monotonic() - ended_at[0] < 0.9

    def test_stragglers_after_the_grace_period_are_an_error(
        self, clock: FakeClock, blocker: tuple[threading.Thread, threading.Event]
    ) -> None:
        """Threads alive after stop_grace_period_secs (on the clock) make join() raise."""
        thread, _ = blocker
        coord = Coordinator(clock=clock)
        coord.register_thread(thread)
        coord.request_stop()
        errors: list[BaseException] = []

        def join() -> None:
            try:
                coord.join(stop_grace_period_secs=10)
            except BaseException as exc:
                errors.append(exc)

        joiner = threading.Thread(target=join)
        joiner.start()
        clock.wait_for_sleepers(1)
        clock.advance(9.9)
        assert joiner.is_alive()
        clock.advance(0.1)
        joiner.join(30)
        assert [str(e) for e in errors] == [
            "Coordinator stopped with threads still running: straggler"
        ]

    def test_ignore_live_threads_logs_instead(
        self,
        blocker: tuple[threading.Thread, threading.Event],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """With ignore_live_threads=True the stragglers are logged, not raised."""
        thread, _ = blocker
        coord = Coordinator()
        coord.request_stop()
        with caplog.at_level(logging.INFO, logger="tickwork"):
            coord.join([thread], stop_grace_period_secs=0, ignore_live_threads=True)
        assert "threads still running: straggler" in caplog.text
        assert coord.joined

    def test_the_exception_wins_over_stragglers(
        self, blocker: tuple[threading.Thread, threading.Event]
    ) -> None:
        """A reported exception is raised even when threads are still running."""
        thread, _ = blocker
        coord = Coordinator()
        coord.request_stop(raise_in(ValueError("root cause")))
        with pytest.raises(ValueError, match="root cause"):
            coord.join([thread], stop_grace_period_secs=0)

    def test_a_thread_ending_in_the_grace_period_is_fine(
        self, clock: FakeClock, blocker: tuple[threading.Thread, threading.Event]
    ) -> None:
        """A thread that ends during the grace period ends the join without an error."""
        thread, release = blocker
        coord = Coordinator(clock=clock)
        coord.request_stop()
        done = threading.Event()

        def join() -> None:
            coord.join([thread])
            done.set()

        joiner = threading.Thread(target=join)
        joiner.start()
        clock.wait_for_sleepers(1)
        release.set()
        joiner.join(30)
        assert done.is_set()

    def test_join_forgets_the_registered_threads(self) -> None:
        """After join() the registration list is empty (TensorFlow's rule)."""
        coord = Coordinator()
        thread = threading.Thread(target=lambda: None)
        coord.register_thread(thread)
        thread.start()
        coord.join()
        assert coord._registered_threads == set()

    def test_bad_join_arguments(self) -> None:
        """stop_grace_period_secs must be a number, not NaN; threads must be Thread objects."""
        coord = Coordinator()
        with pytest.raises(ValueError, match="'stop_grace_period_secs' must be a number"):
            coord.join(stop_grace_period_secs=float("nan"))
        with pytest.raises(TypeError, match="'stop_grace_period_secs' must be a number"):
            coord.join(stop_grace_period_secs="10")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'threads' must hold threading.Thread"):
            coord.join(threads=["t1"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="'thread' must be a threading.Thread"):
            coord.register_thread(42)  # type: ignore[arg-type]


class TestTensorFlowTimeouts:
    """What TensorFlow's Coordinator takes, with its meaning (its own LooperThread passes
    wait_for_stop() the time left to the next slot, which can be negative)."""

    def test_a_negative_wait_for_stop_does_not_wait(self) -> None:
        """wait_for_stop(-1) returns at once: False, or True once a stop was requested."""
        coord = Coordinator()
        assert coord.wait_for_stop(-1) is False
        assert coord.wait_for_stop(-0.5) is False
        coord.request_stop()
        assert coord.wait_for_stop(-1) is True
        assert coord.wait_for_stop(float("inf")) is True
        with pytest.raises(ValueError, match="'timeout' must be a number"):
            coord.wait_for_stop(float("nan"))

    def test_a_negative_grace_period_is_none(self) -> None:
        """join(stop_grace_period_secs=-1) after a stop: no grace, the live thread is named."""
        coord, release = Coordinator(), threading.Event()
        thread = threading.Thread(target=release.wait, args=(30,), name="slow")
        thread.start()
        try:
            coord.register_thread(thread)
            coord.request_stop()
            with pytest.raises(RuntimeError, match="threads still running: slow"):
                coord.join(stop_grace_period_secs=-1)
        finally:
            release.set()
            thread.join(30)


@pytest.mark.tensorflow
def test_tensorflow_out_of_range_is_a_clean_stop_once_tf_is_imported() -> None:
    """Without TensorFlow imported, tickwork never imports it; once it is, OutOfRangeError is a
    clean stop by default (checked in a fresh interpreter)."""
    code = """
import sys
import tickwork
coord = tickwork.Coordinator()
assert 'tensorflow' not in sys.modules, 'the core imported tensorflow'
assert coord.clean_stop_exception_types == (StopIteration,)
import tensorflow as tf
assert tf.errors.OutOfRangeError in coord.clean_stop_exception_types
try:
    raise tf.errors.OutOfRangeError(None, None, 'end of data')
except tf.errors.OutOfRangeError as e:
    coord.request_stop(e)
assert coord.should_stop() and coord.reported_exceptions == ()
coord.join()
print('ok')
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
