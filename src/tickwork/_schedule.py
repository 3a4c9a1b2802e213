"""The fixed-rate schedule: pure functions of (grid, last slot, now), no threads, no clocks.

Call ``k`` of a schedule is due at ``anchor + k * interval``, however long the calls take. Call 0 is
due at the start. The one question the policy answers is what to do when time has moved past one
or more slots without a call, either because a call overran (it was still running when the next
slot came) or because the thread woke up late:

``Overrun.SKIP`` (default)
    Stay on the grid, one call at most per slot. When time has passed one or more slots (a call
    overran, or the thread woke up late), the most recent slot that is due runs at once, late by
    less than one interval; the older ones are skipped and counted as *missed*. Each call starts
    inside its own grid cell ``[due(k), due(k + 1))``, so there is never a burst.
``Overrun.CATCH_UP``
    Run every slot, back to back until caught up (what ``tf.train.LooperThread`` does). Nothing is
    missed, but an overrun causes a burst of calls.
``Overrun.SHIFT``
    Move the grid: when a slot is passed over, the late call runs at once and the following slots
    are due one interval apart from it. Nothing is counted missed; the phase is lost.

The threads in :mod:`tickwork._ticker` call :func:`next_slot` after each call and :func:`claim`
when they wake up.
"""

from __future__ import annotations

import collections
import enum
import math

__all__ = ["Overrun", "Slot", "claim", "first_slot", "next_slot"]


class Overrun(str, enum.Enum):
    """What a fixed-rate schedule does with slots that pass without a call."""

    SKIP = "skip"
    CATCH_UP = "catch_up"
    SHIFT = "shift"


TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    from typing import NamedTuple

    class Slot(NamedTuple):
        """One point on the grid: slot ``number``, due at ``due`` (immutable).

        ``anchor`` is the time of slot 0 (it moves only under ``Overrun.SHIFT``); ``missed`` is
        how many slots were passed over to reach this one.
        """

        number: int
        due: float
        anchor: float
        missed: int = 0

else:  # the same tuple, without importing typing (see _protocols)
    Slot = collections.namedtuple("Slot", ["number", "due", "anchor", "missed"], defaults=[0])
    Slot.__doc__ = "One point on the grid: slot ``number``, due at ``due`` (immutable)."


def first_slot(start: float) -> Slot:
    """The first call is due at the start."""
    return Slot(number=0, due=start, anchor=start)


def _due(anchor: float, interval: float, index: int) -> float:
    return anchor + index * interval


def _last_index_at_or_before(anchor: float, interval: float, now: float) -> int:
    """The largest k with anchor + k * interval <= now (now >= anchor)."""
    k = max(math.floor((now - anchor) / interval), 0)
    while _due(anchor, interval, k + 1) <= now:
        k += 1
    while k > 0 and _due(anchor, interval, k) > now:
        k -= 1
    return k


# Slot(number, due, anchor, missed) without the Python-level __new__ NamedTuple generates: the two
# functions below run once per tick of every periodic thread, so they stay a few bytecodes long.
_tuple_new = tuple.__new__


def next_slot(previous: Slot, interval: float, now: float, policy: Overrun) -> Slot:
    """The slot to wait for after the call in ``previous`` has finished at time ``now``."""
    index = previous.number + 1
    anchor = previous.anchor
    due = anchor + index * interval  # _due(anchor, interval, index)
    if due >= now or policy is Overrun.CATCH_UP:
        return _tuple_new(Slot, (index, due, anchor, 0))
    if policy is Overrun.SKIP:
        latest = max(_last_index_at_or_before(anchor, interval, now), index)
        return Slot(
            number=latest,
            due=_due(anchor, interval, latest),
            anchor=anchor,
            missed=latest - index,
        )
    # SHIFT: the next call is due now and the grid restarts from it.
    return Slot(number=index, due=now, anchor=now - index * interval)


def claim(planned: Slot, interval: float, now: float, policy: Overrun) -> Slot:
    """The slot that a call starting at ``now`` (>= ``planned.due``) runs in.

    Usually ``planned`` itself. If the wake-up came a whole interval or more late, SKIP relabels
    the call as the most recent due slot (the ones between are missed) and SHIFT moves the grid so
    that this call is on it; CATCH_UP keeps the planned slot and catches up afterwards.
    """
    # Compare with the grid's own arithmetic (not now - due < interval), so that a call at
    # exactly due(k + 1) is never also counted in slot k: that would be two calls in one cell.
    if now < planned.anchor + (planned.number + 1) * interval or policy is Overrun.CATCH_UP:
        return planned
    if policy is Overrun.SKIP:
        latest = _last_index_at_or_before(planned.anchor, interval, now)
        return Slot(
            number=latest,
            due=_due(planned.anchor, interval, latest),
            anchor=planned.anchor,
            missed=planned.missed + latest - planned.number,
        )
    return Slot(
        number=planned.number,
        due=now,
        anchor=now - planned.number * interval,
        missed=planned.missed,
    )
