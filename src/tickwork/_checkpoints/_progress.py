"""The progress hook: what a follower and an evaluator are doing, as typed events.

``on_progress=`` on :func:`tickwork.checkpoints_iterator`, :class:`tickwork.CheckpointFollower`
and :class:`tickwork.SidecarEvaluator` is called with one :class:`ProgressEvent` each time what
they do changes: waiting for a checkpoint (:class:`Waiting`), a checkpoint found complete
(:class:`CheckpointFound`), an attempt to evaluate it (:class:`Evaluating`), its evaluation
finished (:class:`Evaluated`), the end (:class:`FollowingEnded`). It is called in the thread
doing the work, so it must be quick: update a progress bar, log a line, set a flag. An exception
it raises is logged with its traceback (the first few times, then summarised) and the work goes
on; logging need not be configured for any of this to reach you.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._clock import Clock
from .._errors import ErrorLog, LogThrottle
from ._checkpoint import Checkpoint
from ._evaluation import Evaluation
from ._sidecar_policy import EndReason

__all__ = [
    "CheckpointFound",
    "Evaluated",
    "Evaluating",
    "FollowingEnded",
    "OnProgress",
    "ProgressEvent",
    "Waiting",
    "check_on_progress",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """What every progress event carries: ``checkpoint_dir``, the directory (or URL) followed.
    Match on the subclass (``isinstance`` or ``match``) to tell them apart."""

    checkpoint_dir: str


@dataclass(frozen=True)
class Waiting(ProgressEvent):
    """Nothing to hand out now: waiting for the next checkpoint. Sent when waiting begins, and
    again when ``missing`` changes (not at every look). ``missing``: the directory does not
    exist (yet); it is waited for."""

    missing: bool = False


@dataclass(frozen=True)
class CheckpointFound(ProgressEvent):
    """``checkpoint`` is complete and is being handed out (to the loop, or to evaluation)."""

    checkpoint: Checkpoint


@dataclass(frozen=True)
class Evaluating(ProgressEvent):
    """A :class:`tickwork.SidecarEvaluator` calls ``evaluate(checkpoint)``; ``attempt`` counts
    from 1 (retries send it again)."""

    checkpoint: Checkpoint
    attempt: int


@dataclass(frozen=True)
class Evaluated(ProgressEvent):
    """A checkpoint is finished (evaluated, failed every attempt, or deleted first): the
    :class:`tickwork.Evaluation` record ``on_result`` gets too."""

    evaluation: Evaluation[Any]


@dataclass(frozen=True)
class FollowingEnded(ProgressEvent):
    """The iterator or the evaluator has ended, for ``reason`` (a :class:`tickwork.EndReason`:
    ``timeout`` or ``stopped`` for an iterator)."""

    reason: EndReason


OnProgress: TypeAlias = Callable[[ProgressEvent], object]
"""What ``on_progress=`` takes: a callable given each :class:`ProgressEvent`."""


def check_on_progress(on_progress: object) -> OnProgress | None:
    """``on_progress`` if it is None or callable; TypeError naming it otherwise."""
    if on_progress is not None and not callable(on_progress):
        raise TypeError(f"'on_progress' must be callable or None; got {on_progress!r}")
    return on_progress


class Progress:
    """Sends events to one ``on_progress`` callable (or nowhere), never letting its errors out."""

    def __init__(
        self,
        callback: OnProgress | None,
        checkpoint_dir: str,
        clock: Clock,
        errors: ErrorLog | None = None,
    ) -> None:
        self._callback = callback
        self.checkpoint_dir = checkpoint_dir
        self._clock = clock
        self._errors = errors
        self._failures = 0
        self._log = LogThrottle(logger, "on_progress()")

    @property
    def wanted(self) -> bool:
        """Whether anyone listens (events need not be built otherwise)."""
        return self._callback is not None

    def send(self, event: ProgressEvent) -> None:
        callback = self._callback
        if callback is None:
            return
        try:
            callback(event)
        except Exception as exc:
            self._failures += 1
            if self._errors is not None:
                self._errors.record(exc)
            self._log.failed(self, exc, self._failures, self._clock.now(), "going on")

    def __repr__(self) -> str:
        return f"<on_progress for {self.checkpoint_dir!r}>"
