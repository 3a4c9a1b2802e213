"""When a job is stalled, and which rank holds it back: pure decisions, no threads, no I/O.

Progress is the step each rank last passed to ``should_stop_at(step)``, which every heartbeat
carries; every rank sees every rank's step once per heartbeat interval, on its own monotonic
clock, without a request more. :class:`StallWatch` keeps, per rank, when its step last changed.

* A live rank that has not advanced for the timeout stalls the job.
* The clock starts at the first *completed* step of any rank (a step value that changed): the
  first step (compilation, warm-up) and a rank that starts late never trigger before that.
* Progress is a new step, or a new *phase*: a rank inside ``coord.phase("evaluation")`` says so
  on its heartbeat, and entering or leaving a phase counts as progress. A rank's time is cut into
  segments between two progress events, each labelled with the phase it ran in (None: outside
  any phase, the training steps).
* ``timeout="auto"``, per phase: ``max(AUTO_FLOOR, AUTO_FACTOR x the longest segment seen in the
  rank's current phase)``; a phase with no segment yet uses the longest segment of any phase.
  Until a step has completed no verdict is given (the first step may take anything). A save or
  an evaluation that takes up to AUTO_FACTOR times the longest segment seen never triggers; once
  it has happened it is the longest of its phase (marked as a phase, it leaves the training
  steps' timeout as it was: a 10-minute evaluation does not make a stuck step wait 16 hours).

:func:`suspect` names the rank that holds the job back: the one with the lowest step; where the
lowest is shared, the one whose main-thread stack differs from the others'.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import final

__all__ = ["AUTO_FACTOR", "AUTO_FLOOR", "Stall", "StallWatch", "suspect"]

AUTO_FLOOR = 60.0
"""Seconds: the least an automatic stall timeout can be."""
AUTO_FACTOR = 100.0
"""The automatic timeout is this many times the longest gap between two steps seen so far."""


@final
@dataclass(frozen=True, kw_only=True)
class Stall:
    """A verdict: ``rank`` (the first rank found stalled) has not advanced for ``seconds``
    (``timeout`` in force), at ``steps`` (each rank's last step, None before its first)."""

    rank: int
    seconds: float
    timeout: float
    steps: dict[int, int | None]


@dataclass
class _Progress:
    step: int | None = None
    since: float | None = None  # when ``step`` (or ``phase``) was first seen
    phase: str | None = None


@dataclass
class StallWatch:
    """Every rank's progress as seen by one rank (see module docs).

    ``timeout``: seconds, or None for the automatic timeout.
    """

    ranks: Sequence[int]
    timeout: float | None
    first_completed: float | None = None
    longest: dict[str | None, float] = field(default_factory=dict)  # phase -> longest segment
    _progress: dict[int, _Progress] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._progress = {r: _Progress() for r in self.ranks}

    @property
    def longest_gap(self) -> float:
        """The longest segment seen so far, in any phase."""
        return max(self.longest.values(), default=0.0)

    def observe(
        self,
        now: float,
        steps: Mapping[int, int | None],
        firsts: Mapping[int, int | None] | None = None,
        phases: Mapping[int, str | None] | None = None,
    ) -> None:
        """Record each rank's step as read at ``now`` (None: no step yet, or not readable).

        ``firsts``: each rank's first step; a rank past its first step has completed one, even
        when its steps moved faster than these reads (the first such reading starts the
        clock). ``phases``: each rank's phase (None: outside any); without it, phases are not
        followed."""
        for rank, step in steps.items():
            first = None if firsts is None else firsts.get(rank)
            if (
                self.first_completed is None
                and step is not None
                and first is not None
                and step != first
            ):
                self.first_completed = now
            p = self._progress.get(rank)
            if p is None or step is None:
                continue
            phase = p.phase if phases is None else phases.get(rank)
            moved = step != p.step
            if not moved and phase == p.phase:
                continue
            if p.step is not None and p.since is not None:
                self.longest[p.phase] = max(self.longest.get(p.phase, 0.0), now - p.since)
                if moved and self.first_completed is None:
                    self.first_completed = now
            p.step = step
            p.since = now
            p.phase = phase

    def effective_timeout(self, phase: str | None = None) -> float | None:
        """The timeout in force for a rank in ``phase`` (None: no verdict possible yet)."""
        if self.timeout is not None:
            return self.timeout
        if self.first_completed is None:
            return None
        basis = self.longest.get(phase)
        return max(AUTO_FLOOR, AUTO_FACTOR * (self.longest_gap if basis is None else basis))

    def verdict(self, now: float, live: Sequence[int]) -> Stall | None:
        """The stall at ``now`` among the ``live`` ranks (heartbeats still arriving), if any."""
        if self.first_completed is None:
            return None
        worst: tuple[float, int, float] | None = None
        for rank in live:
            p = self._progress.get(rank)
            timeout = self.effective_timeout(None if p is None else p.phase)
            if p is None or timeout is None:
                continue
            since = self.first_completed if p.since is None else max(p.since, self.first_completed)
            quiet = now - since
            if quiet >= timeout and (worst is None or quiet > worst[0]):
                worst = (quiet, rank, timeout)
        if worst is None:
            return None
        return Stall(
            rank=worst[1],
            seconds=worst[0],
            timeout=worst[2],
            steps={r: p.step for r, p in self._progress.items()},
        )

    def phase_of(self, rank: int) -> str | None:
        """The phase ``rank`` was last seen in."""
        p = self._progress.get(rank)
        return None if p is None else p.phase


def suspect(
    steps: Mapping[int, int | None], stacks: Mapping[int, Sequence[str]]
) -> tuple[int | None, str]:
    """The rank that holds the job back, and why (``(None, why)`` when it cannot be told).

    ``steps``: each answering rank's last step (None: none yet, counted as lowest);
    ``stacks``: each answering rank's main-thread signature (its innermost frames).
    """
    if not steps:
        return None, "no rank answered"
    lowest = min(-math.inf if s is None else s for s in steps.values())
    behind = sorted(r for r, s in steps.items() if (-math.inf if s is None else s) == lowest)
    if len(behind) == 1 and len(steps) > 1:
        return behind[0], f"the lowest step ({_step(steps[behind[0]])})"
    signatures = {r: tuple(stacks.get(r, ())) for r in behind}
    free = [r for r in behind if not waits_for_peers(signatures[r])]
    if len(free) == 1 and len(behind) > 1:
        return free[0], (
            "the lowest step is shared; the others wait for their peers (a collective), its "
            "main thread does not"
        )
    counts = Counter(signatures.values())
    odd = [r for r, sig in signatures.items() if counts[sig] == 1]
    if len(odd) == 1 and len(behind) > 2:
        return odd[0], "the lowest step is shared; its main thread is elsewhere than the others'"
    if len(behind) == 2 and len(counts) == 2:
        return None, "two ranks at the lowest step, their main threads in two places"
    return None, "the ranks at the lowest step are in the same place"


# Innermost frames (``file.py:function``) of a main thread that waits for its peers: torch's
# collectives, and autograd's backward, inside which DDP runs its gradient all-reduce.
_WAITING_FRAMES = (
    "distributed_c10d.py:",
    "graph.py:_engine_run_backward",
    "multihost_utils.py:",
)


def waits_for_peers(signature: Sequence[str]) -> bool:
    """Whether a main-thread signature (innermost first) shows a wait for the other ranks."""
    return any(frame.startswith(_WAITING_FRAMES) for frame in signature[:3])


def _step(step: int | None) -> str:
    return "none yet" if step is None else str(step)
