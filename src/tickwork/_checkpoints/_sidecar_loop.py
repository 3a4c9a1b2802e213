"""The sidecar evaluator's loop: wait for the next checkpoint, evaluate it with retries, decide
whether to end. The decisions are :mod:`._sidecar_policy`'s; this module gathers the facts they
need and carries them out, in whichever thread :class:`SidecarEvaluator` runs in.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._clock import Clock
from .._errors import ErrorLog, add_note
from .._protocols import Waitable
from .._timed_thread import OnError
from ._checkpoint import Checkpoint
from ._evaluation import Evaluation, Outcome, RunState
from ._follower import CheckpointFollower
from ._progress import Evaluated, Evaluating, Progress
from ._sidecar_policy import (
    AfterFailure,
    EndReason,
    EndRules,
    Idle,
    IdleAction,
    RetryPolicy,
    after_failure,
    end_after_checkpoint,
    wait_limit,
    when_idle,
)
from ._storage import Storage

__all__ = ["EvaluationLoop"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds. The longest single wait for a checkpoint: how often the done marker (locally) and a
# finish() request are looked at. Limits (timeout, stall) are kept exactly, not to this.
SLICE = 0.25


@dataclass
class EvaluationLoop(Generic[T]):
    """Everything the loop works with; :meth:`run` is the loop."""

    name: str
    follower: CheckpointFollower
    storage: Storage
    evaluate: Callable[[Checkpoint], T]
    rules: EndRules
    policy: RetryPolicy
    retry_on: tuple[type[BaseException], ...]
    on_error: OnError
    on_result: Callable[[Evaluation[T]], object] | None
    progress: Progress
    timeout_fn: Callable[[], object] | None
    done_marker: str | None
    stop: Waitable
    finish: threading.Event
    clock: Clock
    state: RunState
    errors: ErrorLog
    results: deque[Evaluation[T]]

    def __post_init__(self) -> None:
        follower = self.follower
        options = follower.options
        self.marker_interval = options.poll_interval if self.storage.remote else SLICE
        # Checkpoints still being written when training says it is done get this long.
        self.drain_grace = options.settle_secs + 2 * max(follower.max_poll_interval, 0.5)

    def run(self) -> EndReason:
        """Evaluate checkpoints until it is time to end; why it ended."""
        clock, follower, rules = self.clock, self.follower, self.rules
        now = clock.now()
        waiting_since = last_new = next_marker_check = now
        done_since: float | None = None
        while True:
            now = clock.now()
            if done_since is None and self._training_done(now >= next_marker_check):
                done_since = now
                self.state.set(done_seen=True)
                follower.rescan()  # events in flight must not be missed
            if done_since is None and now >= next_marker_check:
                next_marker_check = now + self.marker_interval
            idle = Idle(
                now=now,
                waiting_since=waiting_since,
                last_new=last_new,
                done_since=done_since,
                pending=0 if done_since is None else follower.pending,
                stopped=self.stop.is_set(),
            )
            if idle.stopped:
                return EndReason.STOPPED
            limit = wait_limit(rules, idle, slice_secs=SLICE, drain_grace=self.drain_grace)
            checkpoint = follower.next_checkpoint(timeout=limit)
            if checkpoint is not None:
                last_new = clock.now()
                reason = self._evaluate_one(checkpoint)
                if reason is not None:
                    return reason
                waiting_since = clock.now()
                continue
            action, reason = when_idle(
                rules,
                Idle(
                    now=clock.now(),
                    waiting_since=waiting_since,
                    last_new=last_new,
                    done_since=done_since,
                    pending=0 if done_since is None else follower.pending,
                    stopped=self.stop.is_set(),
                ),
                drain_grace=self.drain_grace,
            )
            if action is IdleAction.END and reason is not None:
                if reason is EndReason.STALLED:
                    logger.warning(
                        "%s: no new checkpoint for %g s (stall_timeout); training seems to have "
                        "stopped without saying it was done",
                        self.name,
                        rules.stall_timeout,
                    )
                return reason
            if action is IdleAction.ASK_TIMEOUT_FN:
                logger.info("%s: no new checkpoint for %g s", self.name, rules.timeout)
                if self.timeout_fn is None or self.timeout_fn():
                    return EndReason.TIMEOUT
                waiting_since = clock.now()

    def _training_done(self, look_for_marker: bool) -> bool:
        if self.finish.is_set():
            logger.info("%s: finish() called; evaluating what is complete, then ending", self.name)
            return True
        if self.done_marker is None or not look_for_marker:
            return False
        try:
            found = self.storage.exists(self.done_marker)
        except Exception as exc:
            self.errors.record(exc)
            logger.warning(
                "%s: could not look for the done marker %r; will look again",
                self.name,
                self.done_marker,
                exc_info=True,
            )
            return False
        if found:
            logger.info(
                "%s: done marker %r found; evaluating what is complete, then ending",
                self.name,
                self.storage.join(self.done_marker),
            )
        return found

    def _evaluate_one(self, checkpoint: Checkpoint) -> EndReason | None:
        """Evaluate ``checkpoint`` with retries; the reason to end, if any."""
        clock = self.clock
        started = clock.now()
        attempts = 0
        while True:
            attempts += 1
            self.state.begin(checkpoint, attempts)
            self.progress.send(Evaluating(self.progress.checkpoint_dir, checkpoint, attempts))
            logger.info(
                "%s: evaluating %r (step %s), attempt %d",
                self.name,
                checkpoint.path,
                checkpoint.step,
                attempts,
            )
            try:
                value = self.evaluate(checkpoint)
            except Exception as exc:
                stopping = self.stop.is_set()
                then, delay = after_failure(
                    self.policy,
                    attempts,
                    stopping=stopping,
                    retryable=isinstance(exc, self.retry_on),
                    still_there=stopping or self._still_there(checkpoint),
                )
                if then is AfterFailure.RETRY:
                    logger.warning(
                        "%s: evaluating %r (step %s) failed (attempt %d of %d); trying again "
                        "in %.3g s",
                        self.name,
                        checkpoint.path,
                        checkpoint.step,
                        attempts,
                        self.policy.max_attempts,
                        delay,
                        exc_info=(type(exc), exc, exc.__traceback__),
                    )
                    if clock.wait(self.stop, delay):
                        return self._interrupted(checkpoint, exc)
                    continue
                if then is AfterFailure.INTERRUPTED:
                    return self._interrupted(checkpoint, exc)
                seconds = clock.now() - started
                return self._failed(checkpoint, exc, then, attempts, seconds)
            except BaseException:
                self.state.interrupted()
                raise
            seconds = clock.now() - started
            record = Evaluation(checkpoint, Outcome.EVALUATED, value, None, attempts, seconds)
            logger.info(
                "%s: evaluated %r (step %s) in %.3f s",
                self.name,
                checkpoint.path,
                checkpoint.step,
                seconds,
            )
            return self._finished(record)

    def _interrupted(self, checkpoint: Checkpoint, exc: BaseException) -> EndReason:
        self.state.interrupted()
        logger.warning(
            "%s: evaluation of %r (step %s) interrupted by a stop (%s: %s); not recorded as "
            "finished, so a restarted evaluator evaluates it again",
            self.name,
            checkpoint.path,
            checkpoint.step,
            type(exc).__name__,
            exc,
        )
        return EndReason.STOPPED

    def _failed(
        self,
        checkpoint: Checkpoint,
        exc: Exception,
        then: AfterFailure,
        attempts: int,
        seconds: float,
    ) -> EndReason | None:
        info = (type(exc), exc, exc.__traceback__)
        if then is AfterFailure.DELETED:
            logger.warning(
                "%s: %r (step %s) was deleted before it could be evaluated (attempt %d failed "
                "with the error below); going on",
                self.name,
                checkpoint.path,
                checkpoint.step,
                attempts,
                exc_info=info,
            )
            gone: Evaluation[T] = Evaluation(
                checkpoint, Outcome.DELETED, None, exc, attempts, seconds
            )
            return self._finished(gone)
        retried = isinstance(exc, self.retry_on)
        add_note(
            exc,
            f"evaluating checkpoint {checkpoint.path!r} (step {checkpoint.step}) failed after "
            f"{attempts} attempt(s){'' if retried else ' (an error not in retry_on)'}",
        )
        self.errors.record(exc)
        logger.error(
            "%s: evaluating %r (step %s) failed %d time(s); %s",
            self.name,
            checkpoint.path,
            checkpoint.step,
            attempts,
            "going on" if self.on_error is OnError.CONTINUE else "stopping (on_error='stop')",
            exc_info=info,
        )
        failed: Evaluation[T] = Evaluation(checkpoint, Outcome.FAILED, None, exc, attempts, seconds)
        reason = self._finished(failed)
        return EndReason.FAILED if self.on_error is OnError.STOP else reason

    def _finished(self, record: Evaluation[T]) -> EndReason | None:
        """Record a finished checkpoint (state file too), tell on_result; the reason to end."""
        self.follower.done(record.checkpoint)
        with self.state.lock:
            self.results.append(record)
        finished = self.state.finish(record)
        if self.on_result is not None:
            try:
                self.on_result(record)
            except Exception as exc:
                add_note(exc, f"raised by on_result() for {record.checkpoint.path!r}")
                self.errors.record(exc)
                logger.error("%s: on_result() raised", self.name, exc_info=True)
        self.progress.send(Evaluated(self.progress.checkpoint_dir, record))
        if record.outcome is Outcome.DELETED:
            return None
        return end_after_checkpoint(self.rules, finished, record.step)

    def _still_there(self, checkpoint: Checkpoint) -> bool:
        """Whether every file of ``checkpoint`` still exists (a held copy always does)."""
        if checkpoint.held:
            return True
        prefix = self.storage.join("")
        try:
            for path in checkpoint.files:
                if path.startswith(prefix) and not self.storage.exists(path[len(prefix) :]):
                    return False
        except Exception:  # cannot tell: assume it is there, and retry as planned
            logger.warning("could not tell whether %r still exists", checkpoint, exc_info=True)
        return True
