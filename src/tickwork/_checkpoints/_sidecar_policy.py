"""The sidecar evaluator's policy, as pure functions: retrying a failed checkpoint, and ending.

Retry: attempt ``n + 1`` follows a failed attempt ``n`` after ``backoff * backoff_factor **
(n - 1)`` seconds (capped at ``backoff_max``), up to ``max_attempts`` in all; :func:`after_failure`
decides from the facts the caller gathers (:class:`AfterFailure`).

Ending: after a checkpoint is finished (:func:`end_after_checkpoint`: ``max_evaluations``, or
``until_step``), and while none is available (:func:`when_idle`, in this order: a stop; training
done and every checkpoint complete by then evaluated, those still being written given
``drain_grace``; ``stall_timeout``; ``timeout``, then ``timeout_fn``). :func:`wait_limit` says how
long the next wait may last, so every limit is kept to the clock's precision.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._validate import (
    check_int,
    check_lenient_timeout,
    check_nonnegative,
    check_optional_nonnegative,
    check_positive,
)

__all__ = [
    "AfterFailure",
    "EndReason",
    "EndRules",
    "Idle",
    "IdleAction",
    "RetryPolicy",
    "after_failure",
    "check_done_marker",
    "check_retry_on",
    "end_after_checkpoint",
    "wait_limit",
    "when_idle",
]


# -- retrying --------------------------------------------------------------------------------------


class AfterFailure(str, enum.Enum):
    """What to do after an attempt failed: ``INTERRUPTED`` (a stop was requested: no retry, not
    recorded as finished), ``DELETED`` (the checkpoint is gone), ``RETRY`` (attempts left, an
    error to retry), ``GIVE_UP`` (report it, go on)."""

    RETRY = "retry"
    GIVE_UP = "give_up"
    DELETED = "deleted"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed checkpoint is tried again.

    ``max_attempts`` counts every attempt, the first included (1: never retry). The delay before
    attempt ``n + 1`` is ``backoff * backoff_factor ** (n - 1)`` seconds, at most
    ``backoff_max``.
    """

    max_attempts: int = 3
    backoff: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        check_int("max_attempts", self.max_attempts, minimum=1)
        check_nonnegative("backoff", self.backoff)
        factor = check_positive("backoff_factor", self.backoff_factor)
        if factor < 1:
            raise ValueError(
                f"'backoff_factor' must be a finite number >= 1 (delays never shrink); "
                f"got {self.backoff_factor!r}"
            )
        ceiling = check_nonnegative("backoff_max", self.backoff_max)
        if ceiling < self.backoff:
            raise ValueError(
                f"'backoff_max' must be >= backoff ({self.backoff!r}); got {self.backoff_max!r}"
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 or more)."""
        if failures < 1:
            raise ValueError(f"'failures' must be an int >= 1; got {failures!r}")
        delay = float(self.backoff)
        for _ in range(failures - 1):  # a loop, not **: no overflow however many failures
            delay *= self.backoff_factor
            if delay >= self.backoff_max:
                return float(self.backoff_max)
        return min(delay, float(self.backoff_max))


def after_failure(
    policy: RetryPolicy,
    attempts: int,
    *,
    stopping: bool,
    retryable: bool,
    still_there: bool,
) -> tuple[AfterFailure, float]:
    """What to do after attempt number ``attempts`` failed, and the delay before the next one.

    ``stopping``: a stop was requested. ``retryable``: the error is one of those to retry.
    ``still_there``: every file of the checkpoint still exists. The delay is 0 unless it
    is ``RETRY``.
    """
    if stopping:
        return AfterFailure.INTERRUPTED, 0.0
    if not still_there:
        return AfterFailure.DELETED, 0.0
    if retryable and attempts < policy.max_attempts:
        return AfterFailure.RETRY, policy.delay(attempts)
    return AfterFailure.GIVE_UP, 0.0


# -- ending ----------------------------------------------------------------------------------------


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
        # As checkpoints_iterator's (TensorFlow's): negative is no wait, infinite is no limit.
        object.__setattr__(self, "timeout", check_lenient_timeout("timeout", self.timeout))
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
    at most ``slice_secs`` (so that the done marker and :meth:`~tickwork.SidecarEvaluator.finish`
    are looked at). Once training is done and nothing is still being written, no wait: only a
    last look."""
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


# -- arguments -------------------------------------------------------------------------------------


def check_done_marker(done_marker: object) -> str | None:
    """None, or the name of a file directly inside the checkpoint directory."""
    if done_marker is None:
        return None
    if (
        not isinstance(done_marker, str)
        or not done_marker
        or "/" in done_marker
        or "\\" in done_marker
        or done_marker in (".", "..")
    ):
        raise ValueError(
            "'done_marker' must be None or a file name inside checkpoint_dir (no '/'); "
            f"got {done_marker!r}"
        )
    return done_marker


def check_retry_on(retry_on: object) -> tuple[type[BaseException], ...]:
    """An exception type, or a tuple of them."""
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise TypeError(
            f"'retry_on' must be an exception type or a non-empty tuple of them; got {retry_on!r}"
        )
    return types
