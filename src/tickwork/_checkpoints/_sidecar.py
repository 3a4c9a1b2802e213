"""SidecarEvaluator: follow a checkpoint directory and evaluate every checkpoint, framework-free.

What ``tf.keras.utils.SidecarEvaluator`` was, for any framework and without its failure modes:
it never skips by default, retries a checkpoint whose evaluation failed (then reports it and goes
on), ends when training is done (a done marker, :meth:`SidecarEvaluator.finish`, a stall limit,
TensorFlow's ``timeout``/``timeout_fn``) and resumes after a restart. This module is the
consumer's thread and lifecycle; the loop is :mod:`._sidecar_loop`'s, the decisions
:mod:`._sidecar_policy`'s, the records :mod:`._evaluation`'s, the waiting the follower's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from .. import _fork
from .._clock import Clock, any_stop, as_waitable, check_clock
from .._errors import ErrorLog, add_note, group_or_single
from .._lifecycle import RunsInWith, ThreadLifecycle
from .._timed_thread import OnError
from .._validate import check_choice, check_int, check_optional_nonnegative
from ._checkpoint import Checkpoint
from ._evaluation import Evaluation, RunState, SidecarStats
from ._follower import EvaluatorFollower, StopArgument
from ._options import FollowOptions, FollowSettings, follow_options, takes_settings
from ._progress import FollowingEnded, OnProgress, Progress, check_on_progress
from ._sidecar_loop import EvaluationLoop
from ._sidecar_policy import EndReason, EndRules, RetryPolicy, check_done_marker, check_retry_on
from ._storage import open_storage

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SidecarEvaluator"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_R = RetryPolicy()
# The evaluator's own default: every checkpoint, in step order.
_SIDECAR_DEFAULTS = {"skip_to_latest": False}


class SidecarEvaluator(RunsInWith, Generic[T]):
    """Calls ``evaluate(checkpoint)`` for every checkpoint written to ``checkpoint_dir``.

    Args:
        checkpoint_dir: a local directory or an fsspec URL (``s3://bucket/run``), in any layout
            :class:`CheckpointFollower` follows; it may not exist yet.
        evaluate: called with each :class:`Checkpoint` (a ``str`` path with ``.step``), in step
            order, in the evaluator's thread. What it returns is kept (see ``keep_results``) and
            handed to ``on_result``. If it raises, the checkpoint is tried again (below).
        skip_to_latest: False (default here): every complete checkpoint, once, in step order.
            True: only the newest each time (tf_keras's behaviour); passed-over ones counted.
        max_evaluations: end after this many checkpoints are finished (evaluated or failed).
        until_step: end after finishing a checkpoint at this step or later (what tf_keras's
            ``max_evaluations`` meant: ``ckpt-<n>``).
        timeout, timeout_fn: TensorFlow's: after ``timeout`` seconds without a new checkpoint,
            end; with ``timeout_fn``, call it, end if it returns true, else wait again. As
            there: 0 or negative is no wait, infinite no limit (NaN is an error).
        done_marker: the name of a file that training writes into ``checkpoint_dir`` when it is
            done (looked for through the same storage, local or remote). Once it is there, every
            checkpoint complete by then is evaluated and the evaluator ends.
        stall_timeout: end (as ``stalled``) when no new checkpoint came for this many seconds,
            counted from the last one handed out: training seems to have died.
        max_attempts: attempts per checkpoint, the first included (1: no retry).
        backoff, backoff_factor, backoff_max: the wait before attempt ``n + 1`` is
            ``backoff * backoff_factor ** (n - 1)`` seconds, at most ``backoff_max``; a stop
            ends it at once.
        retry_on: the exception types to retry (default: every Exception); others fail at once.
        on_error: after a checkpoint failed every attempt (logged, counted, kept):
            ``"continue"`` (default) goes on with the next; ``"stop"`` ends the evaluator.
        on_result: called with each :class:`Evaluation` once its checkpoint is finished
            (evaluated, failed, or deleted between attempts), in the evaluator's thread.
        on_progress: called with a :class:`ProgressEvent` each time what the evaluator does
            changes: :class:`Waiting` (with ``missing`` while the directory does not exist),
            :class:`CheckpointFound`, :class:`Evaluating` (each attempt), :class:`Evaluated`
            (each finished checkpoint) and :class:`FollowingEnded`; in the evaluator's thread.
            For a progress bar or your own log lines, with or without logging configured.
        keep_results: how many of the latest :class:`Evaluation` records :meth:`results` keeps.
        stop: a :class:`threading.Event` or a Coordinator; once set, the evaluator ends (any wait
            within 50 ms; an ``evaluate`` call in progress is not interrupted).
        state_file: a local JSON file recording the last checkpoint finished: a restarted
            evaluator neither evaluates one again nor skips one; one whose evaluation was
            interrupted is evaluated again.
        name: the thread's name (default ``SidecarEvaluator(<checkpoint_dir>)``).
        daemon: whether the thread of :meth:`start` is a daemon thread.
        clock: the clock to wait on (tests use :class:`tickwork.testing.FakeClock`).
        options: every follow setting (``skip_to_latest`` and ``state_file`` included) as one
            :class:`FollowOptions` record, instead of keywords.
        **settings: the other follow settings, as keywords: ``layout``, ``hold``, ``hold_dir``,
            ``watch``, ``poll_interval``, ``max_poll_interval``, ``settle_secs``,
            ``latest_filename``, ``storage_options`` (see :class:`FollowOptions`).

    Run it in the calling thread with :meth:`run`, or in its own thread with :meth:`start` (then
    :meth:`finish`, :meth:`stop`, :meth:`join`), or as a context manager (which starts it, and on
    leaving evaluates what training has written and ends; on an exception it stops at once).
    An evaluator runs once. Bad arguments raise here, naming the argument.
    """

    @takes_settings(**_SIDECAR_DEFAULTS)
    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        evaluate: Callable[[Checkpoint], T],
        *,
        max_evaluations: int | None = None,
        until_step: int | None = None,
        timeout: float | None = None,
        timeout_fn: Callable[[], object] | None = None,
        done_marker: str | None = None,
        stall_timeout: float | None = None,
        max_attempts: int = _R.max_attempts,
        backoff: float = _R.backoff,
        backoff_factor: float = _R.backoff_factor,
        backoff_max: float = _R.backoff_max,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        on_error: OnError | str = OnError.CONTINUE,
        on_result: Callable[[Evaluation[T]], object] | None = None,
        on_progress: OnProgress | None = None,
        keep_results: int = 1000,
        stop: StopArgument = None,
        name: str | None = None,
        daemon: bool = True,
        clock: Clock | None = None,
        options: FollowOptions | None = None,
        **settings: Unpack[FollowSettings],
    ) -> None:
        if not callable(evaluate):
            raise TypeError(f"'evaluate' must be callable; got {evaluate!r}")
        if timeout_fn is not None and not callable(timeout_fn):
            raise TypeError(f"'timeout_fn' must be callable or None; got {timeout_fn!r}")
        if timeout_fn is not None and timeout is None:
            raise ValueError(
                "'timeout_fn' needs a 'timeout' (it is called after each timeout); got timeout=None"
            )
        if on_result is not None and not callable(on_result):
            raise TypeError(f"'on_result' must be callable or None; got {on_result!r}")
        on_progress = check_on_progress(on_progress)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"'name' must be a non-empty str or None; got {name!r}")
        if not isinstance(daemon, bool):
            raise TypeError(f"'daemon' must be a bool; got {daemon!r}")
        clock_ = check_clock(clock)
        on_error = check_choice("on_error", on_error, OnError)
        retry_types = check_retry_on(retry_on)
        marker = check_done_marker(done_marker)
        rules = EndRules(timeout, stall_timeout, max_evaluations, until_step)
        policy = RetryPolicy(max_attempts, backoff, backoff_factor, backoff_max)
        results: deque[Evaluation[T]] = deque(
            maxlen=check_int("keep_results", keep_results, minimum=0)
        )
        follow = follow_options(options, settings, _SIDECAR_DEFAULTS)
        user_stop = as_waitable(stop)
        storage = open_storage(checkpoint_dir, follow.storage_options)
        self._lifecycle = ThreadLifecycle(
            self,
            once=True,
            refusal="an evaluator runs once (make another: with state_file= it goes on where "
            "this one ended)",
        )
        self._own_stop = self._lifecycle.stop_event
        stop_either = any_stop(self._own_stop, user_stop)
        assert stop_either is not None
        follower = EvaluatorFollower(
            storage,
            stop=user_stop,
            own_stop=self._own_stop,
            clock=clock_,
            options=follow,
            on_progress=on_progress,
        )
        self._follower = follower
        self.name = name or f"SidecarEvaluator({follower.checkpoint_dir})"
        self._state = RunState()
        self._errors = ErrorLog()
        self._progress = Progress(on_progress, follower.checkpoint_dir, clock_, self._errors)
        self._loop = EvaluationLoop(
            name=self.name,
            follower=follower,
            storage=storage,
            evaluate=evaluate,
            rules=rules,
            policy=policy,
            retry_on=retry_types,
            on_error=on_error,
            on_result=on_result,
            progress=self._progress,
            timeout_fn=timeout_fn,
            done_marker=marker,
            stop=stop_either,
            finish=threading.Event(),
            clock=clock_,
            state=self._state,
            errors=self._errors,
            results=results,
        )
        self._daemon = daemon
        _fork.track(self)

    # -- running ----------------------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> str:
        """The directory (or fsspec URL) it evaluates the checkpoints of."""
        return self._follower.checkpoint_dir

    def run(self) -> SidecarStats:
        """Evaluate checkpoints in the calling thread until the evaluator ends; return the
        statistics (``end_reason`` says why it ended).

        Failed checkpoints do not raise here (see :meth:`raise_errors`); an exception that is
        not an :class:`Exception` raised by ``evaluate`` (KeyboardInterrupt) propagates, and
        that checkpoint is not recorded as finished.
        """
        self._claim()
        self._main()
        return self.statistics()

    def start(self) -> None:
        """Run the evaluator in its own thread (named after what it follows); returns at once."""
        self._lifecycle.start(self._thread_main, name=self.name, daemon=self._daemon)

    def _claim(self) -> None:
        self._lifecycle.claim()

    def _thread_main(self, own_stop: object = None) -> None:
        try:
            self._main()
        except BaseException as exc:
            add_note(exc, f"raised in thread {self.name!r}")
            self._errors.record(exc)
            logger.error(
                "%s: ended by %s",
                self.name,
                type(exc).__name__,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    def stop(self, *, wait: bool = False, timeout: float | None = None) -> bool:
        """End now: any wait ends at once; an ``evaluate`` call in progress is left to finish
        (it counts if it returns; if it raises, the checkpoint is evaluated again after a
        restart). With ``wait``, wait for the thread (at most ``timeout`` s). True once ended."""
        return self._lifecycle.stop(wait=wait, timeout=timeout)

    def finish(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """Training is done: evaluate every checkpoint complete by now, then end (as a done marker
        does). With ``wait`` (default), wait for that (at most ``timeout`` s). True once ended."""
        timeout = check_optional_nonnegative("timeout", timeout)
        self._loop.finish.set()
        return self.join(timeout) if wait else not self.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` real seconds) for the thread to end; True when it has (or
        was never started). It does not ask it to end: see :meth:`finish` and :meth:`stop`."""
        return self._lifecycle.join(timeout)

    def is_alive(self) -> bool:
        """True while the thread that :meth:`start` began is running."""
        return self._lifecycle.is_alive()

    def _leave(self, error: BaseException | None) -> None:
        if error is None:
            self.finish(wait=True)
        else:
            self.stop(wait=True)

    # -- what happened ----------------------------------------------------------------------------

    def statistics(self) -> SidecarStats:
        """What the evaluator has done so far (safe to call from any thread)."""
        return self._state.snapshot(self._follower.statistics(), self._errors.count)

    def results(self) -> tuple[Evaluation[T], ...]:
        """The latest ``keep_results`` evaluations finished, oldest first."""
        with self._state.lock:
            return tuple(self._loop.results)

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """The exceptions kept (the first 64), oldest first: each failed checkpoint's last error,
        and errors of ``on_result`` and of done-marker look-ups."""
        return self._errors.kept()

    def raise_errors(self) -> None:
        """Re-raise, in the calling thread, what was kept (nothing if nothing failed): one
        exception as itself with its original traceback, several as an ExceptionGroup."""
        kept, count = self._errors.kept(), self._errors.count
        more = f" ({count} in all, the first {len(kept)} kept)" if count > len(kept) else ""
        error = group_or_single(f"{self.name}: {count} errors{more}", kept)
        if error is not None:
            raise error

    @property
    def end_reason(self) -> EndReason | None:
        """Why the evaluator ended; None while it runs or before it starts."""
        return self.statistics().end_reason

    def __repr__(self) -> str:
        reason = self._state.end_reason
        state = "running" if self._lifecycle.started and reason is None else (reason or "new")
        return (
            f"<SidecarEvaluator {self._follower.checkpoint_dir!r} {getattr(state, 'value', state)}>"
        )

    # -- the loop ---------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            reason = self._loop.run()
        except BaseException:
            self._state.end(EndReason.ERROR)
            self._progress.send(FollowingEnded(self.checkpoint_dir, EndReason.ERROR))
            raise
        finally:
            self._follower.close()
        self._state.end(reason)
        logger.info("%s: ended (%s); %s", self.name, reason.value, self.statistics())
        self._progress.send(FollowingEnded(self.checkpoint_dir, reason))

    # -- fork safety ------------------------------------------------------------------------------

    def _running_thread_names(self) -> list[str]:
        return self._lifecycle.running_thread_names()

    def _after_fork_in_child(self) -> None:
        self._lifecycle.reinit_after_fork()
        self._errors.reinit_after_fork()
        self._state.reinit_after_fork()
