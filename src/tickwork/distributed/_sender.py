"""The outbox and the heartbeats: the one thread that writes to the store on a rank's behalf.

It runs on the client the caller gave (the default process group's store, say): its calls are
short, and a blocking wait never runs on it. Entries are posted in the order they were handed
over: a stop first rings every rank's bell (the fast path; see :mod:`._watcher`), then claims
the next free entry of the event log (first writer wins). Between posts it beats on the core's
:class:`~tickwork._ticker.Ticker`: each beat writes this rank's counter and the step it last
passed, then reads the peers' beats (2 requests per interval); a peer whose counter has not
moved for ``heartbeat_timeout`` is declared dead. A rank that finds it has not beaten for that
long itself (it was frozen) knows its peers have given up on it.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING

from .._clock import any_stop
from .._naming import start_daemon
from .._schedule import Overrun
from .._sync import SignalSafeEvent
from .._ticker import Ticker
from ._errors import StoreRecordError
from ._pace_policy import PaceReading
from ._policy import Liveness, self_silent
from ._records import Beat, Dead, Entry, Left, Stop, encode, encode_origin, parse_beat
from ._store import StoreError
from ._tracked import TrackedStore

if TYPE_CHECKING:
    from ._replica import Replica

__all__ = ["Sender"]

logger = logging.getLogger(__name__)

FIRST_BEAT_GRACE = 30.0
"""Extra seconds before a peer's first heartbeat is missed (right after the rendezvous)."""


