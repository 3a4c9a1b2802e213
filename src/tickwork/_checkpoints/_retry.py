"""Retrying a checkpoint whose evaluation failed: the policy, as pure functions.

A failed attempt is followed by another one after a delay that grows exponentially
(``backoff * backoff_factor ** (failures - 1)``, capped at ``backoff_max``), up to
``max_attempts`` attempts in all. What happens after a failure is decided by
:func:`after_failure` from a few facts the caller gathers, so the decision is tested without
threads, clocks or files:

======================  =========================================================================
verdict                 when
======================  =========================================================================
``INTERRUPTED``         a stop was requested: no retry, and the checkpoint is not recorded as
                        finished (a restarted evaluator evaluates it again)
``DELETED``             the checkpoint is gone (``max_to_keep`` deleted it): retrying cannot help
``RETRY``               attempts are left and the error is one to retry
``GIVE_UP``             no attempt left, or an error that is not retried: report it, go on
======================  =========================================================================

Delays carry no jitter: one evaluator retries one checkpoint at a time, so there is no crowd of
clients to spread out, and a deterministic schedule is easier to reason about and to test.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._validate import check_int, check_nonnegative, check_positive

__all__ = ["RetryPolicy", "Verdict", "after_failure"]


class Verdict(str, enum.Enum):
    """What to do after an attempt failed (see the module docs)."""

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
) -> tuple[Verdict, float]:
    """The verdict after attempt number ``attempts`` failed, and the delay before the next one.

    ``stopping``: a stop was requested. ``retryable``: the error is one of those to retry.
    ``still_there``: every file of the checkpoint still exists. The delay is 0 unless the
    verdict is ``RETRY``.
    """
    if stopping:
        return Verdict.INTERRUPTED, 0.0
    if not still_there:
        return Verdict.DELETED, 0.0
    if retryable and attempts < policy.max_attempts:
        return Verdict.RETRY, policy.delay(attempts)
    return Verdict.GIVE_UP, 0.0
