"""What the Lightning, Hugging Face and Keras callbacks share, framework-free.

A :class:`TrainerLink` is driven by a callback's hooks: :meth:`~TrainerLink.begin` when training
starts, :meth:`~TrainerLink.should_stop` at each step boundary, :meth:`~TrainerLink.final_save`
with the trainer's own saving code once a stop is seen, :meth:`~TrainerLink.end` when training
has ended (also on the error path). It owns

* the stop: a tickwork stop source (a Coordinator or anything with ``should_stop()``, an Event
  or anything with ``is_set()``) and, while training runs, signal handlers installed with
  :func:`tickwork.stop_on_signals` (the handlers already there, the trainer's own included, still
  run); a distributed Coordinator's ``should_stop_at(step)`` is used when it has one, so that
  every rank stops at the same step;
* the final checkpoint's deadline: counted from the signal's arrival (or from when the stop was
  first seen); a save is not started once it has passed, and one that overruns it is left to
  finish in its own thread while training ends;
* the periodic work (TimedThreads, a tuner): started at train begin, stopped at train end, their
  errors raised then;
* the done marker: written by the process that saves, after the last checkpoint, saying how
  training ended (:func:`tickwork.mark_training_done`);
* the ranks, when the trainer runs distributed (:meth:`~TrainerLink.begin` with
  ``distributed=True``, once the process group exists) and no distributed Coordinator was given:
  a :class:`tickwork.distributed.Coordinator` made on the job's own store, which takes the
  signals (a signal on any rank stops every rank at the same step), forwards a local stop
  (an Event, a local Coordinator) to every rank, skips the collective final save when the job is
  failing (a rank died or raised: the save would hang), and at the end carries the error that
  started the failure to the saving rank, whose marker names it (not the collective's
  "connection closed" that the saver sees).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypedDict

from .._clock import MONOTONIC, Clock, stop_check
from .._deadline import run_until
from .._done_marker import (
    DEFAULT_DONE_MARKER,
    TrainingEnd,
    TrainingStatus,
    clear_done_marker,
    mark_training_done,
)
from .._errors import group_or_single
from .._signals import SignalStop, stop_on_signals
from .._sync import SignalSafeEvent
from .._timed_thread import TimedThread
from .._tuning._tuner import StepsPerExecutionTuner
from .._validate import check_optional_nonnegative

__all__ = ["FinalSave", "LinkOptions", "LinkSettings", "LinkedCallback", "TrainerLink"]

logger = logging.getLogger(__name__)

# Seconds each periodic thread gets to finish its call in progress at train end.
_BACKGROUND_JOIN = 10.0
# Seconds the rank that hosts the store waits for its peers to leave at train end: long for a
# clean end (its peers are finishing the same step), short when training failed (a peer may be
# blocked in a collective until this process exits and closes its connections).
_LEAVE_CLEAN = 60.0
_LEAVE_FAILED = 3.0


class FinalSave:
    """What became of the final checkpoint (``TrainerLink.final_checkpoint``)."""

    NOT_REQUESTED = "not requested"  # training was not stopped, or final_checkpoint=False
    SAVED = "saved"
    ALREADY_SAVED = "already saved"  # the trainer had saved this step itself
    SKIPPED = "skipped: the deadline had passed"
    TIMED_OUT = "timed out: still being written when the deadline passed"
    FAILED = "failed"
    NOT_SAVER = "not this process (it does not save)"
    BY_TRAINER = "left to the trainer's own save at the end of the epoch"
    JOB_FAILING = (
        "skipped: the job is failing (a rank died or raised; a collective save would hang)"
    )


def make_coordinator(namespace: str, **options: Any) -> Any:
    """The Coordinator a link makes under distributed training: on the default process group's
    store (tests put ranks on a MemoryStore by replacing this function)."""
    from ..distributed import Coordinator

    return Coordinator(namespace=namespace, **options)


def _failing(source: object) -> bool:
    """A distributed Coordinator that saw a dead rank or an error (anything else: False)."""
    return bool(getattr(source, "dead_ranks", ())) or bool(
        getattr(source, "reported_exceptions", ())
    )


def _check_background(background: Iterable[object], *, allow_tuner: bool) -> tuple[Any, ...]:
    items = tuple(background)
    for item in items:
        if isinstance(item, StepsPerExecutionTuner) and not allow_tuner:
            raise TypeError(
                "'background' must not hold a StepsPerExecutionTuner here: Keras 3 cannot change "
                "steps_per_execution during fit() (see tickwork.integrations.keras); choose it "
                "before fit() with probe_steps_per_execution, or between fit() calls with "
                f"set_steps_per_execution; got {item!r}"
            )
        if not (callable(getattr(item, "start", None)) and callable(getattr(item, "stop", None))):
            raise TypeError(
                "'background' must hold TimedThreads, StepsPerExecutionTuners or other objects "
                f"with start() and stop(); got {item!r}"
            )
    return items


class LinkOptions(TypedDict, total=False):
    """The keyword options every ``TickworkCallback`` takes (the type of its ``**options``).

    What each does and its default: the callbacks' own docs and the trainer integrations guide.
    """

    done_marker: str | None
    storage_options: Mapping[str, Any] | None
    stop: object
    signals: Iterable[int | signal.Signals] | None
    final_checkpoint: bool
    save_deadline: float | None
    background: Iterable[object]
    clear_stale_marker: bool
    stall_timeout: float | Literal["auto"] | None
    stall_dir: str | os.PathLike[str] | None


class LinkSettings(LinkOptions, total=False):
    """:class:`LinkOptions` and ``checkpoint_dir``: what the Lightning and Hugging Face callbacks
    take (keyword-only)."""

    checkpoint_dir: str | os.PathLike[str] | None


class LinkedCallback:
    """What every TickworkCallback reports, read from its :class:`TrainerLink`."""

    _link: TrainerLink

    @property
    def training_end(self) -> TrainingEnd | None:
        """What the done marker said (None before it is written, and where nothing is saved)."""
        return self._link.training_end

    @property
    def final_checkpoint(self) -> str:
        """What became of the final checkpoint (a :class:`FinalSave` value)."""
        return self._link.final_checkpoint

    @property
    def stopped(self) -> bool:
        """True once a tickwork stop stopped the trainer."""
        return self._link.stopped

    @property
    def stop(self) -> object:
        """The stop source (``stop=``). Settable before training starts: a
        ``tickwork.distributed.Coordinator`` can only be made once the process group exists,
        which some trainers create inside ``fit()`` (Lightning: make it in your module's
        ``setup()`` and assign it here)."""
        return self._link.stop

    @stop.setter
    def stop(self, stop: object) -> None:
        self._link.set_stop(stop)

    @property
    def coordinator(self) -> Any:
        """The ``tickwork.distributed.Coordinator`` the callback made for distributed training
        (None when not distributed, when one was given as ``stop``, and after training)."""
        return self._link.coordinator


class TrainerLink:
    """The state one trainer callback keeps (see the module docs). Not thread-safe: its methods
    are called from the trainer's thread; only the stop sources are set from elsewhere."""

    def __init__(
        self,
        *,
        done_marker: str | None = DEFAULT_DONE_MARKER,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        stop: object = None,
        signals: Iterable[int | signal.Signals] | None = (signal.SIGTERM,),
        final_checkpoint: bool = True,
        save_deadline: float | None = None,
        background: Iterable[object] = (),
        clear_stale_marker: bool = True,
        stall_timeout: float | Literal["auto"] | None = None,
        stall_dir: str | os.PathLike[str] | None = None,
        allow_tuner: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if done_marker is not None:
            from .._checkpoints._sidecar_policy import check_done_marker

            check_done_marker(done_marker)
        if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise TypeError(
                f"'checkpoint_dir' must be a path, a URL or None; got {checkpoint_dir!r}"
            )
        if not isinstance(final_checkpoint, bool):
            raise TypeError(f"'final_checkpoint' must be a bool; got {final_checkpoint!r}")
        if not isinstance(clear_stale_marker, bool):
            raise TypeError(f"'clear_stale_marker' must be a bool; got {clear_stale_marker!r}")
        self.done_marker = done_marker
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.storage_options = storage_options
        self._given_stop: object = None
        self._user_stop: Callable[[], bool] | None = None
        self._stop_at: Callable[[int], object] | None = None
        self._stop_target: Any = None
        self.set_stop(stop)
        self.coordinator: Any = None  # the distributed Coordinator this link made, while training
        self._phase: contextlib.ExitStack | None = None  # the phase entered (enter_phase)
        self._rank: int | None = None  # this process's rank, in distributed training
        self._forward: Callable[[], bool] | None = None  # a local stop forwarded to every rank
        self.signals = tuple(signals or ())
        if self.signals:
            SignalStop(threading.Event(), self.signals)  # checks the signal numbers now
        self.final_checkpoint_wanted = final_checkpoint
        self.save_deadline = check_optional_nonnegative("save_deadline", save_deadline)
        self.background = _check_background(background, allow_tuner=allow_tuner)
        self.clear_stale_marker = clear_stale_marker
        if (stall_timeout is not None or stall_dir is not None) and getattr(
            stop, "should_stop_at", None
        ) is not None:
            raise ValueError(
                "'stall_timeout' and 'stall_dir' are for the Coordinator the callback makes; with "
                f"a distributed Coordinator as 'stop', give them to it; got stop={stop!r}, "
                f"stall_timeout={stall_timeout!r}, stall_dir={stall_dir!r}"
            )
        self.stall = {"stall_timeout": stall_timeout, "stall_dir": stall_dir}
        if stall_timeout is not None or stall_dir is not None:
            from ..distributed._coordinator import check_stall_settings

            check_stall_settings(stall_timeout, stall_dir)
        self._clock = clock or MONOTONIC
        self._signalled = SignalSafeEvent()  # the signals' target without a user stop target
        self._signalled_at: float | None = None  # kept once the handlers are gone
        self._signal_stop: SignalStop | None = None
        self._signals_seen: tuple[signal.Signals, ...] = ()
        self._started: list[Any] = []
        self._seen_at: float | None = None
        self.stopped = False
        self.final_checkpoint = FinalSave.NOT_REQUESTED
        self.final_save_thread: threading.Thread | None = None
        self.training_end: TrainingEnd | None = None
        self._ended = False

    def __getstate__(self) -> dict[str, Any]:
        """What a spawned rank gets (Lightning's ``ddp_spawn`` pickles the callbacks): the
        settings, none of this process's handlers, threads, events or Coordinator."""
        state = dict(self.__dict__)
        state.update(
            _signalled=None,
            _signal_stop=None,
            _started=[],
            coordinator=None,
            final_save_thread=None,
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._signalled = SignalSafeEvent()

    def set_stop(self, stop: object) -> None:
        """Use ``stop`` (see the class) from the next :meth:`begin` on."""
        self._user_stop = stop_check(stop)
        self._stop_at = getattr(stop, "should_stop_at", None)
        self._stop_target = stop if callable(getattr(stop, "request_stop", None)) else None
        self._given_stop = stop

    @property
    def stop(self) -> object:
        """The stop source given (``stop=`` or :meth:`set_stop`)."""
        return self._given_stop

    # -- train begin ------------------------------------------------------------------------------

    def begin(
        self, *, is_saver: bool, checkpoint_dir: str | None, distributed: bool = False
    ) -> None:
        """Training starts: remove a stale marker (the saver), join the other ranks
        (``distributed``: the process group exists and has more than one rank), install the
        signal handlers (main thread only), start the periodic work."""
        self._ended = False
        self.stopped = False
        self._seen_at = None
        self.final_checkpoint = FinalSave.NOT_REQUESTED
        self.training_end = None
        self._signalled = SignalSafeEvent()
        self._signalled_at = None
        self._signals_seen = ()
        if self.checkpoint_dir is None:
            self.checkpoint_dir = checkpoint_dir
        marker_dir = self.checkpoint_dir
        if is_saver and self.done_marker is not None and self.clear_stale_marker and marker_dir:
            clear_done_marker(marker_dir, self.done_marker, storage_options=self.storage_options)
        if distributed and self._stop_at is None:
            self._join_ranks()
        elif not distributed and self.stall["stall_timeout"] is not None:
            logger.warning(
                "stall_timeout=%r has no effect: training is not distributed (stall detection "
                "compares ranks)",
                self.stall["stall_timeout"],
            )
        elif self._stop_at is not None:
            rank = getattr(self._given_stop, "rank", None)
            self._rank = rank if isinstance(rank, int) else None
        if self.signals:
            if threading.current_thread() is threading.main_thread():
                target = self._stop_target if self._stop_target is not None else self._signalled
                handler = stop_on_signals(target, self.signals, clock=self._clock)
                handler.__enter__()
                self._signal_stop = handler
            else:
                logger.warning(
                    "training runs outside the main thread: no handler for %s is installed "
                    "(Python lets only the main thread set one)",
                    ", ".join(signal.Signals(s).name for s in self.signals),
                )
        try:
            for item in self.background:
                item.start()
                self._started.append(item)
        except BaseException:
            self._stop_background()
            self.restore_signals()
            self._leave_ranks(None)
            raise

    def _join_ranks(self) -> None:
        """Make the Coordinator every rank stops through (a rendezvous: every rank calls it)."""
        TrainerLink._trainings += 1
        coord = make_coordinator(f"trainer-{TrainerLink._trainings}", **self.stall)
        logger.info(
            "rank %d of %d: stops go through a tickwork.distributed.Coordinator on %s",
            coord.rank,
            coord.world_size,
            coord.store_description,
        )
        self.coordinator = coord
        self._rank = coord.rank
        # A local stop (an Event, a local Coordinator) is forwarded to every rank.
        target = self._stop_target
        self._forward = target.should_stop if target is not None else self._user_stop
        self._user_stop = None
        self._stop_at = coord.should_stop_at
        self._stop_target = coord

    _trainings = 0  # trainings this process has joined ranks for (each gets its own keys)

    # -- each step --------------------------------------------------------------------------------

    def should_stop(self, step: int | None = None) -> bool:
        """Whether training should stop now (at this step boundary)."""
        if self.stopped:
            return True
        if self._forward is not None and self._forward() and self.coordinator is not None:
            self.coordinator.request_stop()  # a local stop, for every rank
        if self._stop_at is not None and step is not None:
            requested = bool(self._stop_at(step))
        else:
            requested = self._signalled.is_set() or (
                self._user_stop is not None and self._user_stop()
            )
        if requested:
            self.stopped = True
            self._seen_at = self._clock.now()
            logger.info("tickwork stop seen at step %s: stopping the trainer", step)
            if self.job_failing():
                logger.error(
                    "the job is failing (%s): no final checkpoint (a collective save would hang "
                    "on the rank that is gone)",
                    self._failure_text(),
                )
                self.final_checkpoint = FinalSave.JOB_FAILING
        return requested

    def enter_phase(self, name: str) -> None:
        """Mark the trainer's evaluation (or another phase) on the distributed Coordinator, if
        training has one: its stall detection learns the phase's own timeout. Idempotent until
        :meth:`leave_phase`."""
        source = self.coordinator if self.coordinator is not None else self._given_stop
        phase = getattr(source, "phase", None)
        if phase is None or self._phase is not None:
            return
        stack = contextlib.ExitStack()
        stack.enter_context(phase(name))
        self._phase = stack

    def leave_phase(self) -> None:
        """End the phase :meth:`enter_phase` entered (nothing if none)."""
        stack, self._phase = self._phase, None
        if stack is not None:
            stack.close()

    def job_failing(self) -> bool:
        """Whether the distributed stop came from a failure (a dead rank, an error reported on
        some rank, the store gone) rather than a request: then no rank may start a collective."""
        if self._stop_at is None:
            return False
        return _failing(self.coordinator if self.coordinator is not None else self._given_stop)

    def _failure_text(self) -> str:
        source: Any = self.coordinator if self.coordinator is not None else self._given_stop
        dead = sorted(getattr(source, "dead_ranks", ()))
        if dead:
            return f"ranks {dead} are dead"
        reported = list(getattr(source, "reported_exceptions", ()))
        return f"{type(reported[0]).__name__}: {reported[0]}" if reported else "unknown"

    @property
    def wants_step(self) -> bool:
        """Whether :meth:`should_stop` needs the step (a distributed ``should_stop_at``)."""
        return self._stop_at is not None

    def received_signals(self) -> tuple[signal.Signals, ...]:
        """The signals caught while training ran."""
        handler = self._signal_stop
        return self._signals_seen if handler is None else handler.received

    # -- the final checkpoint ---------------------------------------------------------------------

    def remaining(self) -> float | None:
        """Seconds left before the save deadline (None: no deadline)."""
        if self.save_deadline is None:
            return None
        handler = self._signal_stop
        signalled = self._signalled_at if handler is None else handler.first_received_at
        start = signalled if signalled is not None else self._seen_at
        if start is None:
            start = self._clock.now()
        return start + self.save_deadline - self._clock.now()

    def final_save(self, save: Callable[[], object]) -> str:
        """Run ``save`` (the trainer's own saving code) once, within the deadline. ``save``
        returns False when the trainer had already saved this step (nothing new written)."""
        if not self.final_checkpoint_wanted or not self.stopped:
            return self.final_checkpoint
        if self.final_checkpoint is not FinalSave.NOT_REQUESTED:
            return self.final_checkpoint  # once
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            logger.warning(
                "final checkpoint not saved: the %g s deadline had passed when the stop was seen",
                self.save_deadline,
            )
            self.final_checkpoint = FinalSave.SKIPPED
            return self.final_checkpoint
        if remaining is None:
            try:
                result = save()
            except Exception:
                logger.exception("the final checkpoint failed")
                self.final_checkpoint = FinalSave.FAILED
                raise
            self.final_checkpoint = FinalSave.ALREADY_SAVED if result is False else FinalSave.SAVED
            return self.final_checkpoint
        return self._save_in_thread(save, remaining)

    def _save_in_thread(self, save: Callable[[], object], remaining: float) -> str:
        # Not a daemon: a save that overruns the deadline still finishes if the process lives.
        outcome = run_until(
            save,
            deadline=self._clock.now() + remaining,
            clock=self._clock,
            name="final checkpoint",
        )
        self.final_save_thread = outcome.thread
        if outcome.overran:
            logger.error(
                "the final checkpoint was still being written when the %g s deadline passed; "
                "training ends without waiting for it",
                self.save_deadline,
            )
            self.final_checkpoint = FinalSave.TIMED_OUT
        elif outcome.error is not None:
            logger.error("the final checkpoint failed", exc_info=outcome.error)
            self.final_checkpoint = FinalSave.FAILED
            raise outcome.error
        else:
            saved_before = outcome.result is False
            self.final_checkpoint = FinalSave.ALREADY_SAVED if saved_before else FinalSave.SAVED
        return self.final_checkpoint

    # -- train end --------------------------------------------------------------------------------

    def end(
        self,
        *,
        is_saver: bool,
        step: int | None,
        error: BaseException | None = None,
        checkpoint_dir: str | None = None,
        raise_background: bool = True,
    ) -> TrainingEnd | None:
        """Training has ended: restore the signal handlers, stop the periodic work, write the
        marker (the saver only). Raises the periodic work's errors when training itself did not
        fail (``raise_background``); with a training error they are logged."""
        if self._ended:
            return self.training_end
        self._ended = True
        self.restore_signals()
        if self.coordinator is not None or self._stop_at is not None:
            error = self._leave_ranks(error, is_saver=is_saver)
        background_error = self._stop_background()
        if error is None and background_error is not None:
            error = background_error
        elif background_error is not None:
            logger.error(
                "the periodic work failed too (training's own error is the one raised)",
                exc_info=background_error,
            )
        if self.checkpoint_dir is None:
            self.checkpoint_dir = checkpoint_dir
        if not is_saver and self.final_checkpoint is not FinalSave.NOT_REQUESTED:
            self.final_checkpoint = FinalSave.NOT_SAVER
        if is_saver and self.done_marker is not None:
            self._write_marker(step, error)
        if raise_background and background_error is not None:
            raise background_error
        return self.training_end

    def _leave_ranks(
        self, error: BaseException | None, *, is_saver: bool = False
    ) -> BaseException | None:
        """Training ended on this rank: report its error to every rank, and on the saver learn
        the error that started the failure (the first in the job's log); leave the job (a
        Coordinator this link made). Returns the error the marker should name."""
        own, self.coordinator = self.coordinator, None
        coord: Any = own if own is not None else self._given_stop
        if own is not None:
            self.set_stop(self._given_stop)  # the next training makes its own Coordinator
            self._forward = None
        from ..distributed import Coordinator
        from ..distributed._coordinator import first_failure

        if not isinstance(coord, Coordinator):
            return error
        failed = isinstance(error, Exception) or _failing(coord)
        try:
            if isinstance(error, Exception):
                try:
                    coord.request_stop(error)  # into the job's log, for every rank
                except Exception as raised:
                    if raised is not error:
                        raise
                    # the user's Coordinator was joined already: it reports by raising
                    logger.info("the Coordinator was joined already; %s is not posted", error)
            if is_saver and failed:
                first = first_failure(coord, error)
                if first is not error and first is not None:
                    if error is not None:
                        logger.error(
                            "training failed here with %s: %s; the failure started elsewhere: %s",
                            type(error).__name__,
                            error,
                            first,
                        )
                    error = first
        finally:
            if own is not None:
                own.close(_LEAVE_FAILED if failed else _LEAVE_CLEAN)
        return error

    def marker_written(self, checkpoint_dir: str | None) -> bool:
        """Whether a done marker exists now (written since training began: a stale one is
        removed when training begins)."""
        directory = self.checkpoint_dir or checkpoint_dir
        if self.done_marker is None or directory is None:
            return False
        from .._done_marker import read_training_end

        end = read_training_end(directory, self.done_marker, storage_options=self.storage_options)
        return end is not None

    def status_for(self, error: BaseException | None) -> TrainingStatus:
        """completed; stopped (a tickwork stop, or an interruption: KeyboardInterrupt,
        SystemExit); failed (an Exception)."""
        if error is not None and isinstance(error, Exception):
            return TrainingStatus.FAILED
        if error is not None or self.stopped or self.received_signals():
            return TrainingStatus.STOPPED
        return TrainingStatus.COMPLETED

    def _write_marker(self, step: int | None, error: BaseException | None) -> None:
        directory = self.checkpoint_dir
        if directory is None:
            logger.error(
                "no done marker written: the trainer has no checkpoint directory and none was "
                "given (checkpoint_dir=)"
            )
            return
        details: dict[str, Any] = {"final_checkpoint": self.final_checkpoint}
        received = self.received_signals()
        if received:
            details["signals"] = [s.name for s in received]
        assert self.done_marker is not None
        try:
            self.training_end = mark_training_done(
                directory,
                self.status_for(error),
                error=error,
                step=step,
                name=self.done_marker,
                details=details,
                storage_options=self.storage_options,
                rank=None if error is None else self._rank,
            )
        except Exception:
            if error is None:
                raise
            # Training already failed: its error is what the trainer raises; this one is logged.
            logger.exception("the done marker could not be written after training failed")

    def restore_signals(self) -> None:
        """Put back the signal handlers that were there when training began."""
        handler = self._signal_stop
        if handler is not None:
            self._signals_seen = handler.received  # still answered once the handlers are gone
            self._signalled_at = handler.first_received_at
            self._signal_stop = None
            handler.__exit__(None, None, None)

    def stop_background(self) -> None:
        """Stop the periodic work; raise what it raised."""
        error = self._stop_background()
        if error is not None:
            raise error

    def _stop_background(self) -> BaseException | None:
        errors: list[BaseException] = []
        started, self._started = self._started, []
        for item in started:
            try:
                if isinstance(item, TimedThread):
                    finished = item.stop(wait=True, timeout=_BACKGROUND_JOIN)
                elif isinstance(item, StepsPerExecutionTuner):
                    finished = item.stop(timeout=_BACKGROUND_JOIN)
                else:
                    finished = item.stop()
                if finished is False:
                    logger.warning("%r was still running %g s after stop()", item, _BACKGROUND_JOIN)
                raise_errors = getattr(item, "raise_errors", None)
                if callable(raise_errors):
                    raise_errors()
            except BaseException as exc:
                errors.append(exc)
        return group_or_single(f"the periodic work raised {len(errors)} exceptions", errors)
