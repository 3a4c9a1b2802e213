"""TensorFlow's checkpoint functions, for every framework: ``checkpoints_iterator``,
``wait_for_new_checkpoint`` and ``latest_checkpoint``.

Same names, same positional arguments, same semantics as ``tf.train``'s, so migrating changes
only an import; everything beyond TensorFlow's behaviour is keyword-only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._clock import Clock, check_clock
from .._validate import check_lenient_seconds, check_lenient_timeout, check_nonnegative
from ._checkpoint import Checkpoint, FollowerStats
from ._follower import CheckpointFollower, StopArgument
from ._layouts import CheckpointPattern, Layout
from ._options import (
    DEFAULTS,
    FollowOptions,
    FollowSettings,
    Watch,
    follow_options,
    takes_settings,
)
from ._progress import FollowingEnded, OnProgress, Progress, check_on_progress
from ._sidecar_policy import EndReason

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "CheckpointIterator",
    "checkpoints_iterator",
    "latest_checkpoint",
    "wait_for_new_checkpoint",
]

logger = logging.getLogger(__name__)

_D = DEFAULTS


class CheckpointIterator(Iterator[Checkpoint]):
    """What :func:`checkpoints_iterator` returns: an iterator of :class:`Checkpoint` (a ``str``).

    Beyond iteration: :meth:`statistics`, :meth:`done` (record the current checkpoint as
    finished without asking for the next), :meth:`close`, the :attr:`follower`, and use as a
    context manager (which closes it).

    A checkpoint counts as finished when the loop asks for the next one. One whose loop body
    raised or broke out of the loop is not recorded in ``state_file``, so a restarted consumer
    gets it again (at least once, never lost).
    """

    def __init__(
        self,
        follower: CheckpointFollower,
        *,
        min_interval_secs: float,
        timeout: float | None,
        timeout_fn: Callable[[], object] | None,
        clock: Clock,
        on_progress: OnProgress | None = None,
    ) -> None:
        self._follower = follower
        self._progress = Progress(on_progress, follower.checkpoint_dir, clock)
        self._min_interval = min_interval_secs
        self._timeout = timeout
        self._timeout_fn = timeout_fn
        self._clock = clock
        self._last_yield: float | None = None
        self._finished = False

    @property
    def follower(self) -> CheckpointFollower:
        """The :class:`CheckpointFollower` doing the work, for its options and controls."""
        return self._follower

    def __iter__(self) -> CheckpointIterator:
        return self

    def __next__(self) -> Checkpoint:
        if self._finished:
            raise StopIteration
        follower = self._follower
        follower.done()
        if self._last_yield is not None and self._min_interval > 0:
            remaining = self._last_yield + self._min_interval - self._clock.now()
            if remaining > 0 and self._clock.wait(follower.stop_signal, remaining):
                self._finish()
        while True:
            checkpoint = follower.next_checkpoint(self._timeout)
            if checkpoint is not None:
                self._last_yield = self._clock.now()
                return checkpoint
            if follower.stopped:
                self._finish(EndReason.STOPPED)
            if self._timeout_fn is None:
                logger.info("Timed-out waiting for a checkpoint.")
                self._finish(EndReason.TIMEOUT)
            elif self._timeout_fn():
                self._finish(EndReason.TIMEOUT)

    def _finish(self, reason: EndReason = EndReason.STOPPED) -> None:
        self.close()
        self._progress.send(FollowingEnded(self._follower.checkpoint_dir, reason))
        raise StopIteration

    def done(self) -> None:
        """Record the checkpoint handed out last as finished (:meth:`CheckpointFollower.done`)."""
        self._follower.done()

    def statistics(self) -> FollowerStats:
        """What the follower has seen so far (:meth:`CheckpointFollower.statistics`)."""
        return self._follower.statistics()

    def close(self) -> None:
        """Stop following. The checkpoint being consumed is not recorded as finished."""
        self._finished = True
        self._follower.close()

    def __enter__(self) -> CheckpointIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned iterator must not leave its watcher thread running.
        follower = getattr(self, "_follower", None)
        if follower is not None and not follower.stopped:
            follower.abandon()

    def __repr__(self) -> str:
        return f"<CheckpointIterator over {self._follower!r}>"


@takes_settings()
def checkpoints_iterator(
    checkpoint_dir: str | os.PathLike[str],
    min_interval_secs: float = 0,
    timeout: float | None = None,
    timeout_fn: Callable[[], object] | None = None,
    *,
    stop: StopArgument = None,
    clock: Clock | None = None,
    options: FollowOptions | None = None,
    on_progress: OnProgress | None = None,
    **settings: Unpack[FollowSettings],
) -> CheckpointIterator:
    """Continuously yield new checkpoints as they appear, like ``tf.train.checkpoints_iterator``.

    Args:
        checkpoint_dir: the directory (or fsspec URL) in which checkpoints are saved. A missing
            directory is waited for.
        min_interval_secs: the minimum number of seconds between yielding checkpoints (counted
            from one yield to the next, the consumer's time included). 0 or negative: no wait
            (as in TensorFlow); infinite: the first checkpoint, then a wait for ``stop``.
        timeout: the maximum number of seconds to wait between checkpoints (None or infinite:
            forever), kept to within a few milliseconds. 0 or negative: one look each time
            (as in TensorFlow). NaN is an error for both.
        timeout_fn: called after a timeout with no arguments; if it returns true the iterator
            stops, otherwise it waits again (the timeout applies again). Without it, the
            iterator stops at the first timeout.
        skip_to_latest: True (TensorFlow's behaviour) yields the newest checkpoint each time,
            skipping older ones not yielded yet; False yields every complete checkpoint once,
            in step order.
        options: every follow setting (``skip_to_latest`` included) as one
            :class:`FollowOptions` record, instead of keywords.
        **settings: the other follow settings, as keywords: ``layout``, ``state_file``,
            ``hold``, ``hold_dir``, ``watch``, ``poll_interval``, ``max_poll_interval``,
            ``settle_secs``, ``latest_filename``, ``storage_options`` (see
            :class:`FollowOptions`).
        stop, clock: see :class:`CheckpointFollower`.
        on_progress: called with a :class:`ProgressEvent` as the iterator works:
            :class:`Waiting` (``missing`` while the directory does not exist),
            :class:`CheckpointFound` for each checkpoint yielded, :class:`FollowingEnded` at the
            end (timeout or stop). For a progress bar or your own log lines.

    Yields:
        :class:`Checkpoint` objects: the checkpoint path as a ``str`` (for TensorFlow layouts
        the prefix TensorFlow returns), with ``.step``, ``.layout`` and ``.files``. Only
        complete checkpoints are ever yielded.

    Bad arguments raise here, not at the first ``next()``.
    """
    # TensorFlow's meanings: a negative value is no wait; an infinite timeout never times out.
    min_interval = check_lenient_seconds("min_interval_secs", min_interval_secs)
    timeout = check_lenient_timeout("timeout", timeout)
    if timeout_fn is not None and not callable(timeout_fn):
        raise TypeError(f"'timeout_fn' must be callable or None; got {timeout_fn!r}")
    on_progress = check_on_progress(on_progress)
    follower = CheckpointFollower(
        checkpoint_dir,
        stop=stop,
        clock=clock,
        options=follow_options(options, settings),
        on_progress=on_progress,
    )
    return CheckpointIterator(
        follower,
        min_interval_secs=min_interval,
        timeout=timeout,
        timeout_fn=timeout_fn,
        clock=check_clock(clock),
        on_progress=on_progress,
    )


def wait_for_new_checkpoint(
    checkpoint_dir: str | os.PathLike[str],
    last_checkpoint: str | None = None,
    seconds_to_sleep: float = _D.poll_interval,
    timeout: float | None = None,
    *,
    layout: Layout | str | CheckpointPattern = _D.layout,
    stop: StopArgument = None,
    watch: Watch | str = _D.watch,
    settle_secs: float = _D.settle_secs,
    latest_filename: str | None = _D.latest_filename,
    storage_options: Mapping[str, Any] | None = _D.storage_options,
    clock: Clock | None = None,
    options: FollowOptions | None = None,
) -> Checkpoint | None:
    """Wait until a checkpoint other than ``last_checkpoint`` is the latest one, and return it.

    As ``tf.train.wait_for_new_checkpoint``: returns the latest complete checkpoint as soon as
    its path differs from ``last_checkpoint``; None when ``timeout`` seconds pass first (or
    ``stop`` is set). ``timeout`` 0 or negative: one look; None or infinite: no limit.
    ``seconds_to_sleep`` is the polling interval where the directory is polled; 0 lists it back
    to back, as TensorFlow does, each look checking ``stop``. Event-driven watching reacts to
    each change at once whatever the interval, and does not poll: there 0 costs no CPU. NaN or a
    negative ``seconds_to_sleep`` is an error. The other keywords are :class:`FollowOptions`'s
    (``options``: all of them as one record, ``seconds_to_sleep`` included as ``poll_interval``).
    """
    # TensorFlow's meanings: 0 is back to back; a negative timeout is one look, an infinite one
    # never times out. A negative sleep stays an error (time.sleep raises it in TensorFlow).
    interval = check_nonnegative("seconds_to_sleep", seconds_to_sleep)
    timeout = check_lenient_timeout("timeout", timeout)
    last = None if last_checkpoint is None else os.fspath(last_checkpoint)
    given: dict[str, object] = {
        "layout": layout,
        "watch": watch,
        "poll_interval": interval,
        "settle_secs": settle_secs,
        "latest_filename": latest_filename,
        "storage_options": storage_options,
    }
    changed = {name: value for name, value in given.items() if value != getattr(_D, name)}
    chosen = follow_options(options, changed)
    clock_ = check_clock(clock)
    with CheckpointFollower(checkpoint_dir, stop=stop, clock=clock_, options=chosen) as follower:
        logger.info("Waiting for new checkpoint at %s", follower.checkpoint_dir)
        deadline = None if timeout is None else clock_.now() + timeout
        while not follower.stopped:
            found = follower.latest()
            if found is not None and found.path != last:
                logger.info("Found new checkpoint at %s", found)
                return found
            if deadline is not None and clock_.now() >= deadline:
                break
            follower.wait(None if deadline is None else max(0.0, deadline - clock_.now()))
    return None


def latest_checkpoint(
    checkpoint_dir: str | os.PathLike[str],
    latest_filename: str | None = None,
    *,
    layout: Layout | str | CheckpointPattern = _D.layout,
    storage_options: Mapping[str, Any] | None = _D.storage_options,
) -> Checkpoint | None:
    """The latest complete checkpoint in ``checkpoint_dir`` now, or None (also when the directory
    does not exist).

    For TensorFlow layouts it is what ``tf.train.latest_checkpoint`` returns: the state file's
    ``model_checkpoint_path``, joined to the directory when relative, if its files exist. For the
    other layouts, the complete checkpoint with the highest step. ``settle_secs`` does not apply
    to a single look: files whose format cannot be checked count as complete.
    """
    with CheckpointFollower(
        checkpoint_dir,
        layout=layout,
        watch=Watch.POLL,
        settle_secs=0.0,
        latest_filename=latest_filename,
        storage_options=storage_options,
    ) as follower:
        return follower.latest()
