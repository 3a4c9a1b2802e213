"""What a sidecar evaluator reports: one :class:`Evaluation` per checkpoint it finished, and
:class:`SidecarStats` for the whole run (frozen snapshots; they never change), counted by
:class:`RunState` (read from any thread)."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from ._checkpoint import Checkpoint, FollowerStats
from ._sidecar_policy import EndReason

__all__ = ["Evaluation", "Outcome", "RunState", "SidecarStats"]

T = TypeVar("T")


class Outcome(str, enum.Enum):
    """How the evaluation of one checkpoint ended.

    ``evaluated``: ``evaluate`` returned (its value is kept). ``failed``: every attempt raised
    (or the error was not one to retry); the error is logged, counted and kept. ``deleted``: an
    attempt failed and the checkpoint was gone by then (training deleted it, ``max_to_keep``),
    so it was not tried again.
    """

    EVALUATED = "evaluated"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True)
class Evaluation(Generic[T]):
    """The evaluation of one checkpoint, once finished.

    ``checkpoint``: what was evaluated (a :class:`tickwork.Checkpoint`, with its ``step``).
    ``outcome``: see :class:`Outcome`. ``value``: what ``evaluate`` returned (None unless
    evaluated). ``error``: the last exception raised (None when evaluated). ``attempts``: how
    many times ``evaluate`` was called. ``seconds``: from the first attempt's start to the end
    of the last one, waits between attempts included.
    """

    checkpoint: Checkpoint
    outcome: Outcome
    value: T | None = None
    error: BaseException | None = None
    attempts: int = 1
    seconds: float = 0.0

    @property
    def step(self) -> int | None:
        """The checkpoint's step."""
        return self.checkpoint.step

    @property
    def ok(self) -> bool:
        """True when ``evaluate`` returned."""
        return self.outcome is Outcome.EVALUATED


@dataclass(frozen=True)
class SidecarStats:
    """What a :class:`tickwork.SidecarEvaluator` has done so far (a snapshot).

    ``evaluated``
        Checkpoints ``evaluate`` returned for.
    ``failed``
        Checkpoints that failed every attempt (each logged with its traceback and kept in
        ``errors``).
    ``retries``
        Attempts after the first, over all checkpoints.
    ``interrupted``
        Evaluations cut short by a stop (not recorded in the state file: evaluated again after a
        restart).
    ``skipped``
        Complete checkpoints passed over for a newer one (``skip_to_latest=True`` only).
    ``deleted_before_reached``
        Checkpoints deleted before their evaluation could finish: before the evaluator reached
        them, or between two attempts. Each is logged.
    ``errors``
        Exceptions kept for :meth:`~tickwork.SidecarEvaluator.raise_errors`: failed
        checkpoints, and ``on_result`` or done-marker look-ups that raised.
    ``last_step``
        The step of the last checkpoint finished (evaluated or failed).
    ``current``
        The checkpoint being evaluated now, or None.
    ``attempt``
        The attempt in progress on ``current`` (0 when none).
    ``done_seen``
        True once training said it was done (done marker or ``finish()``).
    ``end_reason``
        Why the evaluator ended; None while it runs (or before it started).
    ``resumed_from``
        The step recorded in the state file at start, when resuming.
    ``follower``
        The statistics of the checkpoint follower underneath.
    """

    evaluated: int = 0
    failed: int = 0
    retries: int = 0
    interrupted: int = 0
    skipped: int = 0
    deleted_before_reached: int = 0
    errors: int = 0
    last_step: int | None = None
    current: Checkpoint | None = None
    attempt: int = 0
    done_seen: bool = False
    end_reason: EndReason | None = None
    resumed_from: int | None = None
    follower: FollowerStats = field(default_factory=FollowerStats)

    @property
    def finished(self) -> int:
        """Checkpoints evaluated or failed (what ``max_evaluations`` counts)."""
        return self.evaluated + self.failed


class RunState:
    """The counters behind :meth:`SidecarEvaluator.statistics`, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._stats = SidecarStats()
        self._deleted = 0

    def set(self, **changes: object) -> None:
        with self.lock:
            self._stats = replace(self._stats, **changes)  # type: ignore[arg-type]

    def begin(self, checkpoint: Checkpoint, attempt: int) -> None:
        with self.lock:
            stats = self._stats
            retries = stats.retries + (1 if attempt > 1 else 0)
            self._stats = replace(stats, current=checkpoint, attempt=attempt, retries=retries)

    def interrupted(self) -> None:
        with self.lock:
            stats = self._stats
            self._stats = replace(stats, interrupted=stats.interrupted + 1, current=None, attempt=0)

    def finish(self, record: Evaluation[Any]) -> int:
        """Count a finished checkpoint; how many are finished (evaluated or failed)."""
        with self.lock:
            stats = replace(self._stats, current=None, attempt=0)
            if record.outcome is Outcome.EVALUATED:
                stats = replace(stats, evaluated=stats.evaluated + 1, last_step=record.step)
            elif record.outcome is Outcome.FAILED:
                stats = replace(stats, failed=stats.failed + 1, last_step=record.step)
            else:
                self._deleted += 1
            self._stats = stats
            return stats.finished

    def end(self, reason: EndReason) -> None:
        with self.lock:
            if self._stats.end_reason is None:
                self._stats = replace(self._stats, end_reason=reason, current=None, attempt=0)

    @property
    def end_reason(self) -> EndReason | None:
        with self.lock:
            return self._stats.end_reason

    def snapshot(self, follower: FollowerStats, errors: int) -> SidecarStats:
        with self.lock:
            return replace(
                self._stats,
                skipped=follower.skipped,
                deleted_before_reached=follower.deleted_before_reached + self._deleted,
                errors=errors,
                resumed_from=follower.resumed_from,
                follower=follower,
            )

    def reinit_after_fork(self) -> None:
        self.lock = threading.Lock()
