"""Keras 3: :class:`TickworkCallback` (re-exported by :mod:`tickwork.integrations.keras`): the done
marker, a tickwork stop as ``model.stop_training`` with a final ``model.save``, periodic work over
``fit()``."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import keras

from ._trainer_link import FinalSave, LinkedCallback, LinkOptions, TrainerLink
from ._uncaught import UncaughtWatch

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TickworkCallback"]

logger = logging.getLogger(__name__)


def _is_chief() -> bool:
    """The process that saves: TF_CONFIG's chief (or worker 0 when there is no chief), JAX's
    process 0, else this process."""
    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            config = json.loads(raw)
            task, cluster = config.get("task", {}), config.get("cluster", {})
            kind, index = task.get("type"), int(task.get("index", 0))
        except (ValueError, TypeError, AttributeError):
            logger.warning("TF_CONFIG is not valid JSON; this process counts as the chief")
            return True
        if kind is not None:
            return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    if keras.backend.backend() == "jax":
        import jax

        return int(jax.process_index()) == 0
    return True


class TickworkCallback(LinkedCallback, keras.callbacks.Callback):  # type: ignore[misc]
    """Tell the evaluator when ``fit()`` ended, stop it on a tickwork stop, run periodic work.

    * ``on_train_begin``: on the chief, removes a stale done marker; installs the ``signals``
      handler (the handlers already there still run; Keras installs none); starts
      ``background``; chains ``sys.excepthook`` for the error path (``fit()`` has no error hook),
      with an ``atexit`` fallback.
    * ``on_train_batch_end`` (once per ``steps_per_execution`` steps: a large value delays the
      stop): once a stop is seen, sets ``model.stop_training`` (Keras ends the epoch, runs its
      validation and ``on_epoch_end``, then ends ``fit()``) and saves the final checkpoint with
      ``model.save`` (``save_weights`` for a ``.weights.h5`` path), within ``save_deadline``.
      With a ``model_checkpoint`` saving every epoch, its own epoch-end save after the stop is
      the final checkpoint and none is added.
    * ``on_train_end`` (after the ModelCheckpoint's last save): stops the background work
      (raising its errors), restores the handlers and writes the done marker on the chief.

    Args:
        checkpoint_dir: where the marker (and by default the final checkpoint) goes; default:
            the directory of ``model_checkpoint``'s filepath.
        model_checkpoint: your ``keras.callbacks.ModelCheckpoint``; the final checkpoint takes
            its ``filepath`` (formatted with ``epoch`` and ``batch`` as Keras does) and its
            ``save_weights_only``.
        final_checkpoint_name: the final checkpoint's file name in ``checkpoint_dir`` when there
            is no ``model_checkpoint``, formatted with ``step`` and ``epoch``.
        is_chief: whether this process saves; default: TF_CONFIG's chief (worker 0 without
            one), JAX's process 0, else True.
        **options: the other arguments, those of the Lightning and Hugging Face callbacks
            (``done_marker``, ``storage_options``, ``stop``, ``signals``, ``final_checkpoint``,
            ``save_deadline``, ``background``, ``clear_stale_marker``; ``stall_timeout`` and
            ``stall_dir`` are accepted but have no effect: Keras training here runs no
            distributed Coordinator, and a warning says so).
    """

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        *,
        model_checkpoint: Any = None,
        final_checkpoint_name: str = "final-step{step}.keras",
        is_chief: bool | None = None,
        **options: Unpack[LinkOptions],
    ) -> None:
        super().__init__()
        if model_checkpoint is not None and not isinstance(
            model_checkpoint, keras.callbacks.ModelCheckpoint
        ):
            raise TypeError(
                "'model_checkpoint' must be a keras.callbacks.ModelCheckpoint or None; "
                f"got {model_checkpoint!r}"
            )
        if checkpoint_dir is None and model_checkpoint is not None:
            checkpoint_dir = os.path.dirname(os.fspath(model_checkpoint.filepath)) or "."
        if not isinstance(final_checkpoint_name, str) or "/" in final_checkpoint_name:
            raise ValueError(
                "'final_checkpoint_name' must be a file name (no '/'); "
                f"got {final_checkpoint_name!r}"
            )
        if is_chief is not None and not isinstance(is_chief, bool):
            raise TypeError(f"'is_chief' must be a bool or None; got {is_chief!r}")
        self._link = TrainerLink(checkpoint_dir=checkpoint_dir, allow_tuner=False, **options)
        if checkpoint_dir is None and (
            self._link.done_marker is not None or self._link.final_checkpoint_wanted
        ):
            raise ValueError(
                "'checkpoint_dir' must be given (or a 'model_checkpoint' to take it from) for the "
                "done marker and the final checkpoint; got None"
            )
        self.model_checkpoint = model_checkpoint
        self.final_checkpoint_name = final_checkpoint_name
        self._is_chief_arg = is_chief
        self._is_saver = True
        self._epoch = 0
        self._uncaught = UncaughtWatch(self._fail)

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs: Any = None) -> None:
        """Install the stop handlers, start the background work and watch for an uncaught error."""
        chief = self._is_chief_arg
        self._is_saver = _is_chief() if chief is None else chief
        self._link.begin(is_saver=self._is_saver, checkpoint_dir=None)
        self._uncaught.watch()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        """Remember the epoch, for the final checkpoint's name."""
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        """After a stop request, set ``model.stop_training`` and save the final checkpoint."""
        if self._link.stopped:
            return
        step = self._step() if self._link.wants_step else None
        if not self._link.should_stop(step):
            return
        self.model.stop_training = True
        checkpointing = self.model_checkpoint
        if checkpointing is not None and checkpointing.save_freq == "epoch":
            self._link.final_checkpoint = FinalSave.BY_TRAINER
            return
        self._link.final_save(lambda: self._save(batch, logs))

    def _save(self, batch: int, logs: Any) -> bool:
        step = self._step()
        checkpointing = self.model_checkpoint
        if checkpointing is not None:
            path = os.fspath(checkpointing.filepath).format(
                epoch=self._epoch + 1, batch=batch + 1, **dict(logs or {})
            )
            weights_only = bool(checkpointing.save_weights_only)
        else:
            assert self._link.checkpoint_dir is not None
            name = self.final_checkpoint_name.format(step=step, epoch=self._epoch + 1)
            path = os.path.join(self._link.checkpoint_dir, name)
            weights_only = name.endswith(".weights.h5")
        if os.path.exists(path):
            logger.info("final checkpoint: %s is already saved", path)
            return False
        if weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        logger.info("final checkpoint saved: %s", path)
        return True

    def on_train_end(self, logs: Any = None) -> None:
        """Stop the background work, restore the handlers and write the done marker."""
        self._uncaught.unwatch()
        self._link.end(is_saver=self._is_saver, step=self._step())

    def _fail(self, error: BaseException) -> None:
        step = None
        try:
            step = self._step()
        except Exception:  # the model may be unusable after the error; the step is optional
            logger.debug("could not read the step for the done marker", exc_info=True)
        self._link.end(is_saver=self._is_saver, step=step, error=error, raise_background=False)
