"""stop_on_signals(): SIGTERM/SIGINT become a stop request; previous handlers are chained and
restored."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import pytest

from tickwork import Coordinator, stop_on_signals


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
