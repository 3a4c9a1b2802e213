"""The cross-rank decisions as pure functions and small state records (no threads, no I/O).

* :class:`Liveness`: which peers have stopped sending heartbeats, on the local monotonic clock.
* :func:`agreed_step`: the step every rank stops (or switches spe) after, from what each rank had
  committed to when it learned of the event.
* :class:`StepPlan`: given the agreed steps, what ``should_stop_at(step)`` and
  ``SharedStepsPerExecution.value_at(step)`` answer.
* :class:`LogView`: what the ordered event log says so far (who left, who died, the first stop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._records import Dead, Entry, Left, Stop

__all__ = ["UNSET", "Liveness", "LogView", "StepPlan", "agreed_step", "self_silent"]

UNSET: Any = object()
"""A commit not made yet (None is a commit: "this rank tracks no steps")."""


@dataclass
class _Peer:
    value: str | None
    changed_at: float


class Liveness:
    """Tracks each peer's heartbeat counter; a peer whose counter has not moved for ``timeout``
    seconds (measured on this rank's monotonic clock, so no clock sync is needed) is dead."""

    def __init__(
        self, peers: Iterable[int], timeout: float, now: float, *, first_grace: float = 0.0
    ) -> None:
        self.timeout = timeout
        # Before a peer's first heartbeat has been read its silence counts from ``now`` plus
        # ``first_grace`` (the rendezvous has just ended; its first beat may be on its way).
        self._peers = {rank: _Peer(None, now + first_grace) for rank in peers}
        self._gone: set[int] = set()

    @property
    def watched(self) -> list[int]:
        """The peers still watched, in rank order."""
        return sorted(r for r in self._peers if r not in self._gone)

    def forget(self, rank: int) -> None:
        """Stop watching ``rank`` (it left normally, or was already declared dead)."""
        self._gone.add(rank)

    def observe(self, now: float, counters: Mapping[int, str | None]) -> list[tuple[int, float]]:
        """Record the counters read at ``now``; return ``(rank, silent_for)`` of newly dead peers.

        A counter that changed (to anything) is a heartbeat; the first read of a peer counts as
        one. A peer is declared dead once, then no longer watched.
        """
        dead = []
        for rank, value in sorted(counters.items()):
            peer = self._peers.get(rank)
            if peer is None or rank in self._gone:
                continue
            if value is not None and value != peer.value:
                peer.value = value
                peer.changed_at = now
            elif now - peer.changed_at >= self.timeout:
                dead.append((rank, now - peer.changed_at))
                self._gone.add(rank)
        return dead

    def silent(self, now: float) -> list[tuple[int, float]]:
        """``(rank, seconds)`` for each watched peer since its counter last moved."""
        return [(r, now - self._peers[r].changed_at) for r in self.watched]


def self_silent(now: float, last_beat: float | None, timeout: float) -> float | None:
    """How long this rank has gone without sending a heartbeat, when that is ``timeout`` or more
    (its peers have declared it dead, or are about to); None otherwise or before its first."""
    if last_beat is None or now - last_beat < timeout:
        return None
    return now - last_beat


def agreed_step(commits: Sequence[int | None]) -> int | None:
    """The largest step any rank had committed to (None when no rank tracks steps)."""
    steps = [c for c in commits if c is not None]
    return max(steps) if steps else None


@dataclass
class StepPlan:
    """What the step-gated calls answer once the agreements are known.

    ``stop_after``: ranks run every step up to and including it and stop at the first step past
    it (None with ``stopping``: no rank tracked steps, stop at once). ``stop_now``: no agreement
    is possible (a rank died, the store is gone): stop at the next call. ``switches``:
    ``(after, value)`` pairs in log order; a call that starts at a step past ``after`` uses
    ``value``.
    """

    initial_spe: int = 1
    stopping: bool = False
    stop_after: int | None = None
    stop_now: bool = False
    switches: list[tuple[int | None, int]] = field(default_factory=list)

    def should_stop_at(self, step: int) -> bool:
        if self.stop_now:
            return True
        if not self.stopping:
            return False
        return self.stop_after is None or step > self.stop_after

    def spe_at(self, step: int) -> int:
        value = self.initial_spe
        for after, new in self.switches:
            if after is None or step > after:
                value = new
        return value


@dataclass
class LogView:
    """The event log as read so far, in order (every rank reads the same order)."""

    world_size: int
    length: int = 0
    left: dict[int, int] = field(default_factory=dict)  # rank -> index of its 'left' entry
    dead: dict[int, int] = field(default_factory=dict)  # rank -> index of its 'dead' entry
    first_stop: int | None = None

    def apply(self, index: int, entry: Entry) -> None:
        """Take entry ``index`` (entries come in order, each once)."""
        if index != self.length:
            raise ValueError(
                f"log entries must be applied in order: expected {self.length}, got {index}"
            )
        self.length = index + 1
        if isinstance(entry, Left):
            self.left.setdefault(entry.origin.rank, index)
        elif isinstance(entry, Dead):
            self.dead.setdefault(entry.rank, index)
        elif isinstance(entry, Stop) and self.first_stop is None:
            self.first_stop = index

    def expected_at(self, index: int, dead_now: Iterable[int] = ()) -> list[int]:
        """The ranks that must answer an agreement opened at entry ``index``: all but those that
        left before it and those known dead."""
        gone = {r for r, i in self.left.items() if i < index} | set(self.dead) | set(dead_now)
        return [r for r in range(self.world_size) if r not in gone]