class Sender:
    """One rank's outbox and heartbeats (see the module docs)."""

    def __init__(self, replica: Replica, kv: TrackedStore) -> None:
        self._r = replica
        self._kv = kv
        self._outbox: collections.deque[tuple[Entry, BaseException | None]] = collections.deque()
        self._busy = False
        self._wake = SignalSafeEvent()
        self._posted = SignalSafeEvent()
        self._broken = False
        self._count = 0
        self._warned: set[int] = set()
        self.last_index = -1
        self.last_beat: float | None = None
        keys = replica.keys
        self._beat_key = keys.beat(replica.rank)
        self._peer_keys = {r: keys.beat(r) for r in replica.others()}
        self._lock = threading.Lock()
        self._liveness = Liveness(
            replica.others(), replica.timeout, replica.clock.now(), first_grace=FIRST_BEAT_GRACE
        )
        self._ticker = Ticker(
            replica.interval,
            self._beat,
            clock=replica.clock,
            overrun=Overrun.SKIP,
            on_error=self._beat_failed,
        )
        until = any_stop(self._wake, replica.threads_stop)
        assert until is not None
        self._until = until

    def start(self) -> threading.Thread:
        return start_daemon(self._run, f"distributed sender (rank {self._r.rank})")

    # -- the outbox -------------------------------------------------------------------------------

    def enqueue(self, entry: Entry, error: BaseException | None) -> None:
        self._posted.clear()
        self._outbox.append((entry, error))
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def flush(self, limit: float) -> bool:
        """Wait (until ``limit``) for the outbox to be posted; False if it was not."""
        while self._outbox or self._busy:
            self._posted.clear()
            if not (self._outbox or self._busy):
                break
            if not self._r.clock.wait_until(self._posted, limit):
                return False
        return True

    def forget(self, rank: int) -> None:
        with self._lock:
            self._liveness.forget(rank)

    def _post_all(self) -> None:
        while self._outbox:
            entry, error = self._outbox[0]
            self._busy = True
            try:
                if not self._broken:
                    self._post(entry, error)
            except StoreError as e:
                self._broken = True
                self._r.store_failed(e)
            finally:
                self._outbox.popleft()
                self._busy = False
                self._posted.set()

    def _post(self, entry: Entry, error: BaseException | None) -> None:
        r = self._r
        kv = self._kv
        text = encode(entry)
        if isinstance(entry, Stop | Dead):  # ring first: every rank's flag in one delay
            bell = encode_origin(r.origin)
            for rank in range(r.world):
                kv.set(r.keys.bell(rank), bell)
        index = max(r.log_length, self.last_index + 1)
        while not kv.claim(r.keys.entry(index), text):
            index += 1
        self.last_index = index
        r.note_posted(error, index)
        if isinstance(entry, Left):  # wake this rank's bell so that its thread ends
            kv.set(r.keys.bell(r.rank), encode_origin(r.origin))

    # -- the heartbeats ---------------------------------------------------------------------------

    def _beat(self) -> None:
        r = self._r
        if r.fatal is not None:
            return
        now = r.clock.now()
        silent = self_silent(now, self.last_beat, r.timeout)
        if silent is not None:
            r.died_here(silent)
            return
        self._count += 1
        own = None if r.pace is None else r.pace.reading()
        beat = Beat(
            count=self._count,
            step=r.position,
            first=r.first_position,
            busy_ms=None if own is None else int(own.busy * 1000),
            phase=r.phase,
        )
        self._kv.set(self._beat_key, encode(beat))
        self.last_beat = r.clock.now()
        if r.stalls is not None:
            r.stalls.arm_backstop()
        with self._lock:
            watched = self._liveness.watched
        values = self._kv.get_many([self._peer_keys[p] for p in watched], present=True)
        beats = {p: self._parse(p, raw) for p, raw in zip(watched, values, strict=True)}
        counters = {p: None if b is None else str(b.count) for p, b in beats.items()}
        now = r.clock.now()
        with self._lock:
            dead = self._liveness.observe(now, counters)
            live = [r.rank, *self._liveness.watched]
        for rank, quiet in dead:
            r.declare_dead(rank, quiet, r.rank, post=True)
        if r.stalls is not None and not dead:
            steps = {p: None if b is None else b.step for p, b in beats.items()}
            steps[r.rank] = r.position
            firsts = {p: None if b is None else b.first for p, b in beats.items()}
            firsts[r.rank] = r.first_position
            phases = {p: None if b is None else b.phase for p, b in beats.items()}
            phases[r.rank] = beat.phase
            r.stalls.observe(now, steps, live, firsts, phases)
        if r.pace is not None and own is not None and not dead:
            readings: dict[int, PaceReading | None] = {
                p: None if b is None or b.busy_ms is None else PaceReading(b.step, b.busy_ms / 1000)
                for p, b in beats.items()
            }
            readings[r.rank] = PaceReading(own.step, int(own.busy * 1000) / 1000)
            r.pace.observe(now, readings)

    def _parse(self, rank: int, raw: str | None) -> Beat | None:
        """The peer's beat, or None (no beat) for a value that is not a heartbeat."""
        try:
            return parse_beat(raw, self._peer_keys[rank], self._r.describe)
        except StoreRecordError as e:
            if rank not in self._warned:
                self._warned.add(rank)
                logger.warning("rank %d: ignoring a heartbeat that is not one: %s", self._r.rank, e)
            return None

    def _beat_failed(self, error: BaseException) -> bool:
        if isinstance(error, StoreError):
            self._broken = True
            self._r.store_failed(error)
            return False
        logger.error("tickwork.distributed heartbeat failed", exc_info=error)
        self._r.fail(error)
        return False

    def _run(self) -> None:
        r = self._r
        try:
            while True:
                self._wake.clear()
                self._post_all()
                if r.threads_stop.is_set():
                    return
                if self._broken or r.fatal is not None:
                    r.clock.wait(self._until, None)  # only posts now (close() posts 'left')
                    continue
                self._ticker.run(self._until)  # until woken to post, or told to end
        except BaseException as e:  # a bug: keep it, never lose it
            logger.exception("tickwork.distributed sender failed")
            r.fail(e)
        finally:
            self._posted.set()

    def after_fork_in_child(self) -> None:
        self._outbox = collections.deque()
        self._lock = threading.Lock()
