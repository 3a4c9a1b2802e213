"""Keras 3: choose ``steps_per_execution`` before ``fit()``, and change it between ``fit()`` calls.

What Keras 3.15 does with ``steps_per_execution`` (read from its source, checked by experiment in
``tests/integrations/test_keras.py`` on each backend):

* ``tensorflow``: the n steps run in a ``tf.while_loop`` inside one ``tf.function``; n is a
  Python int baked in when the function is traced.
* ``jax``: a host-side Python loop calls the jitted single step n times (keras #20411 replaced the
  unrolled trace); the gain is the smaller host overhead per step, not one device launch.
* ``torch``: any value but 1 is refused (``make_train_function`` raises ValueError).

It cannot change during ``fit()``: ``fit()`` makes its epoch iterator with the value it finds at
the start and steps it by that value to the end. Assigning ``model.steps_per_execution`` from a
callback is ignored (the train function is already built for the old value); rebuilding the train
function from a callback makes each call run the new n while ``fit()`` still counts the old one,
so batch indices are wrong and an epoch runs out of data (Keras warns "Your input ran out of
data"). So tickwork offers what works:

* :func:`probe_steps_per_execution`: a short measurement of candidate values on throw-away copies
  of your model, before training; pass its ``best`` to ``compile()``.
* :func:`set_steps_per_execution`: set a compiled model's value between ``fit()`` calls (e.g.
  ``fit()`` one epoch at a time with ``initial_epoch``); the next ``fit()`` uses it. Callbacks then
  see ``on_train_begin``/``on_train_end`` once per ``fit()`` call, which resets callbacks that keep
  state across epochs (EarlyStopping's patience, for one).

A large value delays everything that happens between calls: callbacks, logging, stop requests,
checkpoints (keras #17589: ``ModelCheckpoint(save_freq=k)`` fires only at call boundaries), so
the probe picks the smallest value within ``tolerance`` of the fastest.

:class:`TickworkCallback` brings the rest of tickwork into ``fit()`` (see its docs): the done
marker the evaluator ends on, a tickwork stop (SIGTERM, a Coordinator) as ``model.stop_training``
with a final ``model.save``, and TimedThreads over the fit. Not the tuner: ``steps_per_execution``
cannot change during ``fit()`` (above), so a StepsPerExecutionTuner is refused there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras

from .._clock import MONOTONIC, Clock
from .._done_marker import DEFAULT_DONE_MARKER, TrainingEnd
from .._errors import add_note
from .._validate import check_int, check_nonnegative
from ._multistep import choose_spe
from ._trainer_link import FinalSave, TrainerLink, UncaughtWatch

__all__ = [
    "ProbeResult",
    "TickworkCallback",
    "probe_steps_per_execution",
    "set_steps_per_execution",
]

logger = logging.getLogger(__name__)

DEFAULT_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)


def set_steps_per_execution(model: Any, steps_per_execution: int) -> None:
    """Set a compiled model's ``steps_per_execution`` for its next ``fit()``/``evaluate()``.

    Call it between ``fit()`` calls, never from a callback during one (see the module docs). The
    train, test and predict functions are rebuilt for the new value; a backend that refuses the
    value (torch in Keras 3.15 refuses anything but 1) raises its ValueError and the model keeps
    its old value.
    """
    n = check_int("steps_per_execution", steps_per_execution, minimum=1)
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"'model' must be a compiled Keras model (call model.compile() first); got {model!r}"
        )
    previous = (
        model.steps_per_execution,
        model.train_function,
        model.test_function,
        model.predict_function,
    )
    model.steps_per_execution = n
    model.train_function = model.test_function = model.predict_function = None
    try:
        model.make_train_function()
    except ValueError as exc:
        (
            model.steps_per_execution,
            model.train_function,
            model.test_function,
            model.predict_function,
        ) = previous
        add_note(
            exc,
            f"the {keras.backend.backend()} backend of Keras {keras.__version__} refused "
            f"steps_per_execution={n}; the model keeps {previous[0]}",
        )
        raise
    logger.debug("steps_per_execution set to %d (was %d)", n, previous[0])


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe_steps_per_execution` measured.

    ``best`` is the smallest candidate within ``tolerance`` of the fastest; ``throughput`` the
    best of the rounds' steps/s per candidate; ``warmup_seconds`` how long each candidate's first
    call took (tracing and compiling included); ``backend`` the Keras backend measured.
    """

    best: int
    throughput: Mapping[int, float]
    warmup_seconds: Mapping[int, float]
    tolerance: float
    backend: str
    rounds: tuple[Mapping[int, float], ...] = field(default=(), repr=False)


