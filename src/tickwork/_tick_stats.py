"""TickStats, the record of what a periodic thread has done.

A module of its own so that ``import tickwork`` does not import ``dataclasses`` (and with it
``inspect``): the first ``statistics()`` or use of ``tickwork.TickStats`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TickStats"]


@dataclass(frozen=True)
class TickStats:
    """What a periodic thread has done so far (a snapshot; it does not change).

    ``lateness_*`` are how long after its slot's due time each call started, in seconds:
    the mean and max over all calls, the percentiles over the most recent 4096. ``missed`` counts
    slots that passed without a call (see ``Overrun``). ``busy_seconds`` is the total time spent
    inside the callback. For back-to-back loops (no interval) lateness is not defined and is 0.
    """

    calls: int = 0
    errors: int = 0
    missed: int = 0
    lateness_mean: float = 0.0
    lateness_p50: float = 0.0
    lateness_p99: float = 0.0
    lateness_max: float = 0.0
    busy_seconds: float = 0.0
