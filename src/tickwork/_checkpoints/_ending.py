"""When a sidecar evaluator ends: the decisions, as pure functions of what it knows.

Two moments decide:

* after a checkpoint is finished (:func:`end_after_checkpoint`): ``max_evaluations`` checkpoints
  finished, or one at ``until_step`` or later (what ``max_evaluations`` meant in tf_keras);
* while no checkpoint is available (:func:`when_idle`), in this order: a stop was requested;
  training said it is done (a done marker, or :meth:`SidecarEvaluator.finish`) and every
  checkpoint complete by then has been evaluated (those still being written get ``drain_grace``
  seconds to complete); no new checkpoint for ``stall_timeout`` seconds (training seems to have
  died); ``timeout`` seconds of waiting (TensorFlow's ``timeout``: the caller then asks
  ``timeout_fn``, if any, whether to end).

:func:`wait_limit` tells how long the next wait for a checkpoint may last, so that every limit is
kept to within the clock's precision rather than to within a polling interval.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._validate import check_int, check_optional_nonnegative

__all__ = [
    "EndReason",
    "EndRules",
    "Idle",
    "IdleAction",
    "end_after_checkpoint",
    "wait_limit",
    "when_idle",
]


class EndReason(str, enum.Enum):
    """Why a :class:`tickwork.SidecarEvaluator` ended.

    ``stopped``: its ``stop`` signal was set or :meth:`~tickwork.SidecarEvaluator.stop` was
    called. ``done``: training said it was done (the done marker appeared, or
    :meth:`~tickwork.SidecarEvaluator.finish` was called) and every checkpoint complete by then
    was evaluated. ``timeout``: ``timeout`` seconds passed without a new checkpoint (and
    ``timeout_fn``, if given, returned true). ``stalled``: no new checkpoint for
    ``stall_timeout`` seconds. ``max_evaluations``: that many checkpoints were finished.
    ``until_step``: a checkpoint at that step or later was finished. ``failed``: a checkpoint
    failed every attempt and ``on_error="stop"``. ``error``: ``evaluate`` raised an exception
    that is not an :class:`Exception` (KeyboardInterrupt, SystemExit) in the evaluator's thread.
    """

    STOPPED = "stopped"
    DONE = "done"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    MAX_EVALUATIONS = "max_evaluations"
    UNTIL_STEP = "until_step"
    FAILED = "failed"
    ERROR = "error"


@dataclass(frozen=True)
class EndRules:
    """The limits a user set (None: no such limit)."""

    timeout: float | None = None
    stall_timeout: float | None = None
    max_evaluations: int | None = None
    until_step: int | None = None

    def __post_init__(self) -> None:
        check_optional_nonnegative("timeout", self.timeout)
        stall = check_optional_nonnegative("stall_timeout", self.stall_timeout)
        if stall is not None and stall <= 0:
            raise ValueError(f"'stall_timeout' must be None or a finite number > 0; got {stall!r}")
        if self.max_evaluations is not None:
            check_int("max_evaluations", self.max_evaluations, minimum=1)
        if self.until_step is not None:
            check_int("until_step", self.until_step)


def end_after_checkpoint(rules: EndRules, finished: int, step: int | None) -> EndReason | None:
    """Whether to end now that ``finished`` checkpoints are finished, the last at ``step``."""
    if rules.max_evaluations is not None and finished >= rules.max_evaluations:
        return EndReason.MAX_EVALUATIONS
    if rules.until_step is not None and step is not None and step >= rules.until_step:
        return EndReason.UNTIL_STEP
    return None


@dataclass(frozen=True)
class Idle:
    """What the evaluator knows while no checkpoint is available (times on its clock).

    ``waiting_since``: when the current wait for a new checkpoint began (after the last
    checkpoint was finished, or when ``timeout_fn`` said to go on). ``last_new``: when the last
    checkpoint was handed out (the start, before the first). ``done_since``: when training said
    it was done; None until then. ``pending``: checkpoints present but not yet complete.
    """

    now: float
    waiting_since: float
    last_new: float
    done_since: float | None = None
    pending: int = 0
    stopped: bool = False


class IdleAction(str, enum.Enum):
    WAIT = "wait"
    END = "end"
    ASK_TIMEOUT_FN = "ask_timeout_fn"


def when_idle(
    rules: EndRules, idle: Idle, *, drain_grace: float
) -> tuple[IdleAction, EndReason | None]:
    """What to do while no checkpoint is available: wait, end (and why), or, once ``timeout``
    has passed, ask ``timeout_fn`` (the caller ends with ``TIMEOUT`` when there is none or it
    returns true)."""
    if idle.stopped:
        return IdleAction.END, EndReason.STOPPED
    if idle.done_since is not None and (
        idle.pending == 0 or idle.now >= idle.done_since + drain_grace
    ):
        return IdleAction.END, EndReason.DONE
    if rules.stall_timeout is not None and idle.now - idle.last_new >= rules.stall_timeout:
        return IdleAction.END, EndReason.STALLED
    if rules.timeout is not None and idle.now - idle.waiting_since >= rules.timeout:
        return IdleAction.ASK_TIMEOUT_FN, EndReason.TIMEOUT
    return IdleAction.WAIT, None


def wait_limit(rules: EndRules, idle: Idle, *, slice_secs: float, drain_grace: float) -> float:
    """How long the next wait for a checkpoint may last: until the nearest limit comes due, and
    at most ``slice_secs`` (so that the done marker and :meth:`finish` are looked at). Once
    training is done and nothing is still being written, no wait: only a last look."""
    if idle.done_since is not None and idle.pending == 0:
        return 0.0
    deadlines = [idle.now + slice_secs]
    if rules.stall_timeout is not None:
        deadlines.append(idle.last_new + rules.stall_timeout)
    if rules.timeout is not None:
        deadlines.append(idle.waiting_since + rules.timeout)
    if idle.done_since is not None:
        deadlines.append(idle.done_since + drain_grace)
    return max(0.0, min(deadlines) - idle.now)
