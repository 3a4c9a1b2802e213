"""Which rank is slow: pure decisions on what the heartbeats carry, no threads, no I/O.

Every heartbeat carries the rank's step and its *busy* time so far: the seconds its main thread
spent not waiting for its peers (sampled by :mod:`._pace`). Wall time per step says nothing in a
job whose steps end in a collective (every rank waits for the slowest, so every rank's step takes
as long); busy time per step does: the slow rank is the one that waits least.

:class:`PaceWatch` cuts what it reads into windows of at least :data:`WINDOW_SECONDS`. In each
window, each rank that completed a step costs ``busy seconds / steps``; a rank that costs at
least :data:`SLOW_FACTOR` times the median of the others' costs is slow in that window.

* :data:`NAMED_AFTER` slow windows in a row name it (an episode, with since when and how much
  slower); fewer are a *pause* (a one-off: a collection, a slow read), counted, not named.
* A rank slow in at least :data:`CHRONIC_SHARE` of its last :data:`CHRONIC_WINDOWS` windows that
  had a step is a *chronic* laggard, told apart from an episode that comes and goes.
* A window in which a rank completed no step tells nothing about it (a long step, a save).
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import final

__all__ = [
    "CHRONIC_SHARE",
    "CHRONIC_WINDOWS",
    "NAMED_AFTER",
    "SLOW_FACTOR",
    "WINDOW_SECONDS",
    "PaceReading",
    "PaceWatch",
    "SlowRank",
]

WINDOW_SECONDS = 1.0
"""The shortest window compared (windows are one heartbeat interval when it is longer)."""
SLOW_FACTOR = 1.15
"""A rank is slow in a window when its busy time per step is at least this many times the
median of the other ranks'."""
NAMED_AFTER = 3
"""Slow windows in a row that name a slow rank (fewer: a pause)."""
CHRONIC_WINDOWS = 30
"""The recent windows (with a step) looked at to call a rank chronic."""
CHRONIC_SHARE = 0.5
"""The share of those windows in which a chronic laggard was slow."""
_EPISODES_KEPT = 100


@final
@dataclass(frozen=True)
class PaceReading:
    """What one heartbeat says of a rank's pace: its step (None before the first) and its main
    thread's busy seconds so far."""

    step: int | None
    busy: float


@final
@dataclass(frozen=True, kw_only=True)
class SlowRank:
    """A rank named slow: ``NAMED_AFTER`` windows in a row or more, each at least ``SLOW_FACTOR``
    times the median busy time per step of the other ranks.

    Attributes:
        rank: the slow rank.
        slower_by: how much more busy time per step it took than the median of the others, as
            a fraction (``0.3``: 30 % more), the median over the episode's windows.
        busy_per_step, others_per_step: its busy seconds per step and the others' median, in
            the episode's latest slow window.
        since: when the episode began (the start of its first slow window), on the
            Coordinator's clock (``time.monotonic()`` unless a clock was given).
        until: when it ended (the end of its last slow window); None while it goes on.
        windows: how many windows in a row it was slow.
        chronic: slow in at least half of its last 30 windows (so at least 15 of them): a
            laggard, not an episode.
        pauses: shorter slow runs of this rank before this episode (one-off pauses).
    """

    rank: int
    slower_by: float
    busy_per_step: float
    others_per_step: float
    since: float
    until: float | None
    windows: int
    chronic: bool
    pauses: int


@dataclass
class _Track:
    run: list[float] = field(default_factory=list)  # the current slow run's ratios
    run_since: float | None = None
    history: collections.deque[bool] = field(
        default_factory=lambda: collections.deque(maxlen=CHRONIC_WINDOWS)
    )
    pauses: int = 0
    current: SlowRank | None = None  # the episode under way


@dataclass
class PaceWatch:
    """Every rank's pace as seen by one rank (see module docs)."""

    ranks: Sequence[int]
    window: float = WINDOW_SECONDS
    _ended: collections.deque[SlowRank] = field(
        default_factory=lambda: collections.deque(maxlen=_EPISODES_KEPT)
    )
    _start: float | None = None
    _base: dict[int, PaceReading] = field(default_factory=dict)
    _tracks: dict[int, _Track] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tracks = {r: _Track() for r in self.ranks}

    def observe(
        self, now: float, readings: Mapping[int, PaceReading | None]
    ) -> list[tuple[str, SlowRank]]:
        """Take the readings made at ``now``; what changed, as ``(what, episode)`` pairs:
        ``"named"`` (a rank became slow), ``"chronic"`` (its lag became chronic) and ``"ended"``
        (it is back to pace)."""
        if self._start is None:
            self._start = now
            self._base = {r: x for r, x in readings.items() if x is not None}
            return []
        if now - self._start < self.window:
            return []
        costs: dict[int, float] = {}
        for rank, reading in readings.items():
            base = self._base.get(rank)
            if reading is None or base is None or reading.step is None or base.step is None:
                continue
            steps = reading.step - base.step
            if steps > 0:
                costs[rank] = max(reading.busy - base.busy, 0.0) / steps
        began, self._start = self._start, now
        self._base = {r: x for r, x in readings.items() if x is not None}
        return self._judge(began, costs)

    def _judge(self, began: float, costs: dict[int, float]) -> list[tuple[str, SlowRank]]:
        changes: list[tuple[str, SlowRank]] = []
        if len(costs) < 2:
            return changes
        for rank, cost in costs.items():
            track = self._tracks.get(rank)
            if track is None:
                continue
            others = statistics.median(c for r, c in costs.items() if r != rank)
            slow = cost >= SLOW_FACTOR * others and cost > 0.0
            track.history.append(slow)
            if slow:
                if not track.run:
                    track.run_since = began
                track.run.append(cost / others - 1.0 if others > 0.0 else float("inf"))
                changes += self._slow_window(rank, track, cost, others)
            else:
                changes += self._end_run(track, began)
        return changes

    def _slow_window(
        self, rank: int, track: _Track, cost: float, others: float
    ) -> list[tuple[str, SlowRank]]:
        if len(track.run) < NAMED_AFTER:
            return []
        assert track.run_since is not None
        was = track.current
        track.current = SlowRank(
            rank=rank,
            slower_by=statistics.median(track.run),
            busy_per_step=cost,
            others_per_step=others,
            since=track.run_since,
            until=None,
            windows=len(track.run),
            chronic=sum(track.history) >= CHRONIC_SHARE * CHRONIC_WINDOWS,
            pauses=track.pauses,
        )
        if was is None:
            return [("named", track.current)]
        return [("chronic", track.current)] if track.current.chronic and not was.chronic else []

    def _end_run(self, track: _Track, ended: float) -> list[tuple[str, SlowRank]]:
        changes: list[tuple[str, SlowRank]] = []
        if track.current is not None:
            done = replace(track.current, until=ended)
            self._ended.append(done)
            changes.append(("ended", done))
        elif track.run:
            track.pauses += 1
        track.run = []
        track.run_since = None
        track.current = None
        return changes

    def slow_now(self) -> list[SlowRank]:
        """The episodes under way, the slowest first."""
        going = [t.current for t in self._tracks.values() if t.current is not None]
        return sorted(going, key=lambda e: -e.slower_by)

    def episodes(self) -> list[SlowRank]:
        """Every episode named, ended ones (the last 100) first, in order."""
        going = [t.current for t in self._tracks.values() if t.current is not None]
        return [*self._ended, *sorted(going, key=lambda e: e.since)]
