"""stop_on_signals(): SIGTERM/SIGINT become a stop request; previous handlers are chained and
restored; a signal ignored at the start (a background job's SIGINT) stays ignored unless asked.

Every test starts from dispositions the fixture sets (never what the test run inherited: a
background job inherits SIGINT ignored) and gets the inherited ones back afterwards."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from tickwork import Coordinator, stop_on_signals
from tickwork.testing import FakeClock

_TOUCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture(autouse=True)
def python_default_dispositions() -> Iterator[None]:
    """SIGINT -> Python's KeyboardInterrupt handler, the others -> SIG_DFL; restored after."""
    saved = {sig: signal.getsignal(sig) for sig in _TOUCHED}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in _TOUCHED[1:]:
        signal.signal(sig, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def deliver(sig: signal.Signals) -> None:
    """Send sig to this process; Python runs the handler in the main thread right after."""
    os.kill(os.getpid(), sig)


class TestStop:
    def test_sigterm_requests_a_stop(self) -> None:
        """SIGTERM inside the block asks the coordinator to stop."""
        coord = Coordinator()
        with stop_on_signals(coord) as guard:
            deliver(signal.SIGTERM)
            assert coord.wait_for_stop(10)
        assert guard.received == (signal.SIGTERM,)

    def test_an_event_can_be_the_target(self) -> None:
        """A threading.Event is set instead."""
        event = threading.Event()
        with stop_on_signals(event, signals=[signal.SIGUSR1]):
            deliver(signal.SIGUSR1)
            assert event.wait(10)

    @pytest.mark.parametrize(
        ("target", "call"),
        [(threading.Event(), "Event.set()"), (Coordinator(), "Coordinator.request_stop()")],
    )
    def test_the_log_line_names_the_call_not_an_address(
        self, target: object, call: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The warning a signal logs says what it does (``Event.set()``), not a repr like
        ``<threading.Event at 0x7f...: unset>``."""
        with caplog.at_level("WARNING", logger="tickwork"), stop_on_signals(target):
            deliver(signal.SIGTERM)
        assert caplog.messages == [f"received SIGTERM: requesting a stop ({call})"]
        assert " at 0x" not in caplog.text

    def test_the_first_signal_is_timed_on_the_blocks_clock(self) -> None:
        """first_received_at is None until a signal comes, then the clock's time of the first
        one (a second signal does not move it)."""
        clock = FakeClock(50.0)
        event = threading.Event()
        with stop_on_signals(event, signals=[signal.SIGUSR1], clock=clock) as guard:
            assert guard.first_received_at is None
            deliver(signal.SIGUSR1)
            assert event.wait(10)
            clock.advance(5.0)
            deliver(signal.SIGUSR1)
        assert guard.received == (signal.SIGUSR1, signal.SIGUSR1)
        assert guard.first_received_at == 50.0

    def test_previous_handlers_are_restored(self) -> None:
        """After the block the handlers in place before are back."""
        before = signal.getsignal(signal.SIGTERM)
        with stop_on_signals(Coordinator()):
            assert signal.getsignal(signal.SIGTERM) is not before
        assert signal.getsignal(signal.SIGTERM) is before

    def test_a_previous_python_handler_is_chained(self) -> None:
        """Someone else's handler (say, a launcher's) still runs."""
        seen: list[int] = []

        def theirs(signum: int, frame: FrameType | None) -> None:
            seen.append(signum)

        old = signal.signal(signal.SIGUSR2, theirs)
        try:
            coord = Coordinator()
            with stop_on_signals(coord, signals=[signal.SIGUSR2]):
                deliver(signal.SIGUSR2)
                assert coord.wait_for_stop(10)
            assert seen == [signal.SIGUSR2]
            assert signal.getsignal(signal.SIGUSR2) is theirs
        finally:
            signal.signal(signal.SIGUSR2, old)

    def test_first_ctrl_c_stops_cleanly_the_second_interrupts(self) -> None:
        """SIGINT once: clean stop, no KeyboardInterrupt. Twice: Python's KeyboardInterrupt."""
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        coord = Coordinator()
        with stop_on_signals(coord):
            deliver(signal.SIGINT)
            assert coord.wait_for_stop(10)
            # Python runs the handler (which raises) right after os.kill returns.
            with pytest.raises(KeyboardInterrupt):
                deliver(signal.SIGINT)


class TestIgnoredAtStart:
    def test_an_ignored_sigint_stays_ignored(self) -> None:
        """SIGINT ignored when the block starts (cmd &, nohup): left ignored, so a Ctrl-C does
        not stop the job; SIGTERM still does; SIGINT is still ignored after the block."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        coord = Coordinator()
        with stop_on_signals(coord) as guard:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert guard.skipped == (signal.SIGINT,)
            deliver(signal.SIGINT)  # dropped by the kernel: no handler runs
            assert not coord.should_stop()
            deliver(signal.SIGTERM)
            assert coord.wait_for_stop(10)
        assert guard.received == (signal.SIGTERM,)
        assert tuple(guard.skipped) == ()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    def test_override_ignored_catches_it_anyway_and_puts_the_ignore_back(self) -> None:
        """override_ignored=True: SIGINT requests a stop (a second one is ignored, as before
        the block); SIG_IGN is back afterwards."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        coord = Coordinator()
        with stop_on_signals(coord, override_ignored=True) as guard:
            assert guard.skipped == ()
            deliver(signal.SIGINT)
            assert coord.wait_for_stop(10)
            deliver(signal.SIGINT)  # the previous disposition (ignore) is not a KeyboardInterrupt
        assert guard.received == (signal.SIGINT, signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    def test_override_ignored_must_be_a_bool(self) -> None:
        """Anything else is a TypeError naming it."""
        with pytest.raises(TypeError, match="'override_ignored' must be a bool"):
            stop_on_signals(Coordinator(), override_ignored="yes")  # type: ignore[arg-type]


class TestArguments:
    def test_target_must_be_a_coordinator_or_event(self) -> None:
        """Anything else is a TypeError naming 'target'."""
        with pytest.raises(TypeError, match="'target' must be"):
            stop_on_signals(42)

    def test_signals_must_be_signal_numbers(self) -> None:
        """An unknown number or an empty list is a ValueError naming 'signals'."""
        with pytest.raises(ValueError, match="'signals' must hold signal numbers; got 9999"):
            stop_on_signals(Coordinator(), signals=[9999])
        with pytest.raises(ValueError, match="'signals' must name at least one"):
            stop_on_signals(Coordinator(), signals=[])

    def test_only_the_main_thread_can_install(self) -> None:
        """Entering the block in another thread is a RuntimeError (Python's signal rule)."""
        errors: list[BaseException] = []

        def enter() -> None:
            try:
                with stop_on_signals(Coordinator()):
                    pass
            except RuntimeError as exc:
                errors.append(exc)

        thread = threading.Thread(target=enter)
        thread.start()
        thread.join(30)
        assert "main thread" in str(errors[0])
