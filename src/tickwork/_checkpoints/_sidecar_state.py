"""The sidecar evaluator's small parts: its counters (read from any thread), the stop signal it
waits on (its own or the user's), and the checks of its less common arguments."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from .._clock import MONOTONIC, Waitable
from ._checkpoint import Checkpoint, FollowerStats
from ._ending import EndReason
from ._evaluation import Evaluation, Outcome, SidecarStats

__all__ = ["RunState", "StopEither", "check_done_marker", "check_retry_on"]

# Seconds. While waiting on the user's stop signal, the evaluator's own is looked at this often
# (neither can be subscribed to, so one of the two is polled; both end a wait within 50 ms).
_OWN_STOP_POLL = 0.02


class StopEither:
    """A stop signal set when the evaluator's own event or the user's ``stop`` is set."""

    __slots__ = ("_own", "_user")

    def __init__(self, own: threading.Event, user: Waitable | None) -> None:
        self._own = own
        self._user = user

    def is_set(self) -> bool:
        return self._own.is_set() or (self._user is not None and self._user.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        user = self._user
        if user is None:
            return self._own.wait(timeout)
        deadline = None if timeout is None else MONOTONIC.now() + max(timeout, 0.0)
        while True:
            if self.is_set():
                return True
            remaining = _OWN_STOP_POLL if deadline is None else deadline - MONOTONIC.now()
            if remaining <= 0:
                return False
            if user.wait(min(remaining, _OWN_STOP_POLL)):
                return True

    def __repr__(self) -> str:
        return f"<stop signal: the evaluator's own or {self._user!r}>"


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
