"""Slow ranks named from the heartbeats: the busy-time sampler and the report.

A rank's main thread is *busy* when it is not waiting for its peers in a collective. A daemon
thread looks at where the main thread is every :data:`SAMPLE_SECONDS` (``sys._current_frames``:
no signal, nothing on the main thread) and credits the time since its last look as busy unless
the innermost frames are a wait for the peers (:func:`~._stall_policy.waits_for_peers`). The
total rides on the heartbeat this rank already writes; every rank reads every rank's beat once
per interval already, and feeds the readings to a :class:`~._pace_policy.PaceWatch`. No
collective, no device sync, no store request more.

What it cannot see: time the main thread spends waiting on a device (a CUDA sync, JAX's
``block_until_ready``) counts as busy, and DDP's backward counts as waiting (its all-reduce runs
inside it), so a rank slow in its backward pass is not told apart. See docs/distributed.md.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from .._clock import MonotonicClock
from .._naming import start_daemon
from ._pace_policy import PaceReading, PaceWatch, SlowRank
from ._stall_policy import waits_for_peers

if TYPE_CHECKING:
    from ._replica import Replica

__all__ = ["SAMPLE_SECONDS", "Pace"]

logger = logging.getLogger("tickwork.distributed")

SAMPLE_SECONDS = 0.02
"""How often the sampler looks at the main thread (50 times a second)."""


def _main_thread_waits(main: int) -> bool:
    """Whether the main thread (ident ``main``) is waiting for its peers right now."""
    frame = sys._current_frames().get(main)  # noqa: SLF001
    frames: list[str] = []
    while frame is not None and len(frames) < 3:
        code = frame.f_code
        frames.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
        frame = frame.f_back
    return waits_for_peers(frames)


class Pace:
    """One rank's busy time and its view of every rank's pace (see module docs)."""

    def __init__(self, replica: Replica) -> None:
        self._r = replica
        self.busy = 0.0  # seconds; written by the sampler thread only
        self._lock = threading.Lock()
        self._watch = PaceWatch(list(range(replica.world)), max(replica.interval, 1.0))
        self._offset = 0.0  # the Coordinator's clock minus the sampler's, for reports

    def start(self) -> threading.Thread:
        return start_daemon(self._sample, f"distributed pace sampler (rank {self._r.rank})")

    def _sample(self) -> None:
        r = self._r
        main = threading.main_thread().ident or -1
        clock = MonotonicClock()  # real time: what the main thread spends is real
        last = clock.now()
        while not r.threads_stop.is_set():
            clock.wait(r.threads_stop, SAMPLE_SECONDS)
            now = clock.now()
            if not _main_thread_waits(main):
                self.busy += now - last
            last = now

    def reading(self) -> PaceReading:
        """This rank's own reading (for its heartbeat and its own view)."""
        return PaceReading(step=self._r.position, busy=self.busy)

    def observe(self, now: float, readings: dict[int, PaceReading | None]) -> None:
        """Every rank's reading at ``now`` (heartbeat thread); logs what changed."""
        with self._lock:
            changes = self._watch.observe(now, readings)
        r = self._r
        loud = r.rank == min(x for x in range(r.world) if x not in r.dead)
        for what, slow in changes:
            level = logging.WARNING if loud and what != "ended" else logging.DEBUG
            if what == "ended" and loud:
                level = logging.INFO
            logger.log(level, "rank %d: %s", r.rank, describe(what, slow, now))

    def slow_now(self) -> list[SlowRank]:
        with self._lock:
            return self._watch.slow_now()

    def episodes(self) -> list[SlowRank]:
        with self._lock:
            return self._watch.episodes()


def describe(what: str, slow: SlowRank, now: float) -> str:
    """One log line for a change in a rank's pace."""
    per_step = (
        f"{slow.busy_per_step * 1000:.1f} ms busy per step against the others' "
        f"{slow.others_per_step * 1000:.1f} ms"
    )
    if what == "named":
        kind = "lags chronically" if slow.chronic else "is slow"
        return (
            f"rank {slow.rank} {kind}: {slow.slower_by:.0%} more busy time per step than the "
            f"median of the others for {slow.windows} windows in a row ({per_step}; "
            f"since {now - slow.since:.1f} s ago; {slow.pauses} shorter pauses before)"
        )
    if what == "chronic":
        return (
            f"rank {slow.rank} lags chronically: slow in at least half of its last windows, "
            f"{slow.slower_by:.0%} more busy time per step ({per_step})"
        )
    until = now if slow.until is None else slow.until
    return f"rank {slow.rank} is back to pace after {until - slow.since:.1f} s slow"
