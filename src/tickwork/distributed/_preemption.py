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
from typing import TYPE_CHECKING, Any, final

from .._clock import Clock
from .._deadline import run_until
from .._signals import SignalStop
from .._validate import check_positive
from ._errors import FinalCheckpointError

if TYPE_CHECKING:
    from ._coordinator import Coordinator

__all__ = ["FinalCheckpointReport", "PreemptionInfo", "PreemptionStop"]

logger = logging.getLogger(__name__)


@final
@dataclass(frozen=True, kw_only=True)
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


@final
@dataclass(frozen=True, kw_only=True)
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
        replica = coord._replica  # noqa: SLF001 - a part of the Coordinator, made by it
        if final_checkpoint is not None and not callable(final_checkpoint):
            raise TypeError(
                f"'final_checkpoint' must be a callable taking a PreemptionInfo; got "
                f"{final_checkpoint!r}"
            )
        self._deadline_seconds = check_positive("deadline", deadline)
        sigs = [signal.Signals(s) for s in signals]
        self._jax = replica.engine == "jax"
        if self._jax and signal.SIGTERM in sigs:
            logger.info(
                "JAX's preemption service handles SIGTERM (in C); tickwork leaves it alone and "
                "asks reached_preemption_sync_point() in should_stop_at()"
            )
            sigs = [s for s in sigs if s != signal.SIGTERM]
        self._coord = coord
        self._replica = replica
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
            self._signalled_at = self._replica.clock.now()
        self._replica.signal_hint = signal.Signals(signum).name
        super()._handle(signum, frame)

    def __enter__(self) -> PreemptionStop:
        if self._has_signals:
            super().__enter__()
        self._replica.preemption = self
        self._replica.step_hook = _jax_sync_point() if self._jax else None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            signalled = self._received or self._replica.preempt is not None
            if self._report is None and signalled:
                self.run_final_checkpoint(None)
        finally:
            self._replica.preemption = None
            self._replica.step_hook = None
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
        replica = self._replica
        clock = replica.clock
        preempt = replica.preempt or {}
        if not preempt and self._received:
            preempt = {"signal": self._received[0].name, "rank": replica.rank}
        # A dying job (a rank dead, the store gone) is told from a preemption by the stop
        # agreement: it needs every live rank's answer, so it completes only if all are alive.
        limit = (self._signalled_at or clock.now()) + self._deadline_seconds
        if not replica.wait_stop_agreed(limit):
            reason = f"no collective save: the job is dying ({replica.fatal})"
            logger.error("rank %d: final checkpoint skipped: %s", replica.rank, reason)
            return FinalCheckpointReport(
                ran=False, completed=False, overrun=False, seconds=0.0, step=step, skipped=reason
            )
        callback = self._callback
        if callback is None:
            return FinalCheckpointReport(
                ran=False,
                completed=False,
                overrun=False,
                seconds=0.0,
                step=step,
                skipped="no callback",
            )
        start = self._signalled_at
        if start is None:
            start = float(preempt.get("learned_at", clock.now()))
        info = PreemptionInfo(
            step=step,
            signal=str(preempt.get("signal", "?")),
            signalled_rank=int(preempt.get("rank", replica.rank)),
            deadline=start + self._deadline_seconds,
            clock=clock,
            cancelled=threading.Event(),
        )
        outcome = run_until(
            lambda: callback(info),
            deadline=info.deadline,
            clock=clock,
            name=f"distributed final checkpoint (rank {replica.rank})",
            cancelled=info.cancelled,
            daemon=True,
        )
        if outcome.overran:
            error = FinalCheckpointError(
                f"rank {replica.rank}: the final checkpoint did not finish within the deadline "
                f"({self._deadline_seconds:g} s after {info.signal}); it was cut short after "
                f"{outcome.seconds:.2f} s (info.cancelled is set; the thread is abandoned)"
            )
            logger.error("%s", error)
            replica.stop_here(error)
            return FinalCheckpointReport(
                ran=True,
                completed=False,
                overrun=True,
                seconds=outcome.seconds,
                step=step,
                error=error,
            )
        if outcome.error is not None:
            logger.error(
                "rank %d: the final checkpoint failed", replica.rank, exc_info=outcome.error
            )
            replica.stop_here(outcome.error)
            return FinalCheckpointReport(
                ran=True,
                completed=False,
                overrun=False,
                seconds=outcome.seconds,
                step=step,
                error=outcome.error,
            )
        return FinalCheckpointReport(
            ran=True, completed=True, overrun=False, seconds=outcome.seconds, step=step
        )


def _jax_sync_point() -> Callable[[int], bool]:
    from jax.experimental import multihost_utils

    def reached(step: int) -> bool:
        return bool(multihost_utils.reached_preemption_sync_point(step))

    return reached
