"""CheckpointFollower: follow a checkpoint directory and hand out each checkpoint when complete.

The class underneath :func:`tickwork.checkpoints_iterator`, for consumers that want more control
(a sidecar evaluator): ``next_checkpoint(timeout)``, ``done()``, ``latest()``, ``statistics()``.
How the directory is watched is :mod:`._view`'s job; what is in it, :mod:`._tracker`'s; which
checkpoint comes next, :mod:`._policy`'s. This module adds the consumer's side: handing out,
holds, the resume file and statistics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from .. import _fork
from .._clock import MONOTONIC, Clock, Waitable, as_waitable
from .._errors import ErrorLog
from .._validate import (
    check_choice,
    check_nonnegative,
    check_optional_nonnegative,
    check_positive,
)
from ._checkpoint import Checkpoint, FollowerStats
from ._counters import Counters
from ._hold import Holder
from ._layouts import CheckpointPattern, Layout
from ._policy import SortKey, sort_key
from ._resume import ResumeFileError, ResumePoint, load_resume, save_resume
from ._storage import Storage, open_storage
from ._tfstate import DEFAULT_STATE_FILENAME
from ._tracker import Tracker
from ._view import DirectoryView, Watch
from ._watch import watchfiles_available

__all__ = ["CheckpointFollower", "Watch"]

logger = logging.getLogger(__name__)

# Event-driven: pending checkpoints (files being written) are looked at again at least this often
# even without an event, and directories waiting for a marker inside are polled this often.
_PENDING_RECHECK = 0.5
_MARKER_POLL = 0.05
# Remote: the default ceiling of the polling backoff, as a multiple of poll_interval.
_REMOTE_BACKOFF_CEILING = 10.0


def _check_layout(layout: object) -> Layout | CheckpointPattern:
    if isinstance(layout, CheckpointPattern):
        return layout
    return check_choice("layout", layout, Layout)


class CheckpointFollower:
    """Follows ``checkpoint_dir`` and hands out its checkpoints once complete.

    Args:
        checkpoint_dir: a local directory, or a URL fsspec understands (``s3://bucket/run``).
            It may not exist yet: it is waited for.
        layout: ``"auto"`` (detected from the first entries that identify one), or
            ``"tensorflow"``, ``"orbax"``, ``"huggingface"``, ``"keras"``, ``"torch"``, or a
            :class:`CheckpointPattern`.
        skip_to_latest: True (TensorFlow's behaviour): hand out the newest complete checkpoint,
            passing over older ones not handed out yet (counted as skipped). False: every
            complete checkpoint once, in step order, however fast they come or however slow the
            consumer is.
        stop: a :class:`threading.Event` or a Coordinator; once set, waits end (within
            milliseconds) and :meth:`next_checkpoint` returns None.
        state_file: a local JSON file recording the last checkpoint finished (see :meth:`done`);
            a restarted follower goes on after it, neither repeating nor skipping.
        hold: hard-link each checkpoint handed out into ``hold_dir`` and hand out that copy, so
            that training deleting it (``max_to_keep``) cannot pull it from under the consumer.
            Local directories only (see :mod:`tickwork._checkpoints._hold`).
        hold_dir: where holds go (default ``<checkpoint_dir>/.tickwork-hold``); it must be on
            the same filesystem.
        watch: for local directories, ``"events"`` (filesystem events through watchfiles: only
            what changed is examined), ``"poll"`` (a listing every ``poll_interval``: what
            network filesystems need, as inotify misses other machines' writes), or ``"auto"``
            (polls network filesystems, and when watchfiles is not installed). Remote
            directories are always polled.
        poll_interval: seconds between listings when polling (and the first interval of the
            remote backoff).
        max_poll_interval: the ceiling of the backoff while nothing changes; default
            ``poll_interval`` locally (no backoff), ten times it for remote storage.
        settle_secs: a file whose format records nothing about its completeness (legacy torch
            pickles, custom formats), or a directory with no commit marker, counts as complete
            once unchanged this long.
        latest_filename: the TensorFlow state file's name (default ``"checkpoint"``).
        storage_options: passed to fsspec for remote directories (credentials, endpoint).
        clock: the clock to wait on (tests use :class:`tickwork.testing.FakeClock`).

    Raises at once for bad arguments (naming the argument), and when ``checkpoint_dir`` exists
    but is a file or cannot be listed.
    """

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        *,
        layout: Layout | str | CheckpointPattern = Layout.AUTO,
        skip_to_latest: bool = True,
        stop: object = None,
        state_file: str | os.PathLike[str] | None = None,
        hold: bool = False,
        hold_dir: str | os.PathLike[str] | None = None,
        watch: Watch | str = Watch.AUTO,
        poll_interval: float = 1.0,
        max_poll_interval: float | None = None,
        settle_secs: float = 1.0,
        latest_filename: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        _storage: Storage | None = None,
    ) -> None:
        if _storage is None:
            if not isinstance(checkpoint_dir, (str, os.PathLike)):
                raise TypeError(
                    f"'checkpoint_dir' must be a str or os.PathLike; got {checkpoint_dir!r}"
                )
            directory = os.fspath(checkpoint_dir)
            if not isinstance(directory, str) or not directory:
                raise ValueError(
                    f"'checkpoint_dir' must be a non-empty path; got {checkpoint_dir!r}"
                )
            _storage = open_storage(directory, storage_options)
        storage = _storage  # tests pass scripted storages
        self._layout = _check_layout(layout)
        if not isinstance(skip_to_latest, bool):
            raise TypeError(f"'skip_to_latest' must be a bool; got {skip_to_latest!r}")
        if not isinstance(hold, bool):
            raise TypeError(f"'hold' must be a bool; got {hold!r}")
        self._watch = check_choice("watch", watch, Watch)
        self._poll_interval = check_positive("poll_interval", poll_interval)
        ceiling = check_optional_nonnegative("max_poll_interval", max_poll_interval)
        if ceiling is None:
            ceiling = self._poll_interval * (_REMOTE_BACKOFF_CEILING if storage.remote else 1.0)
        if ceiling < self._poll_interval:
            raise ValueError(
                f"'max_poll_interval' must be >= poll_interval ({self._poll_interval!r}); "
                f"got {max_poll_interval!r}"
            )
        self._max_poll_interval = ceiling
        self._settle = check_nonnegative("settle_secs", settle_secs)
        if latest_filename is not None and (
            not isinstance(latest_filename, str) or not latest_filename or "/" in latest_filename
        ):
            raise ValueError(f"'latest_filename' must be a file name; got {latest_filename!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"'clock' must be a tickwork Clock or None; got {clock!r}")
        if storage.remote and self._watch is Watch.EVENTS:
            raise ValueError(
                f"'watch' must be 'auto' or 'poll' for a remote directory ({storage.directory!r}:"
                " filesystem events do not exist there); got 'events'"
            )
        if self._watch is Watch.EVENTS and not watchfiles_available():
            raise ImportError("watch='events' needs watchfiles: pip install 'tickwork[watch]'")
        if hold and storage.remote:
            raise ValueError(
                f"'hold' needs a local checkpoint_dir (hard links do not exist on "
                f"{storage.protocol}://); got hold=True for {storage.directory!r}"
            )
        self._storage = storage
        self._skip_to_latest = skip_to_latest
        self._stop: Waitable | None = as_waitable(stop)
        self._clock = clock or MONOTONIC
        self._state_filename = latest_filename or DEFAULT_STATE_FILENAME
        self._state_file = None if state_file is None else os.fspath(state_file)
        self._holder = (
            Holder(storage.directory, None if hold_dir is None else os.fspath(hold_dir))
            if hold
            else None
        )
        self._counters = Counters()
        self._errors = ErrorLog()
        self._closed = False
        self._retry_now = False
        self._current: Checkpoint | None = None
        self._current_point: ResumePoint | None = None
        self._last_step: int | None = None
        self._resumed = self._load_resume()
        floor = None if self._resumed is None else sort_key(self._resumed.step, self._resumed.key)
        self._high_water: SortKey | None = floor
        self._tracker = Tracker(
            storage,
            layout=self._layout,
            state_filename=self._state_filename,
            settle=self._settle,
            clock=self._clock,
            counters=self._counters,
            errors=self._errors,
            skip_to_latest=skip_to_latest,
            floor=floor,
            pending_recheck=_PENDING_RECHECK,
            marker_poll=_MARKER_POLL,
        )
        self._view = DirectoryView(
            storage,
            self._tracker,
            watch=self._watch,
            poll_interval=self._poll_interval,
            max_poll_interval=self._max_poll_interval,
            clock=self._clock,
            stop=self._stop,
            counters=self._counters,
            errors=self._errors,
            on_present=self._on_present,
        )
        _fork.track(self)
        self._validate_directory()

    def _validate_directory(self) -> None:
        """Refuse at once a checkpoint_dir that exists but is a file or cannot be listed (a
        missing one is waited for; other errors are left to the first look)."""
        try:
            self._storage.probe()
        except (NotADirectoryError, PermissionError):
            raise
        except Exception as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            logger.warning(
                "could not look at %r yet; will retry", self._storage.directory, exc_info=True
            )

    # -- resume -----------------------------------------------------------------------------------

    def _load_resume(self) -> ResumePoint | None:
        if self._state_file is None:
            return None
        try:
            point = load_resume(self._state_file, self._storage.directory)
        except ResumeFileError as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            logger.error("starting afresh: %s", exc, exc_info=True)
            return None
        if point is not None:
            logger.info(
                "resuming after checkpoint %r (step %s) recorded in %r",
                point.path,
                point.step,
                self._state_file,
            )
        return point

    # -- the public surface -----------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> str:
        return self._storage.directory

    @property
    def stopped(self) -> bool:
        """True once the stop signal is set or the follower is closed."""
        return self._closed or (self._stop is not None and self._stop.is_set())

    def next_checkpoint(self, timeout: float | None = None) -> Checkpoint | None:
        """Wait for the next checkpoint and hand it out; None on timeout or stop.

        Marks the checkpoint handed out before as done (see :meth:`done`). ``timeout`` (None:
        no limit) is kept to within a few milliseconds.
        """
        timeout = check_optional_nonnegative("timeout", timeout)
        self._check_usable()
        self.done()
        deadline = None if timeout is None else self._clock.now() + timeout
        while True:
            if self.stopped:
                return None
            self._view.refresh()
            found = self._hand_out()
            if found is not None:
                return found
            if self._retry_now:
                continue
            if deadline is not None and self._clock.now() >= deadline:
                return None
            self._view.sleep(deadline)

    def start(self, timeout: float | None = None) -> bool:
        """Start following now, rather than at the first :meth:`next_checkpoint`, and wait (at
        most ``timeout`` seconds) until nothing written from now on can be missed: the directory
        exists and, when watching for events, the watch is in place. True once so; False on
        timeout or stop (a missing directory is still waited for by the next call)."""
        timeout = check_optional_nonnegative("timeout", timeout)
        self._check_usable()
        deadline = None if timeout is None else self._clock.now() + timeout
        while not self.stopped:
            self._view.refresh()
            if self._view.ready:
                return True
            if deadline is not None and self._clock.now() >= deadline:
                return False
            self._view.sleep(deadline)
        return False

    def done(self, checkpoint: Checkpoint | None = None) -> None:
        """The consumer has finished with the checkpoint handed out last.

        Records it in ``state_file`` (if any) and releases its hold (if any). Called by
        :meth:`next_checkpoint` for the previous checkpoint; call it yourself to record progress
        before asking for the next one. ``checkpoint``, if given, must be the one handed out.
        """
        current = self._current
        if current is None:
            return
        if checkpoint is not None and checkpoint is not current and checkpoint != current:
            raise ValueError(
                f"'checkpoint' must be the checkpoint handed out last ({current!r}); "
                f"got {checkpoint!r}"
            )
        self._current = None
        point, self._current_point = self._current_point, None
        if self._holder is not None:
            self._holder.release(current)
        if self._state_file is not None and point is not None:
            try:
                save_resume(self._state_file, self._storage.directory, self.layout, point)
            except OSError as exc:
                self._errors.record(exc)
                self._counters.add(errors=1)
                logger.error("could not record progress in %r", self._state_file, exc_info=True)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint now (not handed out, nothing recorded), or None."""
        self._check_usable()
        self._view.refresh()
        candidate = self._tracker.latest()
        return None if candidate is None else self._tracker.checkpoint(candidate)

    @property
    def layout(self) -> str | None:
        """The layout in use (``"tensorflow"``, ...), None until detected."""
        scheme = self._tracker.scheme
        return None if scheme is None else scheme.layout

    @property
    def mode(self) -> str:
        """``"events"``, ``"poll"``, ``"remote"``, or ``"waiting"`` (for the directory)."""
        return self._view.mode

    def statistics(self) -> FollowerStats:
        """What the follower has done so far."""
        counts = self._counters.snapshot()
        return FollowerStats(
            **counts,
            pending=self._tracker.pending,
            mode=self._view.mode,
            layout=self.layout,
            last_step=self._last_step,
            resumed_from=None if self._resumed is None else self._resumed.step,
        )

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """The errors met while following (logged as they happened), oldest first."""
        return self._errors.kept()

    def close(self) -> None:
        """Stop watching and release the hold (the checkpoint is not recorded as done)."""
        self._closed = True
        self._view.close()
        current, self._current = self._current, None
        if current is not None and self._holder is not None:
            self._holder.release(current)
        self._storage.close()

    def __enter__(self) -> CheckpointFollower:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<CheckpointFollower {self._storage.directory!r} layout={self.layout} "
            f"mode={self._view.mode}{' closed' if self._closed else ''}>"
        )

    # -- following --------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _hand_out(self) -> Checkpoint | None:
        self._retry_now = False
        candidate = self._tracker.choose(
            skip_to_latest=self._skip_to_latest, high_water=self._high_water
        )
        if candidate is None:
            return None
        checkpoint = self._tracker.checkpoint(candidate)
        if self._holder is not None:
            try:
                checkpoint = self._holder.hold(checkpoint, sorted(candidate.members))
            except FileNotFoundError:
                self._counters.add(deleted_before_reached=1)
                logger.warning(
                    "checkpoint %r was deleted before it could be held; going on", checkpoint
                )
                self._retry_now = True
                return None
        if self._high_water is None or candidate.order > self._high_water:
            self._high_water = candidate.order
        self._counters.add(yielded=1)
        self._last_step = candidate.step
        self._current = checkpoint
        self._current_point = ResumePoint(candidate.key, candidate.step, checkpoint.source)
        logger.info("checkpoint %r (step %s) is complete", checkpoint.source, candidate.step)
        return checkpoint

    def _on_present(self) -> None:
        if self._holder is not None:
            self._holder.prepare()

    def _abandon(self) -> None:
        """Stop the watcher without waiting (an abandoned iterator's finaliser)."""
        self._closed = True
        self._view.abandon()

    # -- fork safety ------------------------------------------------------------------------------

    def _running_thread_names(self) -> list[str]:
        return self._view.running_thread_names()

    def _after_fork_in_child(self) -> None:
        self._counters.reinit_after_fork()
        self._errors.reinit_after_fork()
        self._view.after_fork_in_child()
