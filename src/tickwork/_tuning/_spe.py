"""The tuner's two inputs, framework-free.

The *step counter* says how many training steps have run so far. It may be:

* an object with ``.iterations`` (a Keras optimizer, tf or Keras 3), whose value is an int or has
  ``.numpy()`` or ``.item()`` (a tf.Variable, a Keras 3 Variable, a 0-d array or tensor);
* a zero-argument callable returning such a value.

The *spe target* receives the steps-per-execution the tuner picks. It may be anything with
``.assign(n)`` (a tf.Variable, a Keras 3 Variable, a :class:`StepsPerExecution` holder), which a
training loop reads at each call.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .._validate import check_int

__all__ = ["StepsPerExecution", "as_step_counter", "check_spe_target", "read_spe"]


@runtime_checkable
class Assignable(Protocol):
    def assign(self, value: Any) -> Any: ...


def _to_int(value: object, what: str) -> int:
    # tf.Variable -> .numpy() -> numpy scalar; torch/jax/numpy 0-d arrays -> .item() -> int.
    for method in ("numpy", "item"):
        convert = getattr(value, method, None)
        if callable(convert) and not isinstance(value, numbers.Number):
            value = convert()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number (or have .numpy()/.item()); got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        # int() would say "cannot convert float NaN to integer", naming nothing.
        raise ValueError(f"{what} must be a finite number; got {value!r}")
    return int(number)


def as_step_counter(source: object, *, argument: str = "optimizer") -> Callable[[], int]:
    """A zero-argument function returning the step count of ``source`` (see module docs)."""
    if hasattr(source, "iterations"):
        return lambda: _to_int(getattr(source, "iterations"), f"'{argument}.iterations'")  # noqa: B009
    if callable(source):
        return lambda: _to_int(source(), f"'{argument}()'")
    raise TypeError(
        f"'{argument}' must have an .iterations step counter (a Keras optimizer) or be a "
        f"zero-argument callable returning the step count; got {source!r}"
    )


def check_spe_target(target: object, *, argument: str = "spe_variable") -> Assignable:
    if not isinstance(target, Assignable):
        raise TypeError(
            f"'{argument}' must have .assign(n) (a tf.Variable, a Keras Variable or a "
            f"tickwork.StepsPerExecution); got {target!r}"
        )
    return target


def read_spe(target: object) -> int | None:
    """The current value of an spe target, when it can be read (None otherwise)."""
    for reader in ("value", "numpy", "item"):
        attr = getattr(target, reader, None)
        if attr is None:
            continue
        try:
            value = attr() if callable(attr) else attr
            return _to_int(value, "spe")
        except (TypeError, ValueError):
            continue
    return None


class StepsPerExecution:
    """A thread-safe holder for steps-per-execution that a training loop reads at each call.

    The tuner writes it with :meth:`assign`; the loop reads ``int(spe)`` or ``spe.value``::

        spe = StepsPerExecution(1)
        tuner = StepsPerExecutionTuner(lambda: steps_done, spe)
        while training:
            run_steps(int(spe))
    """

    __slots__ = ("_lock", "_value")

    def __init__(self, initial: int = 1) -> None:
        self._value = check_int("initial", initial, minimum=1)
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        """The current steps per execution (an int >= 1)."""
        return self._value  # an int read is atomic; the lock orders writes

    def assign(self, value: Any) -> None:
        """Set the value: an int >= 1, or anything ``int()`` accepts as one (a numpy scalar)."""
        number = check_int("value", _to_int(value, "'value'"), minimum=1)
        with self._lock:
            self._value = number

    def numpy(self) -> int:
        """The current value, as a TensorFlow variable's ``numpy()`` would give it."""
        return self._value

    def __int__(self) -> int:
        return self._value

    def __index__(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"StepsPerExecution({self._value})"
