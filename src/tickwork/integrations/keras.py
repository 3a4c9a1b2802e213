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

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras

from .._clock import Clock, check_clock
from .._errors import add_note
from .._public import publish as _publish
from .._validate import check_int, check_nonnegative
from ._keras_callback import TickworkCallback as TickworkCallback
from ._multistep import choose_spe

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
    clock = check_clock(clock)

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


_publish(globals())
