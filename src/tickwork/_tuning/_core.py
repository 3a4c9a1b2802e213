"""The tuner's bookkeeping for one tick, with no thread and no clock of its own.

Given the time, the step count, the caller's current bound and the value the spe target holds, it
cuts windows (:mod:`._window`), folds them into the policy (:mod:`._policy`), records everything
(:mod:`._history`) and says which value to assign, bounded by ``[min_spe, max_spe]`` and restricted
to the candidates. The thread in :mod:`._tuner` reads the inputs and makes the assignment; tests
and simulations drive this class directly with synthetic counts.

Bounds: the tuner never assigns a value above the current ceiling (``max_spe``, possibly a callable
such as the steps left in the epoch) or below 1. A value it picks is always a candidate in
``[min_spe, ceiling]``; when the ceiling is below every candidate it assigns the ceiling itself (the
bound wins over the candidate list). The value in effect when tuning starts, or one a user sets, is
kept if it lies within the bounds, even if it is not a candidate: it is already in effect.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ._history import TuningHistory, TuningRecord
from ._policy import Action, Decision, PolicyConfig, PolicyState, start, step
from ._window import Window, WindowMaker

__all__ = ["TuningCore"]

logger = logging.getLogger(__name__)


class TuningCore:
    """Windows, policy, history and bounds of one tuner; the caller serialises the calls."""

    def __init__(
        self,
        config: PolicyConfig,
        *,
        interval: float,
        min_spe: int,
        history: TuningHistory,
        origin: float,
    ) -> None:
        self.config = config
        self._min = min_spe
        self._maker = WindowMaker(interval)
        self._history = history
        self._origin = origin
        self._state: PolicyState | None = None
        self._assigned: int | None = None
        self._clamped = False

    @property
    def state(self) -> PolicyState | None:
        """The policy's state (None before the first start)."""
        return self._state

    @property
    def assigned(self) -> int | None:
        """The value in effect as far as the tuner knows (None before the first start)."""
        return self._assigned

    # -- bounds -----------------------------------------------------------------------------------

    def bounded(self, wanted: int, ceiling: int | None) -> int:
        """``wanted`` if it lies in ``[min_spe, ceiling]``, else the nearest candidate there.

        With no candidate at or below the ceiling, the ceiling itself (never more, never below 1).
        """
        top = ceiling if ceiling is not None else max(wanted, self.config.candidates[-1])
        if self._min <= wanted <= top:
            return wanted
        allowed = [c for c in self.config.candidates if c <= top]
        if not allowed:
            return max(1, top)
        if wanted < self._min:
            return allowed[0] if allowed[0] >= self._min else allowed[-1]
        return allowed[-1]

    # -- events -----------------------------------------------------------------------------------

    def begin(self, now: float, count: int, current: int | None, ceiling: int | None) -> int | None:
        """Start or resume tuning. ``current`` is what the target holds (None if unreadable).

        Resumes the previous search (or settled state) when the value in effect is still the one
        the tuner left; starts a new search otherwise. Returns a value to assign, or None.
        """
        state = self._state
        unknown = current is None
        if current is None:
            current = self._assigned if self._assigned is not None else self.config.candidates[0]
        value = self.bounded(current, ceiling)
        if state is not None and state.spe == value and self._assigned == current:
            self._state = replace(state, pending=None)
            why = "resumed"
        else:
            compiled = frozenset() if state is None else state.compiled
            self._state = start(value, compiled)
            why = "new search"
        self._maker.begin(now, count, value)
        self._clamped = False
        assign = value if value != current or unknown else None
        self._assigned = value
        if assign is not None:
            why += f"; {current} is outside the bounds"
        self._event(now, current, "start", value, f"{why} from spe {value}")
        return assign

    def set_value(self, now: float, count: int, value: int) -> None:
        """A user assigned ``value`` (already checked against the bounds): search again from it."""
        compiled = frozenset() if self._state is None else self._state.compiled
        old = self._assigned if self._assigned is not None else value
        self._state = start(value, compiled)
        self._feed(self._maker.change(now, count, value), None)
        self._assigned = value
        self._clamped = False
        self._event(now, old, "set", value, f"set to {value} by the user; new search")

    def mark_boundary(self) -> None:
        """Discard the window now open (an epoch end, an evaluation: not training)."""
        self._maker.mark_boundary()

    def tick(self, now: float, count: int, ceiling: int | None, observed: int | None) -> int | None:
        """One sample. ``observed`` is what the target holds now (None if unreadable).

        Returns the value to assign now, or None to leave it.
        """
        state = self._state
        if state is None:
            raise RuntimeError("TuningCore.tick() before begin()")
        if observed is not None and observed != self._assigned:
            # Someone else assigned the target: measure what is in effect, from scratch.
            old = self._assigned if self._assigned is not None else observed
            value = self.bounded(observed, ceiling)
            self._state = start(value, state.compiled)
            self._feed(self._maker.change(now, count, observed), ceiling)
            self._assigned = observed
            self._clamped = False
            self._event(now, old, "external", observed, f"the target was set to {observed}")
            if value != observed:
                return self._assign(now, count, value, "clamp", f"{observed} is outside the bounds")
            return None
        self._feed(self._maker.sample(now, count), ceiling)
        assert self._state is not None
        wanted = self._state.spe
        value = self.bounded(wanted, ceiling)
        if value == self._assigned:
            return None
        if value != wanted:
            return self._assign(now, count, value, "clamp", f"max_spe is {ceiling}")
        if self._clamped:
            return self._assign(now, count, value, "clamp", f"bound lifted; back to {wanted}")
        return self._assign(now, count, value, None, "")

    # -- internals --------------------------------------------------------------------------------

    def _assign(self, now: float, count: int, value: int, event: str | None, why: str) -> int:
        old = self._assigned if self._assigned is not None else value
        self._feed(self._maker.change(now, count, value), None)
        self._assigned = value
        assert self._state is not None
        self._clamped = value != self._state.spe
        if event is not None:
            self._event(now, old, event, value, why)
        return value

    def _feed(self, windows: list[Window], ceiling: int | None) -> None:
        for window in windows:
            assert self._state is not None
            self._state, decision = step(self._state, window, self.config, ceiling)
            self._record(window, decision)
            if decision.action in (Action.PROBE, Action.SETTLE, Action.RETUNE):
                logger.debug(
                    "spe tuner: %s -> %d: %s", decision.action.value, decision.spe, decision.reason
                )

    def _record(self, window: Window, decision: Decision) -> None:
        self._history.append(
            TuningRecord(
                time=window.end - self._origin,
                spe=window.spe,
                throughput=window.throughput,
                steps=window.steps,
                seconds=window.seconds,
                decision=decision.action.value,
                next_spe=decision.spe,
                reason=decision.reason,
            )
        )

    def _event(self, now: float, spe: int, what: str, value: int, why: str) -> None:
        logger.debug("spe tuner: %s: %d -> %d (%s)", what, spe, value, why)
        self._history.append(
            TuningRecord(
                time=now - self._origin,
                spe=spe,
                throughput=0.0,
                steps=0,
                seconds=0.0,
                decision=what,
                next_spe=value,
                reason=why,
            )
        )