class _Timer(keras.callbacks.Callback):  # type: ignore[misc]
    """Times a fit() call from the end of its first call to the end of its epoch."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self.began = math.nan
        self.first: tuple[float, int] | None = None
        self.last_step = -1
        self.ended = math.nan

    def on_train_begin(self, logs: Any = None) -> None:
        self.began = self._clock.now()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.first is None:
            self.first = (self._clock.now(), batch + 1)
        self.last_step = batch

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        # Reading a weight waits for the device (JAX dispatches asynchronously).
        keras.ops.convert_to_numpy(self.model.trainable_variables[0])
        self.ended = self._clock.now()


def _fit_once(
    model: Any, x: Any, y: Any, steps: int, clock: Clock, fit_kwargs: Mapping[str, Any]
) -> _Timer:
    timer = _Timer(clock)
    callbacks = [*fit_kwargs.get("callbacks", ()), timer]
    kwargs = {**fit_kwargs, "callbacks": callbacks}
    model.fit(x, y, epochs=1, steps_per_epoch=steps, verbose=0, **kwargs)
    return timer


def probe_steps_per_execution(
    build: Callable[[int], Any],
    x: Any,
    y: Any = None,
    *,
    candidates: Iterable[int] = DEFAULT_CANDIDATES,
    steps: int = 256,
    rounds: int = 2,
    tolerance: float = 0.05,
    clock: Clock | None = None,
    **fit_kwargs: Any,
) -> ProbeResult:
    """Measure each candidate ``steps_per_execution`` with short ``fit()`` calls; return the best.

    ``build(n)`` must return a new model compiled with ``steps_per_execution=n`` (your model and
    compile arguments: the probe trains these copies, never your model). ``x``, ``y`` and
    ``fit_kwargs`` (``batch_size``, ``callbacks``, ...) go to ``fit()``; the data must hold at
    least ``steps`` batches rounded up to a multiple of each candidate (``x`` may also be a
    repeating ``tf.data.Dataset``).

    Each candidate first runs a warm-up ``fit()`` of two calls (tracing, compiling), then
    ``rounds`` timed ``fit()`` calls of about ``steps`` steps, the candidates taking turns. Its
    throughput is its best round: the time from the end of the first call to the end of the
    epoch, over the steps in between. The result's ``best`` is the smallest candidate within
    ``tolerance`` of the fastest, since a larger one delays callbacks and checkpoints.
    """
    if not callable(build):
        raise TypeError(f"'build' must be a callable n -> compiled Keras model; got {build!r}")
    values = tuple(candidates)
    if not values:
        raise ValueError("'candidates' must hold at least one value; got none")
    for value in values:
        check_int("candidates", value, minimum=1)
    if len(set(values)) != len(values):
        raise ValueError(f"'candidates' must not repeat a value; got {values!r}")
    steps = check_int("steps", steps, minimum=1)
    rounds = check_int("rounds", rounds, minimum=1)
    check_nonnegative("tolerance", tolerance)
    if "epochs" in fit_kwargs or "steps_per_epoch" in fit_kwargs:
        raise ValueError("'epochs' and 'steps_per_epoch' are set by the probe; do not pass them")
    clock = MONOTONIC if clock is None else clock

    models: dict[int, Any] = {}
    warmup: dict[int, float] = {}
    for n in values:
        model = build(n)
        if getattr(model, "steps_per_execution", None) != n:
            raise ValueError(
                f"'build' must return a model compiled with steps_per_execution={n}; got "
                f"{getattr(model, 'steps_per_execution', None)!r} from build({n})"
            )
        try:
            timer = _fit_once(model, x, y, 2 * n, clock, fit_kwargs)
        except Exception as exc:
            add_note(exc, f"in the probe's warm-up fit() of steps_per_execution={n}")
            raise
        if timer.first is None:
            raise ValueError(f"the warm-up fit() of spe {n} ran no step: 'x' gave no batch")
        warmup[n] = timer.first[0] - timer.began
        models[n] = model

    measured: list[dict[int, float]] = []
    for round_index in range(rounds):
        order = values if round_index % 2 == 0 else tuple(reversed(values))
        rates: dict[int, float] = {}
        for n in order:
            timer = _fit_once(models[n], x, y, n * max(2, -(-steps // n)), clock, fit_kwargs)
            if timer.first is None or timer.last_step + 1 <= timer.first[1]:
                raise ValueError(
                    f"spe {n} ran fewer than two calls in its fit(): give 'x' at least "
                    f"{2 * n} batches, or a smaller 'steps' or fewer large 'candidates'"
                )
            seconds = timer.ended - timer.first[0]
            rates[n] = (timer.last_step + 1 - timer.first[1]) / seconds
        measured.append(rates)
        logger.debug("probe round %d: %s", round_index, rates)

    throughput = {n: max(r[n] for r in measured) for n in values}
    return ProbeResult(
        best=choose_spe(throughput, tolerance),
        throughput=throughput,
        warmup_seconds=warmup,
        tolerance=float(tolerance),
        backend=keras.backend.backend(),
        rounds=tuple(measured),
    )


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


class TickworkCallback(keras.callbacks.Callback):  # type: ignore[misc]
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
        The other arguments are those of the Lightning and Hugging Face callbacks.
    """

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        *,
        model_checkpoint: Any = None,
        done_marker: str | None = DEFAULT_DONE_MARKER,
        storage_options: Mapping[str, Any] | None = None,
        stop: object = None,
        signals: Iterable[int | signal.Signals] | None = (signal.SIGTERM,),
        final_checkpoint: bool = True,
        final_checkpoint_name: str = "final-step{step}.keras",
        save_deadline: float | None = None,
        background: Iterable[object] = (),
        clear_stale_marker: bool = True,
        is_chief: bool | None = None,
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
        if checkpoint_dir is None and (done_marker is not None or final_checkpoint):
            raise ValueError(
                "'checkpoint_dir' must be given (or a 'model_checkpoint' to take it from) for the "
                "done marker and the final checkpoint; got None"
            )
        if not isinstance(final_checkpoint_name, str) or "/" in final_checkpoint_name:
            raise ValueError(
                "'final_checkpoint_name' must be a file name (no '/'); "
                f"got {final_checkpoint_name!r}"
            )
        if is_chief is not None and not isinstance(is_chief, bool):
            raise TypeError(f"'is_chief' must be a bool or None; got {is_chief!r}")
        self.link = TrainerLink(
            done_marker=done_marker,
            checkpoint_dir=checkpoint_dir,
            storage_options=storage_options,
            stop=stop,
            signals=signals,
            final_checkpoint=final_checkpoint,
            save_deadline=save_deadline,
            background=background,
            clear_stale_marker=clear_stale_marker,
            allow_tuner=False,
        )
        self.model_checkpoint = model_checkpoint
        self.final_checkpoint_name = final_checkpoint_name
        self._is_chief_arg = is_chief
        self._is_saver = True
        self._epoch = 0
        self._uncaught = UncaughtWatch(self._fail)

    @property
    def training_end(self) -> TrainingEnd | None:
        """What the done marker said (None before it is written, and off the chief)."""
        return self.link.training_end

    @property
    def final_checkpoint(self) -> str:
        """What became of the final checkpoint (a :class:`FinalSave` value)."""
        return self.link.final_checkpoint

    @property
    def stopped(self) -> bool:
        """True once a tickwork stop stopped ``fit()``."""
        return self.link.stopped

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs: Any = None) -> None:
        chief = self._is_chief_arg
        self._is_saver = _is_chief() if chief is None else chief
        self.link.begin(is_saver=self._is_saver, checkpoint_dir=None)
        self._uncaught.watch()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.link.stopped:
            return
        step = self._step() if self.link.wants_step else None
        if not self.link.should_stop(step):
            return
        self.model.stop_training = True
        checkpointing = self.model_checkpoint
        if checkpointing is not None and checkpointing.save_freq == "epoch":
            self.link.final_checkpoint = FinalSave.BY_TRAINER
            return
        self.link.final_save(lambda: self._save(batch, logs))

    def _save(self, batch: int, logs: Any) -> bool:
        step = self._step()
        checkpointing = self.model_checkpoint
        if checkpointing is not None:
            path = os.fspath(checkpointing.filepath).format(
                epoch=self._epoch + 1, batch=batch + 1, **dict(logs or {})
            )
            weights_only = bool(checkpointing.save_weights_only)
        else:
            assert self.link.checkpoint_dir is not None
            name = self.final_checkpoint_name.format(step=step, epoch=self._epoch + 1)
            path = os.path.join(self.link.checkpoint_dir, name)
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
        self._uncaught.unwatch()
        self.link.end(is_saver=self._is_saver, step=self._step())

    def _fail(self, error: BaseException) -> None:
        step = None
        try:
            step = self._step()
        except Exception:  # the model may be unusable after the error; the step is optional
            logger.debug("could not read the step for the done marker", exc_info=True)
        self.link.end(is_saver=self._is_saver, step=step, error=error, raise_background=False)
