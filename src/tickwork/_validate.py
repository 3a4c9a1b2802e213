"""Argument checks shared by every public entry point.

Each error names the argument, states the rule and shows the value received, e.g.
``'interval' must be a finite number > 0; got nan``.

Durations: a finite duration longer than :data:`threading.TIMEOUT_MAX` (about 292 years, e.g. 1e300)
is accepted and means what it says, "forever": every wait passes its timeout through
:func:`tickwork._clock.os_timeout` (the clock's waits do it for their callers), which makes it a
wait without a limit, so no wait anywhere raises OverflowError. The value itself is kept (None
means something else for some arguments). NaN and infinity stay errors where a finite number is
the rule.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Collection
from enum import Enum

__all__ = [
    "check_choice",
    "check_finite",
    "check_int",
    "check_lenient_seconds",
    "check_lenient_timeout",
    "check_nonnegative",
    "check_optional_nonnegative",
    "check_positive",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import TypeVar

    _E = TypeVar("_E", bound=Enum)


def _number(name: str, value: object, rule: str) -> float:
    # bool is an int subclass; True seconds is always a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"'{name}' must be {rule}; got {value!r} of type {type(value).__name__}")
    return float(value)


def check_finite(name: str, value: object) -> float:
    """A real number that is neither NaN nor infinite."""
    rule = "a finite number"
    number = _number(name, value, rule)
    if not math.isfinite(number):
        raise ValueError(f"'{name}' must be {rule}; got {value!r}")
    return number


def check_positive(name: str, value: object) -> float:
    """A finite real number > 0 (a duration that must pass)."""
    rule = "a finite number > 0"
    number = _number(name, value, rule)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"'{name}' must be {rule}; got {value!r}")
    return number


def check_nonnegative(name: str, value: object) -> float:
    """A finite real number >= 0."""
    rule = "a finite number >= 0"
    number = _number(name, value, rule)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"'{name}' must be {rule}; got {value!r}")
    return number


def check_optional_nonnegative(name: str, value: object) -> float | None:
    """None, or a finite real number >= 0 (an optional timeout)."""
    if value is None:
        return None
    rule = "None or a finite number >= 0"
    number = _number(name, value, rule)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"'{name}' must be {rule}; got {value!r}")
    return number


def check_lenient_seconds(name: str, value: object) -> float:
    """Any real number but NaN, read as :mod:`threading` reads a timeout: a negative one is 0.

    Only for the arguments whose TensorFlow counterpart takes such values with that meaning
    (``Coordinator.wait_for_stop(timeout)``, ``Coordinator.join(stop_grace_period_secs)``: TF's
    own LooperThread passes the time left, which can be negative). Infinity stays infinity.
    """
    rule = "a number (not NaN; a negative one counts as 0)"
    number = _number(name, value, rule)
    if math.isnan(number):
        raise ValueError(f"'{name}' must be {rule}; got {value!r}")
    return max(number, 0.0)


def check_lenient_timeout(name: str, value: object) -> float | None:
    """None (no limit) or :func:`check_lenient_seconds`; beyond TIMEOUT_MAX (inf too): None."""
    if value is None:
        return None
    number = check_lenient_seconds(name, value)
    return None if number > threading.TIMEOUT_MAX else number


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """An integer (not a bool), optionally >= ``minimum``."""
    rule = "an int" if minimum is None else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"'{name}' must be {rule}; got {value!r} of type {type(value).__name__}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"'{name}' must be {rule}; got {value!r}")
    return number


def check_choice(name: str, value: object, enum: type[_E]) -> _E:
    """A member of ``enum``, given as the member or its value."""
    if isinstance(value, enum):
        return value
    choices: Collection[object] = [member.value for member in enum]
    for member in enum:
        if value == member.value:
            return member
    listed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"'{name}' must be one of {listed}; got {value!r}")
