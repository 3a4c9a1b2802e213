"""One rank's share of the job: what the log said, what was agreed, and the failure fan-out.

A :class:`Replica` is made of small parts, each in its own module and thread:

* :mod:`._rendezvous`: who the ranks are (before any thread starts);
* :mod:`._sender`: the outbox (entries this rank posts to the event log) and the heartbeats;
* :mod:`._watcher`: the event-log reader and the stop bell (the fast path of a stop);
* :mod:`._agreement`: the step every rank stops (or switches steps per execution) after;
* :mod:`._watchdog`: store calls that never return, and this process's own freezes;
* :mod:`._stall` and :mod:`._pace` (when asked for): a stalled job, and slow ranks.

The replica holds the state they share and decides what each entry means. The public
:class:`tickwork.distributed.Coordinator` owns one and is the only one to call it from the main
thread. Collaborators (the preemption block, the shared steps per execution) find it with
:func:`replica_of`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._clock import Clock
from .._sync import SignalSafeEvent
from ._agreement import Agreement
from ._clients import give_back, take
from ._env import Resolved
from ._errors import RankDiedError, RemoteError, StallError, StoreUnreachableError
from ._pace import Pace
from ._policy import UNSET, LogView, StepPlan, self_silent
from ._records import Dead, Entry, Left, Origin, Spe, Stalled, Stop
from ._rendezvous import Keys, Peers, rendezvous
from ._sender import Sender
from ._stall import Stalls
from ._store import StoreError
from ._tracked import Calls, TrackedStore
from ._watchdog import Watchdog
from ._watcher import Bell, LogWatcher

if TYPE_CHECKING:
    from ._preemption import PreemptionStop

__all__ = ["Replica", "replica_of"]

logger = logging.getLogger(__name__)

CLONE_GRACE = 30.0
"""Extra seconds a store ``clone()`` may take (torch's stalls 5 s under connection churn)."""

_replicas: weakref.WeakKeyDictionary[object, Replica] = weakref.WeakKeyDictionary()


def replica_of(coord: object) -> Replica:
    """The replica of a :class:`tickwork.distributed.Coordinator` (TypeError for anything else)."""
    replica = _replicas.get(coord)
    if replica is None:
        raise TypeError(f"'coord' must be a tickwork.distributed.Coordinator; got {coord!r}")
    return replica


class Replica:
    """The cross-rank state of one Coordinator and the parts that keep it (see module docs)."""

    def __init__(
        self,
        owner: object,
        found: Resolved,
        *,
        keys: Keys,
        timeout: float,
        interval: float,
        startup: float,
        clock: Clock,
        on_stop: Callable[[BaseException | None], None],
        stall: tuple[float | None, Path] | None = None,
        pace: bool = False,
    ) -> None:
        self.rank = found.rank
        self.world = found.world_size
        self.engine = found.engine
        self.hosts_store = found.hosts_store
        self.keys = keys
        self.timeout = timeout
        self.interval = interval
        self.clock = clock
        self.describe = found.store.describe()
        self._raw = found.store
        self._on_stop = on_stop
        self.calls = Calls(clock)

        self.state = threading.RLock()
        self.log = LogView(found.world_size)
        self.plan = StepPlan()
        self.dead: set[int] = set()
        self.fatal: BaseException | None = None
        self.position: int | None = None  # the step the main thread last passed in
        self.first_position: int | None = None  # the first step it passed in
        self.phase: str | None = None  # Coordinator.phase(): where the main thread is
        self.stop_commit: int | None = UNSET
        self.stop_agreed = SignalSafeEvent()
        self.error_index: dict[int, int] = {}  # id(error) -> log index
        self.preempt: dict[str, Any] | None = None  # the first stop that came from a signal
        self.signal_hint: str | None = None
        self.preemption: PreemptionStop | None = None
        self.step_hook: Callable[[int], bool] | None = None
        self.hook_stop: int | None = None
        self.spe_dirty = False
        self.spe_value = 1
        self.spe_pending = 0
        self.spe_ready = SignalSafeEvent()
        self.spe_ready.set()
        self.on_spe: Callable[[int], None] | None = None
        self.peers_changed = SignalSafeEvent()
        self.applied = SignalSafeEvent()  # set whenever the watcher applied an entry
        self.threads_stop = SignalSafeEvent()
        self.leaving = False
        self.closed = False

        # The reader's and the bell's clients first: opening one may stall (see _clients), and
        # nothing may stall once this rank's first heartbeat is written (at the rendezvous).
        self._origin_store: object = getattr(found.store, "raw", found.store)
        reader_kv, bell_kv = (self._client() for _ in range(2))
        kv = TrackedStore(found.store, self.calls, timeout)
        self.peers: Peers = rendezvous(kv, keys, self.rank, self.world, startup)
        self.origin = Origin(
            rank=self.rank,
            host=self.peers.me.host,
            pid=self.peers.me.pid,
            nonce=self.peers.me.nonce,
        )
        # (timeout or None for "auto", directory) when stall detection is on.
        self.stalls = None if stall is None else Stalls(self, stall[0], stall[1])
        self.pace = Pace(self) if pace else None
        self.agreement = Agreement(self)
        self.sender = Sender(self, kv)
        self.watcher = LogWatcher(self, reader_kv)
        self.bell = Bell(self, bell_kv)
        self.watchdog = Watchdog(self)
        self._threads = [
            part.start() for part in (self.sender, self.watchdog, self.watcher, self.bell)
        ]
        if self.pace is not None:
            self._threads.append(self.pace.start())
        _replicas[owner] = self

    # -- the parts' shared needs ------------------------------------------------------------------

    def _client(self) -> TrackedStore:
        """A client of its own for one of this rank's threads (kept or newly opened)."""
        raw = self.calls.run(
            "clone()", self.timeout + CLONE_GRACE, lambda: take(self._origin_store, self._raw)
        )
        return TrackedStore(raw, self.calls, self.timeout)

    def done_with(self, kv: TrackedStore) -> None:
        """A thread ended after a completed call: its client serves the next Coordinator."""
        give_back(self._origin_store, kv.inner)

    def where(self, rank: int) -> str:
        return self.peers.where(rank)

    def others(self) -> list[int]:
        return [r for r in range(self.world) if r != self.rank]

    @property
    def log_length(self) -> int:
        with self.state:
            return self.log.length

    # -- what an entry means ----------------------------------------------------------------------

    def apply(self, index: int, entry: Entry, kv: TrackedStore) -> None:
        """Take the log's entry ``index`` (on the watcher thread, in order)."""
        with self.state:
            first_stop = isinstance(entry, Stop) and self.log.first_stop is None
            self.log.apply(index, entry)
        origin = entry.origin.rank
        if isinstance(entry, Stop):
            if origin != self.rank:
                error: BaseException | None = None
                if entry.error is not None:
                    error = RemoteError.from_record(entry.error)
                    with self.state:
                        self.error_index[id(error)] = index
                self.stop_here(error)
            if entry.signal is not None and self.preempt is None:
                self.preempt = {
                    "signal": entry.signal,
                    "rank": origin,
                    "learned_at": self.clock.now(),
                }
            if first_stop:
                self.agreement.stop(kv, index)
        elif isinstance(entry, Dead):
            # Also when it names this rank: its peers gave up on it (it was frozen), and it
            # stops with their verdict instead of running on.
            self.declare_dead(entry.rank, entry.silent_for, origin, post=False, index=index)
        elif isinstance(entry, Left):
            self.sender.forget(origin)
            self.peers_changed.set()
        elif isinstance(entry, Spe):
            self.agreement.spe(kv, index, entry.value)
        elif isinstance(entry, Stalled):
            if self.stalls is not None:
                self.stalls.handle(kv, index, entry)
            else:  # another rank detects stalls, this one does not: it stops all the same
                self.fail(
                    StallError(None, "reported by another rank", entry.seconds, entry.timeout, None)
                )

    # -- stopping ---------------------------------------------------------------------------------

    def post_stop(self, error: BaseException | None, record: dict[str, Any] | None) -> None:
        """Post a stop (with ``record``, the error's JSON record) to every rank."""
        signal_name, self.signal_hint = self.signal_hint, None
        self.sender.enqueue(Stop(origin=self.origin, error=record, signal=signal_name), error)

    def stop_here(self, error: BaseException | None) -> None:
        """A stop that came from elsewhere (the log, a failure): local only, never raises."""
        self._on_stop(error)

    def fail(self, error: BaseException, *, post: bool = False) -> None:
        """The job cannot go on (a dead rank, the store gone, a foreign record): stop now."""
        with self.state:
            first = self.fatal is None
            if first:
                self.fatal = error
            self.plan.stop_now = True
        if first:
            if self.stalls is not None:
                self.stalls.disarm_backstop()
                if not isinstance(error, StallError):  # a stall ends the process itself
                    self.stalls.end_if_blocked_later()
            logger.error("rank %d: %s", self.rank, error)
            self.stop_here(error)
            if post:
                from ._errors import error_record

                self.post_stop(error, error_record(error, self.rank))
        self.wake_all()

    def wake_all(self) -> None:
        for event in (self.stop_agreed, self.spe_ready, self.applied, self.peers_changed):
            event.set()
        self.sender.wake()

    def store_failed(self, cause: StoreError) -> None:
        if self.closed:
            return
        silent = self_silent(self.clock.now(), self.sender.last_beat, self.timeout)
        if silent is not None:  # frozen meanwhile: the store may be gone, but that came after
            self.died_here(silent)
            return
        error = StoreUnreachableError(
            f"rank {self.rank}: the store failed: {cause} (its host died or the network broke)"
        )
        error.__cause__ = cause
        self.fail(error)

    def declare_dead(
        self, rank: int, silent: float, by: int, *, post: bool, index: int | None = None
    ) -> None:
        with self.state:
            if rank in self.dead:
                return
            self.dead.add(rank)
        self.sender.forget(rank)
        error = RankDiedError(rank, self.where(rank), silent, self.timeout, by)
        if index is not None:
            with self.state:
                self.error_index[id(error)] = index
        self.fail(error)
        if post:
            self.sender.enqueue(Dead(origin=self.origin, rank=rank, silent_for=silent), error)

    def died_here(self, silent: float) -> None:
        """This rank sent no heartbeat for ``silent`` seconds: its peers have given up on it."""
        self.declare_dead(self.rank, silent, self.rank, post=True)

    def wait_stop_agreed(self, limit: float) -> bool:
        """Wait until ``limit`` for the stop agreement; True if it completed, every rank alive."""
        self.clock.wait_until(self.stop_agreed, limit)
        with self.state:
            return not (self.plan.stop_now or self.dead or not self.stop_agreed.is_set())

    def note_posted(self, error: BaseException | None, index: int) -> None:
        if error is not None:
            with self.state:
                self.error_index.setdefault(id(error), index)

    # -- the agreed stop step ---------------------------------------------------------------------

    def wait_agreed(self, agreed: SignalSafeEvent, what: str) -> None:
        """Wait for an agreement on ``what`` (main thread), bounded: past the bound the store is
        taken as unreachable, which ends the wait."""
        bound = 2 * self.timeout + 5
        limit = self.clock.now() + bound
        while not agreed.is_set():
            if not self.clock.wait_until(agreed, limit):
                self.fail(
                    StoreUnreachableError(
                        f"rank {self.rank}: the ranks did not agree on {what} within {bound:g} s "
                        f"through {self.describe}"
                    )
                )

    def stop_at(self, step: int) -> bool:
        """``should_stop_at(step)`` once the local flag is set (see the Coordinator)."""
        with self.state:
            if self.stop_commit is UNSET:
                self.stop_commit = self.position
        self.wait_agreed(self.stop_agreed, "a stop step")
        if isinstance(self.fatal, StallError):
            raise self.fatal
        with self.state:
            stop = self.plan.should_stop_at(step)
        if stop and self.preemption is not None and self.preempt is not None:
            self.preemption.run_final_checkpoint(step)
        return stop

    # -- join and close ---------------------------------------------------------------------------

    def await_first_stop(self) -> None:
        """Wait (at most ``heartbeat_timeout``) until the log's first stop has been read: a
        stop that came by the bell is known before what it carries."""
        limit = self.clock.now() + self.timeout
        while self.fatal is None:
            self.applied.clear()
            with self.state:
                if self.log.first_stop is not None:
                    return
            if self.watcher.done.is_set() or not self.clock.wait_until(self.applied, limit):
                return

    def first_in_log(self, raised: BaseException, reported: list[BaseException]) -> BaseException:
        """The earliest of ``reported`` in log order (``raised`` when none is in the log)."""
        limit = self.clock.now() + self.timeout
        self.sender.flush(limit)
        target = self.sender.last_index
        while self.log_length <= target and self.fatal is None:
            self.applied.clear()
            if self.log_length > target:
                break
            if not self.clock.wait_until(self.applied, limit):
                break
        with self.state:
            indexed = [
                (self.error_index[id(e)], i, e)
                for i, e in enumerate(reported)
                if id(e) in self.error_index
            ]
        if not indexed:
            return raised
        return min(indexed, key=lambda t: (t[0], t[1]))[2]

    def close(self, timeout: float) -> None:
        """Leave the job: post ``left``, let the reader reach it, end every thread."""
        if self.closed:
            return
        limit = self.clock.now() + max(timeout, 0.0)
        if self.hosts_store:  # the store dies with this process: the peers read the log first
            self._wait_for_peers(limit)
        self.leaving = True
        self.sender.enqueue(Left(origin=self.origin), None)
        # A failed job still posts 'left' (it wakes this rank's blocked reads), briefly.
        short = limit if self.fatal is None else min(limit, self.clock.now() + 2.0)
        self.sender.flush(short)
        self.clock.wait_until(self.watcher.done, short)
        self.closed = True
        if self.stalls is not None:
            self.stalls.disarm_backstop()
        self.threads_stop.set()
        self.wake_all()
        for thread in self._threads:
            thread.join(2.0)
            if thread.is_alive():
                logger.warning("%s did not end within 2 s of close()", thread.name)

    def _wait_for_peers(self, limit: float) -> None:
        """Until every live peer has left (or ``limit``). When the job is failing, at most
        ``heartbeat_timeout`` more: a peer that has not yet read the failure from the log would
        otherwise lose the store first and report the store gone instead of the job's error;
        one stuck in a collective may never leave."""
        failing = False
        while True:
            self.peers_changed.clear()
            with self.state:
                waiting = [
                    r for r in self.others() if r not in self.log.left and r not in self.dead
                ]
                if self.fatal is not None and not failing:
                    failing = True
                    limit = min(limit, self.clock.now() + self.timeout)
            if not waiting or self.watcher.done.is_set():  # no reader: no 'left' will come
                return
            if not self.clock.wait_until(self.peers_changed, limit):
                logger.warning(
                    "rank %d hosts the store and leaves while ranks %s have not left yet",
                    self.rank,
                    waiting,
                )
                return

    def after_fork_in_child(self) -> None:
        self.state = threading.RLock()
        self.closed = True  # the threads did not survive the fork: this copy is inert
        self.sender.after_fork_in_child()
        if self.stalls is not None:
            self.stalls.after_fork_in_child()
