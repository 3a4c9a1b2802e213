"""PyTorch Lightning: one callback that tells the evaluator training ended, turns a tickwork stop
into the Trainer's own stop, and runs periodic work over the fit.

``trainer = Trainer(callbacks=[ModelCheckpoint(dirpath=run_dir), TickworkCallback()])`` and then
``tickwork follow run_dir --done-marker DONE -- python eval.py {checkpoint}`` on another machine.

What :class:`TickworkCallback` does, hook by hook (Lightning 2.6):

* ``on_train_start`` (after Lightning has installed its own SIGTERM handler): on global rank 0,
  removes a done marker left by an earlier run; installs a handler for ``signals`` that requests a
  tickwork stop and then calls the handler that was there, Lightning's, which still logs, kills
  its launcher's children, sets ``trainer.received_sigterm`` and (Lightning's own behaviour) ends
  ``fit()`` with ``SIGTERMException`` at its next check; starts the ``background`` work.
* ``on_train_batch_end``: once a stop is seen (a signal, ``stop``'s ``should_stop()``, or a
  distributed Coordinator's ``should_stop_at(step)``, which every rank answers alike), sets
  ``trainer.should_stop`` (Lightning ends the epoch there, still honouring ``min_epochs`` and
  ``min_steps``) and saves a final checkpoint with ``trainer.save_checkpoint`` into the
  ModelCheckpoint's directory under its file name template, on every rank (the save is
  collective), within ``save_deadline``: before the ``SIGTERMException`` Lightning 2.6 raises
  right after a batch once it got SIGTERM. The ModelCheckpoints are told the step is saved
  (``_last_global_step_saved``, what they read to not save a step twice), so they do not save
  it again; an existing file of that name is not overwritten.
* ``on_train_end``: restores the signal handlers (before Lightning restores its own) and stops
  the background work, raising its errors.
* ``on_fit_end`` (after Lightning's teardown, so asynchronous checkpoint writes are done): writes
  the done marker on global rank 0, into the ModelCheckpoint's directory unless
  ``checkpoint_dir`` is given. ``on_exception``: the same on the error path, the marker saying
  ``failed`` (an Exception) or ``stopped`` (``SIGTERMException``, ``KeyboardInterrupt``).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

try:
    import lightning.pytorch as pl
except ImportError:  # the standalone pytorch_lightning package
    import pytorch_lightning as pl  # type: ignore[no-redef]

from .._public import publish as _publish
from ._trainer_link import LinkedCallback, LinkSettings, TrainerLink

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TickworkCallback"]

logger = logging.getLogger(__name__)


class TickworkCallback(LinkedCallback, pl.Callback):  # type: ignore[misc,unused-ignore]
    """Tell the evaluator when training ended, stop on a tickwork stop, run periodic work.

    Args:
        done_marker: the marker's file name (``tickwork follow --done-marker`` / the
            evaluator's ``done_marker=``); None writes none.
        checkpoint_dir: where the marker goes (a path or an fsspec URL); default: the
            ModelCheckpoint's ``dirpath``.
        storage_options: fsspec options for a remote ``checkpoint_dir``.
        stop: a tickwork Coordinator (anything with ``should_stop()``; a distributed one's
            ``should_stop_at(step)`` is used when it has it) or an Event; setting it stops the
            trainer at the next step boundary. Signals request a stop on it too when it has
            ``request_stop()``.
        signals: signals that stop training (default SIGTERM); ``()`` installs no handler.
        final_checkpoint: save a checkpoint when training is stopped.
        save_deadline: seconds from the stop request (the signal's arrival) within which the
            final checkpoint must be written: it is not started once they have passed, and one
            still being written then is left to finish in its own thread.
        background: TimedThreads, StepsPerExecutionTuners or anything with ``start()`` and
            ``stop()``: started at train start, stopped at train end, their errors raised then.
        clear_stale_marker: remove a marker left by an earlier run when training starts.
        stall_timeout, stall_dir: under distributed training, stall detection by the
            Coordinator the callback makes (see ``tickwork.distributed.Coordinator``; the
            callback marks progress every step); None (the default) turns it off. With it on,
            that Coordinator also names slow ranks (``callback.coordinator.slow_ranks``).
    """

    def __init__(self, **settings: Unpack[LinkSettings]) -> None:
        super().__init__()
        self._link = TrainerLink(**settings)

    # -- hooks ------------------------------------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Join the other ranks (under DDP), install the stop handlers, start the background
        work."""
        distributed = _distributed(trainer)
        if distributed and signal.SIGTERM in self._link.signals:
            _drop_sigterm_broadcast(trainer)
        self._link.begin(
            is_saver=bool(trainer.is_global_zero),
            checkpoint_dir=_dirpath(trainer),
            distributed=distributed,
        )

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """After a stop request, set ``trainer.should_stop`` and save the final checkpoint."""
        if not self._link.stopped and self._link.should_stop(int(trainer.global_step)):
            trainer.should_stop = True
            # Here, before Lightning 2.6 raises SIGTERMException right after this batch's hooks.
            # Checkpoint callbacks run after every other callback in a hook: the save is marked
            # as done for them, so that they do not save this step again.
            self._link.final_save(lambda: _save_final(trainer, self._link.checkpoint_dir))

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Under DDP, mark validation as a phase for stall detection (its own timeout)."""
        self._link.enter_phase("validation")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """The validation phase ends."""
        self._link.leave_phase()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Restore the signal handlers and stop the background work."""
        self._link.leave_phase()
        self._link.restore_signals()
        self._link.stop_background()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Write the done marker (on the global-zero rank): training completed or was stopped."""
        self._link.end(
            is_saver=bool(trainer.is_global_zero),
            step=int(trainer.global_step),
            checkpoint_dir=_dirpath(trainer),
        )

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Write the done marker saying training failed, with the exception."""
        is_saver = bool(trainer.is_global_zero)
        if is_saver and _spawn_parent(trainer) and self._link.marker_written(_dirpath(trainer)):
            # ddp_spawn: the ranks ran the training hooks; rank 0 wrote the marker, naming the
            # error that started the failure. This process only sees the ranks' exit.
            logger.info("the ranks wrote the done marker; the launching process leaves it")
            return
        exception = _rank_error(exception)
        self._link.end(
            is_saver=is_saver,
            # ddp_spawn's launching process does not know the ranks' step
            step=None if _spawn_parent(trainer) else int(trainer.global_step),
            error=exception,
            checkpoint_dir=_dirpath(trainer),
            raise_background=False,
        )


def _rank_error(exception: BaseException) -> BaseException:
    """``ddp_spawn``'s parent sees torch.multiprocessing's ``ProcessRaisedException`` (the rank's
    traceback as text): the rank's own error, as a RemoteError naming its type, message and rank
    (the marker then says ``ValueError: loss is nan`` on rank 1, not "process 1 terminated")."""
    rank, text = getattr(exception, "error_index", None), getattr(exception, "msg", None)
    if type(exception).__name__ != "ProcessRaisedException" or not isinstance(text, str):
        return exception
    last = text.strip().splitlines()[-1] if text.strip() else ""
    kind, _, message = last.partition(": ")
    if not kind or " " in kind:
        return exception
    import socket

    from ..distributed import RemoteError

    pid = getattr(exception, "error_pid", -1)
    remote = RemoteError(
        kind,
        message,
        rank if isinstance(rank, int) else -1,
        socket.gethostname(),
        pid if isinstance(pid, int) else -1,
        text,
    )
    remote.__cause__ = exception
    return remote


def _spawn_parent(trainer: Any) -> bool:
    """The process that started ``ddp_spawn``'s ranks (it runs no training hook but
    ``on_exception``, with the ranks' failure)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    if type(launcher).__name__ != "_MultiProcessingLauncher":
        return False
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized())


def _distributed(trainer: Any) -> bool:
    """More than one process, and torch.distributed's process group is up (Lightning starts it
    in fit(), before on_train_start)."""
    if int(getattr(trainer, "world_size", 1)) <= 1:
        return False
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


def _drop_sigterm_broadcast(trainer: Any) -> None:
    """Take Lightning's ``_sigterm_notifier_fn`` out of the SIGTERM handler, keeping the handlers
    it composes with (the one installed before ``fit()``).

    Lightning 2.6's notifier runs ``dist.broadcast`` inside the signal handler, on the signalled
    rank alone, while its peers wait in the step's all-reduce: the job deadlocks. The tickwork
    handler instead requests a stop through the job's store; every rank stops at the same step.
    Lightning puts its own handler back at the end of fit()."""
    handler: Any = signal.getsignal(signal.SIGTERM)
    handlers = getattr(handler, "signal_handlers", None)
    connector = getattr(trainer, "_signal_connector", None)
    notifier = getattr(connector, "_sigterm_notifier_fn", None)
    if not isinstance(handlers, list) or notifier is None:
        return
    kept = [h for h in handlers if h != notifier]  # a bound method equals its twin
    if len(kept) == len(handlers):
        return
    logger.info(
        "rank %s: Lightning's SIGTERM notifier (a broadcast inside the handler, which deadlocks "
        "under DDP) is left out; tickwork stops every rank at an agreed step instead",
        getattr(trainer, "global_rank", "?"),
    )
    signal.signal(signal.SIGTERM, type(handler)(kept))


def _dirpath(trainer: Any) -> str | None:
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None)
    return None if dirpath is None else os.fspath(dirpath)


def _save_final(trainer: Any, checkpoint_dir: str | None) -> bool:
    """Save through the Trainer; False when the ModelCheckpoint already wrote this step's file.
    Every rank calls it (``save_checkpoint`` is collective); rank 0's answer to "is it there?"
    is broadcast, so that no rank skips the save's barrier alone."""
    import fsspec  # a Lightning dependency
    import torch

    callback = trainer.checkpoint_callback
    metrics = dict(trainer.callback_metrics)
    metrics["epoch"] = torch.tensor(trainer.current_epoch)
    metrics["step"] = torch.tensor(trainer.global_step)
    if callback is not None and getattr(callback, "dirpath", None) is not None:
        path = str(callback.format_checkpoint_name(metrics))
    else:
        directory = checkpoint_dir or os.path.join(trainer.default_root_dir, "checkpoints")
        name = f"epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt"
        path = f"{directory.rstrip('/')}/{name}"
    fs, inner = fsspec.core.url_to_fs(path)
    if trainer.strategy.broadcast(bool(fs.exists(inner))):
        logger.info("final checkpoint: %s is already saved", path)
        return False
    trainer.save_checkpoint(path)
    logger.info("final checkpoint saved: %s", path)
    for checkpointing in trainer.checkpoint_callbacks:
        if hasattr(checkpointing, "_last_global_step_saved"):
            # What a ModelCheckpoint reads to not save a step twice (later in this hook, say).
            checkpointing._last_global_step_saved = trainer.global_step  # noqa: SLF001 - Lightning's
    return True


_publish(globals())
