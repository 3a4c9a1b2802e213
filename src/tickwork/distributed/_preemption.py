"""Preemption across ranks: a signal on any rank, a stop at the agreed step, one final checkpoint.

:meth:`Coordinator.stop_on_signals` installs (chaining the previous handlers, as
:func:`tickwork.stop_on_signals` does) a handler that notes the signal and its time and requests
a stop; the stop record carries the signal's name, so every rank knows the stop is a preemption.
When ``should_stop_at(step)`` answers True (the same step everywhere), the final-checkpoint
callback runs once on this rank, in a helper thread, while the process group is still up; the
caller waits for it at most until the deadline (``deadline`` seconds after this rank received the
signal or learned of it). An overrun sets ``info.cancelled`` (the callback should watch it),
stops waiting, logs and records a :class:`FinalCheckpointError`.

A dying job is not a preemption: torchrun's agent SIGTERMs every worker once one worker has died.
When a rank is dead (or the store is gone) the agreement cannot complete, and the checkpoint is
skipped (a collective save would hang on the dead rank); ``report.skipped`` says why.

JAX: the coordination service's preemption notifier takes SIGTERM in C, and a Python SIGTERM
handler would silently disable it; with a JAX store SIGTERM is left to JAX, and
``should_stop_at(step)`` also asks ``multihost_utils.reached_preemption_sync_point(step)``,
which is True at the same step on every process.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from .._clock import Clock
from .._signals import SignalStop
from .._validate import check_positive
from ._errors import FinalCheckpointError

if TYPE_CHECKING:
    from ._coordinator import Coordinator

__all__ = ["FinalCheckpointReport", "PreemptionInfo", "PreemptionStop"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreemptionInfo:
    """What the final-checkpoint callback is given.

    ``step``: the step ``should_stop_at`` answered True for (not run: the state is the one
    before it; None when the stop was not step-gated). ``signal``: the signal's name;
    ``signalled_rank``: the rank that received it first. ``deadline``: on ``clock``;
    ``cancelled``: set when the deadline has passed (a long save should check it).
    """

    step: int | None
    signal: str
    signalled_rank: int
    deadline: float
    clock: Clock
    cancelled: threading.Event

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past it)."""
        return self.deadline - self.clock.now()


@dataclass(frozen=True)
class FinalCheckpointReport:
    """What happened to the final checkpoint on this rank."""

    ran: bool
    completed: bool
    overrun: bool
    seconds: float
    step: int | None
    skipped: str | None = None
    error: BaseException | None = None


class PreemptionStop(SignalStop):
    """The context manager :meth:`Coordinator.stop_on_signals` returns."""

    def __init__(
        self,
        coord: Coordinator,
        signals: Iterable[int | signal.Signals],
        final_checkpoint: Callable[[PreemptionInfo], Any] | None,
        deadline: float,
    ) -> None:
        if final_checkpoint is not None and not callable(final_checkpoint):
            raise TypeError(
                f"'final_checkpoint' must be a callable taking a PreemptionInfo; got "
                f"{final_checkpoint!r}"
            )
        self._deadline_seconds = check_positive("deadline", deadline)
        sigs = [signal.Signals(s) for s in signals]
        self._jax = coord.engine == "jax"
        if self._jax and signal.SIGTERM in sigs:
            logger.info(
                "JAX's preemption service handles SIGTERM (in C); tickwork leaves it alone and "
                "asks reached_preemption_sync_point() in should_stop_at()"
            )
            sigs = [s for s in sigs if s != signal.SIGTERM]
        self._coord = coord
        self._callback = final_checkpoint
        self._lock = threading.Lock()
        self._report: FinalCheckpointReport | None = None
        self._signalled_at: float | None = None
        self._has_signals = bool(sigs)
        super().__init__(coord, sigs or [signal.SIGUSR2])

    @property
    def report(self) -> FinalCheckpointReport | None:
        """None until the final checkpoint ran (or was skipped) on this rank."""
        return self._report

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._signalled_at is None:
            self._signalled_at = self._coord.clock.now()
        self._coord.note_signal(signal.Signals(signum).name)
        super()._handle(signum, frame)

    def __enter__(self) -> PreemptionStop:
        if self._has_signals:
            super().__enter__()
        self._coord.attach_preemption(self, _jax_sync_point() if self._jax else None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            signalled = self._received or self._coord.preemption_record is not None
            if self._report is None and signalled:
                self.run_final_checkpoint(None)
        finally:
            self._coord.attach_preemption(None, None)
            if self._has_signals:
                super().__exit__(exc_type, exc, tb)

    def run_final_checkpoint(self, step: int | None) -> FinalCheckpointReport:
        """Run the callback once (later calls return the first report)."""
        with self._lock:
            if self._report is not None:
                return self._report
            self._report = report = self._run(step)
        return report

    def _run(self, step: int | None) -> FinalCheckpointReport:
        coord = self._coord
        clock = coord.clock
        preempt = coord.preemption_record or {}
        if not preempt and self._received:
            preempt = {"signal": self._received[0].name, "rank": coord.rank}
        # A dying job (a rank dead, the store gone) is told from a preemption by the stop
        # agreement: it needs every live rank's answer, so it completes only if all are alive.
        limit = (self._signalled_at or clock.now()) + self._deadline_seconds
        if not coord.wait_stop_agreed(limit):
            reason = f"no collective save: the job is dying ({coord.fatal_error})"
            logger.error("rank %d: final checkpoint skipped: %s", coord.rank, reason)
            return FinalCheckpointReport(False, False, False, 0.0, step, skipped=reason)
        if self._callback is None:
            return FinalCheckpointReport(False, False, False, 0.0, step, skipped="no callback")
        start = self._signalled_at if self._signalled_at is not None else None
        if start is None:
            start = float(preempt.get("learned_at", clock.now()))
        info = PreemptionInfo(
            step=step,
            signal=str(preempt.get("signal", "?")),
            signalled_rank=int(preempt.get("rank", coord.rank)),
            deadline=start + self._deadline_seconds,
            clock=clock,
            cancelled=threading.Event(),
        )
        done = threading.Event()
        failure: list[BaseException] = []
        callback = self._callback

        def save() -> None:
            try:
                callback(info)
            except BaseException as e:
                failure.append(e)
            finally:
                done.set()

        began = clock.now()
        thread = threading.Thread(
            target=save,
            name=f"tickwork.distributed final checkpoint (rank {coord.rank})",
            daemon=True,
        )
        thread.start()
        finished = clock.wait_until(done, info.deadline)
        seconds = clock.now() - began
        if not finished:
            info.cancelled.set()
            error = FinalCheckpointError(
                f"rank {coord.rank}: the final checkpoint did not finish within the deadline "
                f"({self._deadline_seconds:g} s after {info.signal}); it was cut short after "
                f"{seconds:.2f} s (info.cancelled is set; the thread is abandoned)"
            )
            logger.error("%s", error)
            coord.stop_locally(error)
            return FinalCheckpointReport(True, False, True, seconds, step, error=error)
        if failure:
            logger.error("rank %d: the final checkpoint failed", coord.rank, exc_info=failure[0])
            coord.stop_locally(failure[0])
            return FinalCheckpointReport(True, False, False, seconds, step, error=failure[0])
        return FinalCheckpointReport(True, True, False, seconds, step)


def _jax_sync_point() -> Callable[[int], bool]:
    from jax.experimental import multihost_utils

    def reached(step: int) -> bool:
        return bool(multihost_utils.reached_preemption_sync_point(step))

    return reached
