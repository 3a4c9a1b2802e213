"""Measurement windows: from step-counter samples to throughput evidence, with what to discard.

The tuner samples the step counter once per tick. :class:`WindowMaker` cuts those samples into
*windows* (a span of time, the steps counted in it, the spe in effect) and marks the ones that are
no evidence of the throughput at that spe:

``warmup``
    After an spe change (and at the start) the call in progress still runs at the old spe, and the
    first call at the new one may include compilation (JAX, torch.compile). Windows that begin
    before the counter has moved by ``old`` steps since the change are discarded, and then one
    more, if it begins before ``old + new``: with a counter that moves per call, that one holds the
    first new call; at least one window is discarded, whatever kind of counter it is.
``pause``
    No steps for a while (evaluation, a checkpoint, a stall, training not started yet): the window
    that spans the gap, the one before it (the pause began in it) and the one after it are dropped.
    A gap is a pause when it is longer than ``pause_factor`` times both the tick interval and the
    expected duration of one call (a counter that moves once per call, as a multi-step runner's
    does, stands still for a whole call).
``boundary``
    The training loop said something other than training happened in it
    (:meth:`WindowMaker.mark_boundary`, e.g. at an epoch end).
``reset``
    The counter went backwards (a new optimizer, a restored checkpoint).
``spe change``
    The spe was changed in the middle of a window.

A window is only handed out once the next one has closed, so that a pause can still mark the window
in which it began. A tick that saw no new step never closes a window: with a counter that moves
once per call, a window spans at least one call.

Pure bookkeeping: no threads, no clock; the caller passes the time. Not thread-safe (the tuner calls
it under its lock).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

__all__ = ["Discard", "Window", "WindowMaker"]


class Discard(str, enum.Enum):
    """Why a window is no evidence of the throughput at its spe."""

    WARMUP = "warmup"
    PAUSE = "pause"
    BOUNDARY = "boundary"
    RESET = "reset"
    SPE_CHANGE = "spe change"


@dataclass(frozen=True)
class Window:
    """``steps`` training steps counted between ``start`` and ``end`` (seconds) at spe ``spe``.

    ``discard`` is None for a window that is evidence, else the reason it is not.
    """

    start: float
    end: float
    steps: int
    spe: int
    discard: Discard | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def throughput(self) -> float:
        """Steps per second (0 for a window of no duration)."""
        seconds = self.seconds
        return self.steps / seconds if seconds > 0 else 0.0


class WindowMaker:
    """Turns ``(time, count)`` samples taken every ``interval`` seconds into :class:`Window` s."""

    def __init__(self, interval: float, *, pause_factor: float = 4.0) -> None:
        self._interval = interval
        self._pause_factor = pause_factor
        self._spe = 1
        self._start = 0.0
        self._count = 0
        self._last_step = 0.0
        self._old_done = 0
        self._warm_until = 0
        self._warm_windows = 0
        self._boundary = False
        self._after_pause = False
        self._seconds_per_step: float | None = None
        self._held: Window | None = None

    @property
    def spe(self) -> int:
        """The spe the open window is measuring."""
        return self._spe

    def begin(self, now: float, count: int, spe: int) -> None:
        """Start measuring at ``now``: the counter reads ``count`` and ``spe`` is in effect.

        The call in progress started before ``now``, so the steps up to ``count + spe`` are
        warm-up. Forgets any window not handed out yet.
        """
        self._spe = spe
        self._start = now
        self._count = count
        self._last_step = now
        self._warm(count, count, count + spe)
        self._boundary = False
        self._after_pause = False
        self._held = None

    def mark_boundary(self) -> None:
        """Discard the window now open: something other than training happens in it."""
        self._boundary = True

    def change(self, now: float, count: int, spe: int) -> list[Window]:
        """The spe in effect becomes ``spe`` at ``now``, when the counter reads ``count``.

        Returns the windows that this hands out: the held one, and the open one cut short (marked
        ``spe change``) if steps were counted in it. Steps up to ``count + old + new`` are warm-up.
        """
        out = self._release()
        if count > self._count and now > self._start:
            out.append(Window(self._start, now, count - self._count, self._spe, Discard.SPE_CHANGE))
        old = self._spe
        self._spe = spe
        self._start = now
        self._count = count
        self._last_step = now
        self._warm(count, count + old, count + old + spe)
        self._boundary = False
        return out

    def sample(self, now: float, count: int) -> list[Window]:
        """The counter reads ``count`` at ``now``; returns the windows handed out (0, 1 or 2)."""
        steps = count - self._count
        if steps < 0:
            out = self._release()
            out.append(Window(self._start, now, 0, self._spe, Discard.RESET))
            self.begin(now, count, self._spe)
            return out
        if steps == 0:
            return []  # no step since the last close: the window stays open
        gap = now - self._last_step
        pause = gap > self._pause_after()
        reason: Discard | None
        if pause or self._after_pause:
            reason = Discard.PAUSE
        elif self._boundary:
            reason = Discard.BOUNDARY
        elif self._warming():
            reason = Discard.WARMUP
        else:
            reason = None
        window = Window(self._start, now, steps, self._spe, reason)
        if reason is None:
            self._seconds_per_step = window.seconds / steps
        self._after_pause = pause
        self._start = now
        self._count = count
        self._last_step = now
        self._boundary = False
        held, self._held = self._held, window
        if held is None:
            return []
        if pause and held.discard is None:
            held = replace(held, discard=Discard.PAUSE)
        return [held]

    def _warm(self, count: int, old_done: int, warm_until: int) -> None:
        self._old_done = old_done
        self._warm_until = warm_until
        self._warm_windows = 0

    def _warming(self) -> bool:
        """Whether the window now closing (it started at ``self._count``) is warm-up.

        Every window that began before the old call's steps were done is; of the windows that
        began after, before the first new call's steps were, only the first: with a counter that
        moves per call it holds that first call (and any compilation), while with a counter that
        moves per step a slow value must not be kept in warm-up for a whole call.
        """
        if self._count < self._old_done:
            return True
        if self._count < self._warm_until and self._warm_windows == 0:
            self._warm_windows = 1
            return True
        return False

    def _release(self) -> list[Window]:
        held, self._held = self._held, None
        return [] if held is None else [held]

    def _pause_after(self) -> float:
        """How long without a step counts as a pause rather than a long call."""
        call = 0.0 if self._seconds_per_step is None else self._seconds_per_step * self._spe
        return self._pause_factor * max(self._interval, call)
