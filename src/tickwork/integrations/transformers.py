"""Hugging Face ``Trainer``: one callback that tells the evaluator training ended, turns a tickwork
stop into the Trainer's own stop, and runs periodic work over ``train()``.

``Trainer(..., callbacks=[TickworkCallback()])`` and then ``tickwork follow OUTPUT_DIR
--done-marker DONE -- python eval.py {checkpoint}`` (each ``checkpoint-<step>`` directory is
complete once its ``trainer_state.json`` is there, which the Trainer writes after the weights).

What :class:`TickworkCallback` does, hook by hook (transformers 5.24):

* ``on_train_begin``: on the process that saves (``args.should_save``), removes a done marker
  left by an earlier run; installs a handler for ``signals`` that requests a tickwork stop (the
  handlers already there still run; the Trainer installs none); starts the ``background`` work;
  and, for the error path (the Trainer has no hook for it), chains ``sys.excepthook`` so that an
  exception leaving ``train()`` uncaught writes the marker ``failed`` with it, plus an ``atexit``
  fallback for a process that exits with training unfinished (an exception its caller caught).
* ``on_step_end``: once a stop is seen (a signal, ``stop``'s ``should_stop()``, a distributed
  Coordinator's ``should_stop_at(step)``), sets ``control.should_training_stop`` and, for the
  final checkpoint, ``control.should_save``: the Trainer saves ``checkpoint-<step>`` with its own
  code (weights, optimizer, scheduler, RNG, ``trainer_state.json``, rotation by
  ``save_total_limit``), right after this hook. That save runs in the Trainer's thread, so
  ``save_deadline`` cannot cut it short: it is not requested once the deadline has passed, and
  ``on_save`` records whether it finished in time.
* ``on_train_end`` (after the last save and the Trainer's own clean-up of checkpoints): stops the
  background work (raising its errors), restores the signal handlers and the excepthook, and
  writes the done marker into ``args.output_dir`` (unless ``checkpoint_dir`` is given).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import transformers

from .._public import publish as _publish
from ._trainer_link import FinalSave, LinkedCallback, LinkSettings, TrainerLink
from ._uncaught import UncaughtWatch

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TickworkCallback"]

logger = logging.getLogger(__name__)


class TickworkCallback(LinkedCallback, transformers.TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Tell the evaluator when training ended, stop on a tickwork stop, run periodic work.

    Args:
        done_marker: the marker's file name (``tickwork follow --done-marker`` / the
            evaluator's ``done_marker=``); None writes none.
        checkpoint_dir: where the marker goes (a path or an fsspec URL); default:
            ``args.output_dir``, where the Trainer saves its checkpoints.
        storage_options: fsspec options for a remote ``checkpoint_dir``.
        stop: a tickwork Coordinator (anything with ``should_stop()``; a distributed one's
            ``should_stop_at(step)`` is used when it has it) or an Event; setting it stops
            training at the next step boundary. Signals request a stop on it too when it has
            ``request_stop()``.
        signals: signals that stop training (default SIGTERM); ``()`` installs no handler.
        final_checkpoint: have the Trainer save a checkpoint when training is stopped.
        save_deadline: seconds from the stop request (the signal's arrival) for the final
            checkpoint: not requested once they have passed; an overrun is recorded.
        background: TimedThreads, StepsPerExecutionTuners or anything with ``start()`` and
            ``stop()``: started at train begin, stopped at train end, their errors raised then.
        clear_stale_marker: remove a marker left by an earlier run when training begins.
        stall_timeout, stall_dir: under distributed training, stall detection by the
            Coordinator the callback makes (see ``tickwork.distributed.Coordinator``; the
            callback marks progress every step); None (the default) turns it off. With it on,
            that Coordinator also names slow ranks (``callback.coordinator.slow_ranks``).
    """

    def __init__(self, **settings: Unpack[LinkSettings]) -> None:
        super().__init__()
        self._link = TrainerLink(**settings)
        self._is_saver = False
        self._step = 0
        self._save_requested = False
        self._uncaught = UncaughtWatch(self._fail)

    # -- hooks ------------------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Install the stop handlers, start the background work and watch for an uncaught error."""
        self._is_saver = bool(args.should_save)
        self._step = int(state.global_step)
        self._save_requested = False
        self._link.begin(
            is_saver=self._is_saver,
            checkpoint_dir=os.fspath(args.output_dir),
            distributed=_distributed(args),
        )
        self._uncaught.watch()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """After a stop request, set ``control.should_training_stop`` and ask for a final save."""
        self._step = int(state.global_step)
        if self._link.stopped or not self._link.should_stop(self._step):
            return
        control.should_training_stop = True
        if not self._link.final_checkpoint_wanted or self._link.job_failing():
            return
        remaining = self._link.remaining()
        if remaining is not None and remaining <= 0:
            logger.warning(
                "final checkpoint not requested: the %g s deadline had passed when the stop was "
                "seen",
                self._link.save_deadline,
            )
            self._link.final_checkpoint = FinalSave.SKIPPED
            return
        if control.should_save:
            logger.info(
                "the Trainer saves step %d anyway: that is the final checkpoint", self._step
            )
        control.should_save = True  # the Trainer saves checkpoint-<step> right after this hook
        self._save_requested = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record whether the final checkpoint the stop asked for was saved within the deadline."""
        if not self._save_requested:
            return
        self._save_requested = False
        remaining = self._link.remaining()
        if remaining is not None and remaining < 0:
            logger.error(
                "the final checkpoint took past the %g s deadline", self._link.save_deadline
            )
            self._link.final_checkpoint = FinalSave.TIMED_OUT
        else:
            self._link.final_checkpoint = FinalSave.SAVED

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Under DDP, mark evaluation as a phase for stall detection (its own timeout)."""
        self._link.enter_phase("evaluation")

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The evaluation phase ends."""
        self._link.leave_phase()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop the background work, restore the handlers and write the done marker."""
        self._uncaught.unwatch()
        self._link.leave_phase()
        self._link.end(
            is_saver=self._is_saver,
            step=int(state.global_step),
            checkpoint_dir=os.fspath(args.output_dir),
        )

    def _fail(self, error: BaseException) -> None:
        """The error path (an uncaught exception, or an exit with training unfinished)."""
        self._link.end(
            is_saver=self._is_saver, step=self._step, error=error, raise_background=False
        )


def _distributed(args: Any) -> bool:
    """More than one process, and torch.distributed's process group is up (the Trainer's
    arguments start it under torchrun and ``accelerate launch``)."""
    if int(getattr(args, "world_size", 1)) <= 1:
        return False
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


_publish(globals())
