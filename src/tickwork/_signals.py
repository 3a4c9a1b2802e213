"""Turn SIGTERM/SIGINT into a stop request (preemption), chaining the handlers already there.

Cluster schedulers send SIGTERM some seconds before SIGKILL. A handler that only sets a flag the
main loop reads misses the threads that should react (a checkpoint save, an evaluator), and a
handler that replaces someone else's loses theirs. :func:`stop_on_signals` requests a stop on a
Coordinator (or sets an Event) that every thread watches, calls the previous Python handler too,
and puts the previous handlers back when the block ends.

SIGINT is special: the first Ctrl-C asks for a clean stop; a second one goes to the previous
handler (by default Python's, which raises KeyboardInterrupt) so an impatient user can still
interrupt.

A signal that is *ignored* when the block starts stays ignored, unless ``override_ignored=True``.
A shell starts a background job (``cmd &``, ``nohup``) with SIGINT ignored so that a Ctrl-C meant
for the foreground does not reach it; such a job means "don't stop me on Ctrl-C", and catching
SIGINT there would undo that. Python itself does the same: it installs its KeyboardInterrupt
handler only when SIGINT was not ignored at startup. The signals left alone are listed in
:attr:`SignalStop.skipped`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType

from ._clock import Clock, as_waitable, check_clock
from ._log import get_logger, resolve

__all__ = ["SignalStop", "stop_on_signals"]

logger = get_logger(__name__)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import Any

    _Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _request(target: object) -> Callable[[], None]:
    request_stop = getattr(target, "request_stop", None)
    if callable(request_stop):
        return lambda: request_stop()
    as_waitable(target, argument="target")  # raises a TypeError naming it if unusable
    setter = getattr(target, "set", None)
    if not callable(setter):
        raise TypeError(
            f"'target' must be a Coordinator (request_stop()) or an Event (set()); got {target!r}"
        )
    return lambda: setter()


def _describe(target: object) -> str:
    """How a log line names the stop it requests: the call made (``Event.set()``,
    ``Coordinator.request_stop()``), never a repr with an address."""
    method = "request_stop" if callable(getattr(target, "request_stop", None)) else "set"
    return f"{type(target).__name__}.{method}()"


class SignalStop:
    """Context manager made by :func:`stop_on_signals`; ``received`` lists the signals seen."""

    def __init__(
        self,
        target: object,
        signals: Iterable[int | signal.Signals],
        *,
        override_ignored: bool = False,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(override_ignored, bool):
            raise TypeError(f"'override_ignored' must be a bool; got {override_ignored!r}")
        self._override_ignored = override_ignored
        self._clock = check_clock(clock)
        self._first_at: float | None = None
        self._request = _request(target)
        self._target = target
        sigs = []
        for sig in signals:
            try:
                sigs.append(signal.Signals(sig))
            except ValueError:
                raise ValueError(f"'signals' must hold signal numbers; got {sig!r}") from None
        if not sigs:
            raise ValueError("'signals' must name at least one signal; got none")
        self._signals = tuple(dict.fromkeys(sigs))
        self._previous: dict[signal.Signals, _Handler] = {}
        self._received: list[signal.Signals] = []
        self._skipped: tuple[signal.Signals, ...] = ()
        self._installed = False

    @property
    def received(self) -> tuple[signal.Signals, ...]:
        """The signals caught so far, in order."""
        return tuple(self._received)

    @property
    def first_received_at(self) -> float | None:
        """When (on the block's clock) the first signal arrived; None before one did."""
        return self._first_at

    @property
    def skipped(self) -> tuple[signal.Signals, ...]:
        """The signals left as they were because they were ignored when the block started (see
        ``override_ignored``); empty outside the block."""
        return self._skipped

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self._first_at is None:
            self._first_at = self._clock.now()
        first_of_kind = sig not in self._received
        self._received.append(sig)
        logger.warning("received %s: requesting a stop (%s)", sig.name, _describe(self._target))
        self._request()
        previous = self._previous.get(sig)
        if not callable(previous):
            return  # SIG_DFL / SIG_IGN: doing their job would kill the process we just saved.
        if previous is signal.default_int_handler and first_of_kind:
            return  # the first Ctrl-C is a clean stop; the next one interrupts.
        previous(signum, frame)

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("stop_on_signals() must be entered in the main thread (signal rule)")
        if self._installed:
            raise RuntimeError("this stop_on_signals() block is already active")
        resolve(logger)  # the handler logs: logging is imported here, not inside the handler
        skipped = []
        for sig in self._signals:
            if not self._override_ignored and signal.getsignal(sig) is signal.SIG_IGN:
                skipped.append(sig)
                continue
            self._previous[sig] = signal.signal(sig, self._handle)
        self._skipped = tuple(skipped)
        if skipped:
            logger.info(
                "%s ignored when stop_on_signals() began (a background job?): left ignored, so "
                "it does not call %s (override_ignored=True catches it anyway)",
                " and ".join(s.name for s in skipped),
                _describe(self._target),
            )
        self._installed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig in self._signals:
            if sig not in self._previous:
                continue  # skipped: left ignored, nothing to put back
            previous = self._previous.pop(sig)
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._skipped = ()
        self._installed = False


def stop_on_signals(
    target: object,
    signals: Iterable[int | signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    *,
    override_ignored: bool = False,
    clock: Clock | None = None,
) -> SignalStop:
    """While the block runs, the given signals request a stop of ``target``.

    ``target`` is a :class:`tickwork.Coordinator` (``request_stop()`` is called) or an Event
    (``set()``). Previous Python-level handlers are still called (a second SIGINT goes on to
    Python's KeyboardInterrupt); the previous handlers are restored on exit. A signal ignored
    when the block starts (SIGINT in a background job, ``nohup``) stays ignored unless
    ``override_ignored=True``. ``clock`` times the first signal (``first_received_at``)::

        coord = Coordinator()
        with stop_on_signals(coord):
            train(coord)          # every thread sees coord.should_stop() after SIGTERM
    """
    return SignalStop(target, signals, override_ignored=override_ignored, clock=clock)
