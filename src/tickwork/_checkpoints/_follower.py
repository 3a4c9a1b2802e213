"""CheckpointFollower: follow a checkpoint directory and hand out each checkpoint when complete.

One round of following (:meth:`CheckpointFollower.next_checkpoint`) is the route of a checkpoint,
top to bottom: :mod:`._watching` looks (events from :mod:`._events`, or a listing);
:mod:`._directory` turns what it saw into candidates; :mod:`._completeness` assesses them;
:mod:`._next` chooses the next one; this module hands it out (held and recorded through
:mod:`._consumer`).
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import TYPE_CHECKING, TypeAlias

from .. import _fork
from .._clock import Clock, any_stop, as_waitable, check_clock, relayed_stop
from .._errors import ErrorLog
from .._protocols import StopSignal, Waitable
from .._sync import SignalSafeEvent
from .._validate import check_optional_nonnegative
from ._checkpoint import Checkpoint, Counters, FollowerStats
from ._completeness import Judge
from ._consumer import Holder, ResumeFile, ResumePoint
from ._directory import Directory, Update
from ._events import default_backend
from ._layouts import sort_key
from ._next import Queue
from ._options import FollowOptions, FollowSettings, Watch, follow_options, takes_settings
from ._progress import CheckpointFound, OnProgress, Progress, Waiting, check_on_progress
from ._storage import Storage, open_storage
from ._tfstate import DEFAULT_STATE_FILENAME
from ._watching import Watching

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["CheckpointFollower", "EvaluatorFollower", "StopArgument"]

logger = logging.getLogger(__name__)

StopArgument: TypeAlias = StopSignal
"""What ``stop=`` accepts: a :class:`threading.Event` (any :class:`tickwork.Waitable`), a
Coordinator (anything with ``should_stop()`` and ``wait_for_stop()``), or None."""

# Event-driven: pending checkpoints (files being written) are looked at again at least this often
# even without an event, and directories waiting for a marker inside are polled this often.
_PENDING_RECHECK = 0.5
_MARKER_POLL = 0.05
# Remote: the default ceiling of the polling backoff, as a multiple of poll_interval.
_REMOTE_BACKOFF_CEILING = 10.0


class CheckpointFollower:
    """Follows ``checkpoint_dir`` and hands out its checkpoints once complete.

    ``checkpoint_dir``: a local directory, or a URL fsspec understands (``s3://bucket/run``); it
    may not exist yet (it is waited for). The settings are :class:`FollowOptions`'s keyword
    arguments (``skip_to_latest=False``, ``watch="poll"``, ...), or one record as ``options``
    (not both). ``stop``: a :class:`threading.Event` or
    a Coordinator; once set, waits end (within milliseconds) and :meth:`next_checkpoint`
    returns None. ``clock``: the clock to wait on (tests use
    :class:`tickwork.testing.FakeClock`). ``on_progress``: called with a :class:`Waiting` event
    when :meth:`next_checkpoint` starts waiting (again when the directory's ``missing`` changes)
    and a :class:`CheckpointFound` for each checkpoint handed out (see :class:`ProgressEvent`).

    Raises at once for bad arguments (naming the argument), and when ``checkpoint_dir`` exists
    but is a file or cannot be listed.
    """

    @takes_settings()
    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        *,
        stop: StopArgument = None,
        clock: Clock | None = None,
        options: FollowOptions | None = None,
        on_progress: OnProgress | None = None,
        **settings: Unpack[FollowSettings],
    ) -> None:
        chosen = follow_options(options, settings)
        storage = open_storage(checkpoint_dir, chosen.storage_options)
        self._build(storage, stop=stop, clock=clock, options=chosen, on_progress=on_progress)

    def _build(
        self,
        storage: Storage,
        *,
        stop: StopArgument,
        clock: Clock | None,
        options: FollowOptions,
        on_progress: OnProgress | None,
        own_stop: SignalSafeEvent | None = None,
    ) -> None:
        """The constructor's work, on ``storage`` (opened by the caller), with the owner's own
        stop beside the user's (see :class:`EvaluatorFollower`)."""
        self._options = options
        self._clock = check_clock(clock)
        if storage.remote and options.watch is Watch.EVENTS:
            raise ValueError(
                f"'watch' must be 'auto' or 'poll' for a remote directory ({storage.directory!r}:"
                " filesystem events do not exist there); got 'events'"
            )
        # Resolved here, once: tests replace the module-level factory with scripted events.
        backend = None if storage.remote else default_backend()
        if options.watch is Watch.EVENTS and backend is None:
            raise ImportError(
                "watch='events' needs inotify (Linux) or watchfiles (pip install watchfiles)"
            )
        if options.hold and storage.remote:
            raise ValueError(
                f"'hold' needs a local checkpoint_dir (hard links do not exist on "
                f"{storage.protocol}://); got hold=True for {storage.directory!r}"
            )
        ceiling = options.max_poll_interval
        if ceiling is None:
            factor = _REMOTE_BACKOFF_CEILING if storage.remote else 1.0
            ceiling = options.poll_interval * factor
        self._max_poll_interval = ceiling
        self._storage = storage
        user_stop = as_waitable(stop)
        self._stop: Waitable | None = any_stop(user_stop, own_stop)
        # What waits wait on: one tickwork event, set by any stop (no polling while idle).
        self._relay = relayed_stop(user_stop, own_stop, name=storage.directory)
        self._state_filename = options.latest_filename or DEFAULT_STATE_FILENAME
        self._holder = Holder(storage.directory, options.hold_dir) if options.hold else None
        self._counters = Counters()
        self._errors = ErrorLog()
        self._progress = Progress(
            check_on_progress(on_progress), storage.directory, self._clock, self._errors
        )
        self._waiting_said: bool | None = None  # the `missing` of the Waiting event sent last
        self._closed = False
        self._retry_now = False
        self._current: Checkpoint | None = None
        self._current_point: ResumePoint | None = None
        self._last_step: int | None = None
        self._resume_file = (
            None
            if options.state_file is None
            else ResumeFile(options.state_file, storage.directory, self._errors, self._counters)
        )
        self._resumed = None if self._resume_file is None else self._resume_file.load()
        floor = None if self._resumed is None else sort_key(self._resumed.step, self._resumed.key)
        self._directory = Directory(
            storage,
            layout=options.layout,
            state_filename=self._state_filename,
            skip_to_latest=options.skip_to_latest,
            floor=floor,
            counters=self._counters,
            errors=self._errors,
        )
        self._judge = Judge(
            self._directory,
            settle=options.settle_secs,
            marker_poll=_MARKER_POLL,
            pending_recheck=_PENDING_RECHECK,
            clock=self._clock,
            counters=self._counters,
            errors=self._errors,
        )
        self._queue = Queue(
            self._directory,
            self._judge,
            skip_to_latest=options.skip_to_latest,
            floor=floor,
            counters=self._counters,
            clock=self._clock,
            abandon_secs=options.abandon_secs,
        )
        self._watching = Watching(
            storage,
            watch=options.watch,
            poll_interval=options.poll_interval,
            max_poll_interval=ceiling,
            clock=self._clock,
            stop=self._relay.event,
            counters=self._counters,
            errors=self._errors,
            backend=backend,
            poll_stop=self._stop,  # a poll's wait blocks on the stop itself: one hop fewer
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

    # -- the public surface -----------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> str:
        """The directory (or fsspec URL) being followed, as given."""
        return self._storage.directory

    @property
    def options(self) -> FollowOptions:
        """The settings it follows with (read-only)."""
        return self._options

    @property
    def max_poll_interval(self) -> float:
        """The ceiling of the polling backoff in use (``options.max_poll_interval`` resolved)."""
        return self._max_poll_interval

    @property
    def stop_signal(self) -> Waitable | None:
        """The stop signal it was given (a Coordinator's as a :class:`tickwork.Waitable`)."""
        return self._stop

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
                self._watching.pause()
                return None
            self._refresh()
            found = self._hand_out()
            if found is not None:
                return found
            if self._retry_now:
                continue
            self._say_waiting()
            if deadline is not None and self._clock.now() >= deadline:
                return None
            self._sleep(deadline)

    def start(self, timeout: float | None = None) -> bool:
        """Start following now, rather than at the first :meth:`next_checkpoint`, and wait (at
        most ``timeout`` seconds) until nothing written from now on can be missed: the directory
        exists and, when watching for events, the watch is in place. True once so; False on
        timeout or stop (a missing directory is still waited for by the next call)."""
        timeout = check_optional_nonnegative("timeout", timeout)
        self._check_usable()
        deadline = None if timeout is None else self._clock.now() + timeout
        while not self.stopped:
            self._refresh()
            if self._watching.ready:
                return True
            if deadline is not None and self._clock.now() >= deadline:
                return False
            self._sleep(deadline)
        self._watching.pause()
        return False

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the directory may have changed, a checkpoint being written is due to be
        looked at again, ``timeout`` seconds pass (None: no limit) or a stop."""
        timeout = check_optional_nonnegative("timeout", timeout)
        self._sleep(None if timeout is None else self._clock.now() + timeout)

    def rescan(self) -> None:
        """Look at the whole directory now (a full listing, whatever the mode), so that what
        was written so far is known, events in flight included; nothing is handed out."""
        self._check_usable()
        self._watching.rescan_now()
        self._refresh()

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
        if self._resume_file is not None and point is not None:
            self._resume_file.save(self.layout, point)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint now (not handed out, nothing recorded), or None."""
        self._check_usable()
        self._refresh()
        candidate = self._queue.latest()
        return None if candidate is None else self._directory.checkpoint(candidate)

    @property
    def layout(self) -> str | None:
        """The layout in use (``"tensorflow"``, ...), None until detected."""
        scheme = self._directory.scheme
        return None if scheme is None else scheme.layout

    @property
    def mode(self) -> str:
        """``"events"``, ``"poll"``, ``"remote"``, or ``"waiting"`` (for the directory)."""
        return self._watching.mode

    @property
    def pending(self) -> int:
        """Checkpoints present now but not yet complete (being written)."""
        return self._judge.pending

    def statistics(self) -> FollowerStats:
        """What the follower has done so far."""
        return FollowerStats(
            **self._counters.snapshot(),
            pending=self._judge.pending,
            mode=self._watching.mode,
            missing=self._watching.missing,
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
        self._relay.close()
        self._watching.close()
        self._judge.error_log.flush(self._storage.directory, "no longer followed")
        current, self._current = self._current, None
        if current is not None and self._holder is not None:
            self._holder.release(current)
        self._storage.close()

    def abandon(self) -> None:
        """Stop watching without waiting for the watcher thread (for a finaliser)."""
        self._closed = True
        self._relay.close()
        self._watching.close(wait=False)

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
            f"mode={self._watching.mode}{' closed' if self._closed else ''}>"
        )

    # -- one round: look, take in, assess, choose, hand out ---------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _refresh(self) -> None:
        directory = self._directory
        directory.new_round()
        seen = self._watching.refresh()
        if seen.appeared:
            if self._holder is not None:
                self._holder.prepare()
            if seen.first_listing is not None:
                self._take(directory.apply_listing(seen.first_listing))
            directory.start_eager()
        if seen.lost:
            self._take(directory.reset())
        if seen.listing is not None:
            self._take(directory.apply_listing(seen.listing))
        if seen.names:
            self._take(directory.apply_changes(seen.names))
        if seen.looked:
            self._take(directory.forget(self._judge.take_vanished()))
            self._take(directory.read_state_if_changed())
            self._judge.process(recheck_pending=seen.polled)

    def _say_waiting(self) -> None:
        """A :class:`Waiting` event when waiting begins, or the directory comes or goes."""
        missing = self._watching.missing
        if self._waiting_said is not missing:
            self._waiting_said = missing
            self._progress.send(Waiting(self._storage.directory, missing=missing))

    def _take(self, update: Update) -> None:
        self._queue.note(update)  # before the judge forgets the statuses of removed ones
        self._judge.note(update)

    def _sleep(self, deadline: float | None) -> None:
        self._watching.sleep(deadline, self._judge.next_recheck())

    def _hand_out(self) -> Checkpoint | None:
        self._retry_now = False
        candidate = self._queue.choose()
        self._take(self._directory.forget(self._judge.take_vanished()))
        if candidate is None:
            return None
        checkpoint = self._directory.checkpoint(candidate)
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
        self._queue.handed_out(candidate)
        self._counters.add(yielded=1)
        self._last_step = candidate.step
        self._current = checkpoint
        self._current_point = ResumePoint(candidate.key, candidate.step, checkpoint.source)
        logger.info("checkpoint %r (step %s) is complete", checkpoint.source, candidate.step)
        self._waiting_said = None
        self._progress.send(CheckpointFound(self._storage.directory, checkpoint))
        return checkpoint

    # -- fork safety ------------------------------------------------------------------------------

    def _running_thread_names(self) -> list[str]:
        return self._watching.running_thread_names() + self._relay.running_thread_names()

    def _after_fork_in_child(self) -> None:
        self._counters.reinit_after_fork()
        self._errors.reinit_after_fork()
        self._judge.error_log.reinit_after_fork()
        self._relay.after_fork_in_child()
        self._watching.after_fork_in_child()


class EvaluatorFollower(CheckpointFollower):
    """The follower a :class:`tickwork.SidecarEvaluator` makes: on the evaluator's storage (it
    looks for the done marker through it too), with the evaluator's own stop beside the user's.
    Not public: :class:`CheckpointFollower`'s signature carries no such arguments."""

    def __init__(
        self,
        storage: Storage,
        *,
        stop: StopArgument,
        own_stop: SignalSafeEvent,
        clock: Clock | None,
        options: FollowOptions,
        on_progress: OnProgress | None,
    ) -> None:
        self._build(
            storage,
            stop=stop,
            clock=clock,
            options=options,
            on_progress=on_progress,
            own_stop=own_stop,
        )
