"""tickwork.distributed.Coordinator: one stop for every rank of a job, through the job's own store.

The API and semantics of :class:`tickwork.Coordinator` (it is a subclass), across processes:

* ``request_stop()`` on any rank sets the local flag at once and hands a record to this rank's
  *sender* thread, which claims the next free entry ``ev/<n>`` of an ordered event log in the
  store (first writer wins, so every rank reads the same order). Every rank's *watcher* thread is
  blocked in a store ``wait`` on the next entry; it is woken by the store in one round trip and
  sets the local flag. ``should_stop()`` only reads that flag.
* ``should_stop_at(step)``: when a rank learns of the first stop, it freezes the step it had
  reached (see :meth:`Coordinator.should_stop_at`) and publishes it; every rank stops after the
  largest published step, so the ranks leave their collectives together.
* The sender also writes a heartbeat counter every ``heartbeat_interval`` and reads the peers'
  (2 requests per interval); a peer whose counter has not moved for ``heartbeat_timeout`` is
  dead. A *watchdog* thread (no store calls) stops everything with StoreUnreachableError when no
  store round trip has completed for ``heartbeat_timeout`` (a frozen store host blocks store calls
  far past the store's own timeout).

Keys live under ``tickwork/<run_id>/<restart>/<namespace>/``.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from .._clock import Clock
from .._coordinator import Coordinator as _LocalCoordinator
from .._coordinator import ExcInfo, _exception_of
from .._sync import SignalSafeEvent
from .._validate import check_positive
from ._env import resolve
from ._errors import (
    RankDiedError,
    RemoteError,
    StoreUnreachableError,
    error_record,
)
from ._policy import Liveness, LogView, StepPlan, agreed_step, store_stalled
from ._preemption import PreemptionInfo, PreemptionStop
from ._spe import SharedStepsPerExecution
from ._store import KVStore, StoreError

__all__ = ["Coordinator"]

logger = logging.getLogger(__name__)

_UNSET: Any = object()
_WATCH_WAIT_SECONDS = 60.0  # one blocked store wait; a close or a failure ends it sooner
_AGREE_POLL_SECONDS = 0.5  # how often a pending agreement looks for dead ranks
_MAX_POSTED_ERRORS = 16


class Coordinator(_LocalCoordinator):
    """A :class:`tickwork.Coordinator` shared by every rank of a distributed job.

    Args:
        store: a ``torch.distributed`` Store (TCPStore, FileStore, HashStore, PrefixStore), the
            ``jax.distributed`` coordination client, a :class:`MemoryStore`, or None for the
            default process group's store (``torch.distributed`` initialised) or
            ``jax.distributed``'s client.
        rank, world_size: this process's rank and the number of ranks; by default from the
            process group / ``jax.distributed``, else the ``RANK`` / ``WORLD_SIZE`` environment
            (torchrun sets them).
        heartbeat_timeout: seconds without a heartbeat after which a peer is declared dead, and
            without a store round trip after which the store is declared unreachable. Default 5.
        heartbeat_interval: seconds between heartbeats (default 1; must be < heartbeat_timeout).
        startup_timeout: how long the constructor waits for every rank to arrive (default 300).
        run_id, namespace: parts of the key prefix (run_id defaults to ``TORCHELASTIC_RUN_ID``
            or ``"run"``; the restart count comes from ``TORCHELASTIC_RESTART_COUNT``). Two
            coordinators on one store need different namespaces.
        hosts_store: whether this process hosts the store, so that :meth:`close` waits for the
            peers to leave first. Default: rank 0, unless torchrun's agent hosts it.
        clean_stop_exception_types, clock: as for :class:`tickwork.Coordinator`.

    Every rank constructs one (it is a rendezvous), uses it as :class:`tickwork.Coordinator`, and
    leaves with :meth:`close` or a ``with`` block.
    """

    def __init__(
        self,
        store: object = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        heartbeat_timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        startup_timeout: float = 300.0,
        run_id: str | None = None,
        namespace: str = "default",
        hosts_store: bool | None = None,
        clean_stop_exception_types: Iterable[type[BaseException]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clean_stop_exception_types, clock=clock)
        self._timeout = check_positive("heartbeat_timeout", heartbeat_timeout)
        self._interval = check_positive("heartbeat_interval", heartbeat_interval)
        if self._interval >= self._timeout:
            raise ValueError(
                f"'heartbeat_interval' must be < heartbeat_timeout={heartbeat_timeout!r}; "
                f"got {heartbeat_interval!r}"
            )
        startup = check_positive("startup_timeout", startup_timeout)
        found = resolve(store, rank, world_size, hosts_store)
        self._kv: KVStore = found.store
        self._rank = found.rank
        self._world = found.world_size
        self._hosts_store = found.hosts_store
        self._engine = found.engine
        run = run_id or os.environ.get("TORCHELASTIC_RUN_ID") or "run"
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT") or "0"
        for name, value in (("run_id", run), ("namespace", namespace)):
            if not isinstance(value, str) or not value or "/" in value:
                raise ValueError(f"'{name}' must be a non-empty str without '/'; got {value!r}")
        self._prefix = f"tickwork/{run}/{restart}/{namespace}/"
        self._host = socket.gethostname()
        self._describe = self._kv.describe()
        self._requests = itertools.count()

        # State shared by the threads. _state guards the log view, liveness and plan; the
        # agreement lock is re-entrant because a signal handler may request a stop while the
        # main thread holds it.
        self._state = threading.RLock()
        self._log = LogView(found.world_size)
        self._plan = StepPlan()
        self._dead: set[int] = set()
        self._fatal: BaseException | None = None
        self._position: int | None = None  # the step the main thread last passed in
        self._stop_commit: int | None = _UNSET
        self._stop_agreed = SignalSafeEvent()
        self._spe_dirty = False
        self._spe_value = 1
        self._spe_pending = 0
        self._spe_ready = SignalSafeEvent()
        self._spe_ready.set()
        self._shared_spe: SharedStepsPerExecution | None = None
        self._error_index: dict[int, int] = {}  # id(error) -> log index
        self._preempt: dict[str, Any] | None = None  # the first stop that came from a signal
        self._signal_hint: str | None = None
        self._posted_plain = False
        self._posted_errors = 0
        self._outbox: collections.deque[tuple[dict[str, Any], BaseException | None]] = (
            collections.deque()
        )
        self._in_post = False
        self._my_last_index = -1
        self._send_wake = SignalSafeEvent()
        self._posted = SignalSafeEvent()
        self._watched_to = SignalSafeEvent()  # set whenever the watcher applied an entry
        self._peers_changed = SignalSafeEvent()
        self._closing = SignalSafeEvent()
        self._threads_stop = SignalSafeEvent()
        self._closed = False
        self._watcher_done = SignalSafeEvent()
        self._preemption: PreemptionStop | None = None
        self._step_hook: Callable[[int], bool] | None = None
        self._hook_stop: int | None = None

        self._hosts = self._rendezvous(startup)
        now = self._clock.now()
        self._last_ok = now
        self._liveness = Liveness(
            [r for r in range(self._world) if r != self._rank], self._timeout, now
        )
        self._threads = [
            threading.Thread(
                target=self._run_watcher,
                args=(self._kv.clone(),),
                daemon=True,
                name=f"tickwork.distributed watcher (rank {self._rank})",
            ),
            threading.Thread(
                target=self._run_sender,
                args=(self._kv.clone(),),
                daemon=True,
                name=f"tickwork.distributed sender (rank {self._rank})",
            ),
            threading.Thread(
                target=self._run_watchdog,
                daemon=True,
                name=f"tickwork.distributed watchdog (rank {self._rank})",
            ),
        ]
        for thread in self._threads:
            thread.start()

    # -- what the caller sees ---------------------------------------------------------------------

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world

    @property
    def heartbeat_timeout(self) -> float:
        return self._timeout

    @property
    def store_description(self) -> str:
        return self._describe

    @property
    def store_requests(self) -> int:
        """Store requests this rank's threads have made so far (for load measurements)."""
        return _peek(self._requests)

    @property
    def dead_ranks(self) -> frozenset[int]:
        with self._state:
            return frozenset(self._dead)

    def request_stop(
        self, ex: BaseException | ExcInfo | tuple[None, None, None] | None = None
    ) -> None:
        """Request a stop on every rank, optionally reporting an exception (see the base class).

        The local flag is set before this returns; the other ranks see it one store round trip
        later. Safe to call from a signal handler and from any thread.
        """
        error = None if ex is None or ex == (None, None, None) else _exception_of(ex)
        if error is not None and isinstance(error, self.clean_stop_exception_types):
            error = None
        super().request_stop(ex)
        if self._closed:
            return
        if error is None:
            if self._posted_plain and self._signal_hint is None:
                return
            self._posted_plain = True
        else:
            self._posted_errors += 1
            if self._posted_errors > _MAX_POSTED_ERRORS:
                return
        record: dict[str, Any] = {
            "kind": "stop",
            "error": None if error is None else error_record(error, self._rank),
        }
        if self._signal_hint is not None:
            record["signal"] = self._signal_hint
            self._signal_hint = None
        self._enqueue(record, error)

    def clear_stop(self) -> None:
        """Not supported: a stop is for the whole job. Make a new Coordinator (namespace)."""
        raise RuntimeError(
            "a distributed Coordinator's stop cannot be cleared (every rank has seen it); "
            "create a new Coordinator with another 'namespace' to start afresh"
        )

    def should_stop(self) -> bool:
        """True once a stop has been requested on any rank (a local flag read)."""
        return self._stop_event._flag

    def should_stop_at(self, step: int) -> bool:
        """True at the same ``step`` on every rank, once a stop has been requested anywhere.

        Call it once per step, with increasing steps, on every rank, before the step's
        collectives. When a rank learns of the stop it publishes the last step it had passed in
        (which it may already be running); every rank runs every step up to the largest of
        them and gets True at the first step past it. Until that is known the call blocks
        (about one store round trip; at most until a dead rank or an unreachable store is
        noticed, after which it returns True at once on every rank). Costs an attribute write
        and two flag reads while no stop is requested.
        """
        if self._step_hook is not None and self._hooked(step):
            return True
        flag = self._stop_event
        if flag._flag:
            return self._stop_at_slow(step)
        self._position = step
        if flag._flag:  # set by another thread meanwhile (mypy cannot know)
            return self._stop_at_slow(step)  # type: ignore[unreachable]
        return False

    def _stop_at_slow(self, step: int) -> bool:
        with self._state:
            if self._stop_commit is _UNSET:
                self._stop_commit = self._position
        limit = self._clock.now() + 2 * self._timeout + 5
        while not self._stop_agreed.is_set():
            if not self._clock.wait_until(self._stop_agreed, limit):
                self._fail(
                    StoreUnreachableError(
                        f"rank {self._rank}: the ranks did not agree on a stop step within "
                        f"{2 * self._timeout + 5:g} s through {self._describe}"
                    )
                )
        with self._state:
            stop = self._plan.should_stop_at(step)
        if stop:
            self._on_agreed_stop(step)
        return stop

    def _hooked(self, step: int) -> bool:
        """JAX's preemption sync point (True at the same step on every process)."""
        if self._hook_stop is None:
            assert self._step_hook is not None
            if not self._step_hook(step):
                return False
            self._hook_stop = step
            if self._preempt is None:  # JAX does not say which process got the signal
                self._preempt = {"signal": "SIGTERM", "rank": -1, "learned_at": self._clock.now()}
            self._signal_hint = "SIGTERM"
            self.request_stop()
        if step >= self._hook_stop:
            self._on_agreed_stop(step)
            return True
        return False

    def _on_agreed_stop(self, step: int) -> None:
        preemption = self._preemption
        if preemption is not None and self._preempt is not None:
            preemption.run_final_checkpoint(step)

    def stop_on_signals(
        self,
        signals: Iterable[int | signal.Signals] = (signal.SIGTERM, signal.SIGUSR1),
        *,
        final_checkpoint: Callable[[PreemptionInfo], Any] | None = None,
        deadline: float = 25.0,
    ) -> PreemptionStop:
        """While the block runs, ``signals`` on any rank stop every rank at an agreed step.

        Previous handlers are chained and restored (see :func:`tickwork.stop_on_signals`).
        ``final_checkpoint(info)`` runs once on every rank when ``should_stop_at`` first answers
        True for a stop that came from a signal (or when the block ends, if it never did), at
        most until ``deadline`` seconds after the signal; see :class:`PreemptionInfo`. Set the
        deadline from the scheduler's grace period minus a margin (SLURM ``--signal=USR1@90``:
        e.g. 80; Kubernetes ``terminationGracePeriodSeconds: 30``: e.g. 25). With a JAX store,
        SIGTERM is left to JAX's preemption service (see docs/distributed.md).
        """
        return PreemptionStop(self, signals, final_checkpoint, deadline)

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, self.clean_stop_exception_types):
            try:
                self.request_stop(exc)
            except BaseException:
                pass  # joined already: the exception goes on out of the block anyway
        self.close()

    def close(self, timeout: float = 60.0) -> None:
        """Leave the job normally (this rank is not counted as dead); idempotent.

        Posts a ``left`` entry and stops this rank's threads. A rank that hosts the store
        (``hosts_store``) first waits, up to ``timeout`` seconds, until every peer has left or
        been declared dead, since the store dies with it. Store failures are logged, not
        raised (join() raises them).
        """
        if self._closed:
            return
        limit = self._clock.now() + max(timeout, 0.0)
        if self._fatal is None:
            if self._hosts_store:  # before our own 'left', which ends our watcher
                self._wait_for_peers(limit)
            self._enqueue({"kind": "left"}, None)
            self._flush(limit)
            # The watcher reads the log up to our own 'left', so it still answers every
            # agreement opened before it (a peer would otherwise wait for this rank).
            self._clock.wait_until(self._watcher_done, limit)
        self._closed = True
        self._closing.set()
        self._threads_stop.set()
        self._send_wake.set()
        for thread in self._threads:
            thread.join(1.0)
            if thread.is_alive():
                logger.warning("%s did not end within 1 s of close()", thread.name)

    def _wait_for_peers(self, limit: float) -> None:
        while True:
            self._peers_changed.clear()
            with self._state:
                waiting = [
                    r
                    for r in range(self._world)
                    if r != self._rank and r not in self._log.left and r not in self._dead
                ]
            if not waiting or self._fatal is not None:
                return
            if not self._clock.wait_until(self._peers_changed, limit):
                logger.warning(
                    "rank %d hosts the store and leaves while ranks %s have not left yet",
                    self._rank,
                    waiting,
                )
                return

    def join(
        self,
        threads: Iterable[threading.Thread] | None = None,
        stop_grace_period_secs: float = 120,
        ignore_live_threads: bool = False,
    ) -> None:
        """As :meth:`tickwork.Coordinator.join`; every rank raises the same first error.

        "First" is the order of the store's event log: after the threads end, this rank waits
        (at most ``heartbeat_timeout``) until its own reports are in the log and read back,
        then raises the earliest error of the log: the original exception on the rank that
        reported it, a :class:`RemoteError` elsewhere (or RankDiedError/StoreUnreachableError).
        """
        try:
            super().join(threads, stop_grace_period_secs, ignore_live_threads)
        except BaseException as raised:
            first = self._first_in_log(raised)
            if first is raised:
                raise
            raise first from None

    def _first_in_log(self, raised: BaseException) -> BaseException:
        limit = self._clock.now() + self._timeout
        self._flush(limit)
        target = self._my_last_index
        while self._log_length() <= target and self._fatal is None:
            self._watched_to.clear()
            if self._log_length() > target:
                break
            if not self._clock.wait_until(self._watched_to, limit):
                break
        with self._state:
            indexed = [
                (self._error_index[id(e)], i, e)
                for i, e in enumerate(self._reported)
                if id(e) in self._error_index
            ]
        if not indexed:
            return raised
        return min(indexed, key=lambda t: (t[0], t[1]))[2]

    def _log_length(self) -> int:
        with self._state:
            return self._log.length

    def __repr__(self) -> str:
        state = "stop requested" if self.should_stop() else "running"
        return (
            f"<tickwork.distributed.Coordinator rank {self._rank}/{self._world} {state} "
            f"on {self._describe}>"
        )

    # -- posting ----------------------------------------------------------------------------------

    def _enqueue(self, record: dict[str, Any], error: BaseException | None) -> None:
        record.setdefault("rank", self._rank)
        record["host"] = self._host
        record["pid"] = os.getpid()
        record["id"] = f"{self._rank}.{os.getpid()}.{next(_ids)}"
        self._posted.clear()
        self._outbox.append((record, error))
        self._send_wake.set()

    def _flush(self, limit: float) -> None:
        """Wait (until ``limit``) for the outbox to be posted; False if it was not."""
        while (self._outbox or self._in_post) and self._fatal is None:
            self._posted.clear()
            if not (self._outbox or self._in_post):
                break
            if not self._clock.wait_until(self._posted, limit):
                return

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _call(self) -> None:
        next(self._requests)

    def _post(self, kv: KVStore, record: dict[str, Any], error: BaseException | None) -> None:
        text = json.dumps(record, separators=(",", ":"))
        with self._state:
            index = self._log.length
        index = max(index, self._my_last_index + 1)
        while True:
            self._call()
            if kv.claim(self._key(f"ev/{index}"), text):
                break
            index += 1
        self._last_ok = self._clock.now()
        with self._state:
            self._my_last_index = index
            if error is not None:
                self._error_index.setdefault(id(error), index)

    # -- threads ----------------------------------------------------------------------------------

    def _rendezvous(self, timeout: float) -> dict[int, str]:
        kv = self._kv
        info = {"host": self._host, "pid": os.getpid(), "world_size": self._world}
        kv.set(self._key(f"info/{self._rank}"), json.dumps(info))
        kv.set(self._key(f"hb/{self._rank}"), "0")
        keys = [self._key(f"info/{r}") for r in range(self._world)]
        if not kv.wait(keys, timeout):
            present = kv.get_many(keys)
            missing = [r for r, v in enumerate(present) if v is None]
            raise TimeoutError(
                f"rank {self._rank}: ranks {missing} did not join within startup_timeout="
                f"{timeout:g} s through {self._describe} (prefix {self._prefix!r})"
            )
        hosts = {}
        for r, raw in enumerate(kv.get_many(keys, present=True)):
            peer = json.loads(raw or "{}")
            if peer.get("world_size") != self._world:
                raise ValueError(
                    f"rank {r} has world_size={peer.get('world_size')!r} but rank "
                    f"{self._rank} has {self._world}: every rank must agree"
                )
            hosts[r] = f"{peer.get('host', '?')}, pid {peer.get('pid', '?')}"
        return hosts

    def _run_sender(self, kv: KVStore) -> None:
        beat = 0
        next_beat = self._clock.now()
        peers = [r for r in range(self._world) if r != self._rank]
        keys = {r: self._key(f"hb/{r}") for r in peers}
        try:
            while True:
                self._send_wake.clear()
                while self._outbox:
                    record, error = self._outbox[0]
                    self._in_post = True
                    try:
                        self._post(kv, record, error)
                    finally:
                        self._outbox.popleft()
                        self._in_post = False
                        self._posted.set()
                if self._threads_stop.is_set() or self._fatal is not None:
                    return
                now = self._clock.now()
                if now >= next_beat:
                    beat += 1
                    self._call()
                    kv.set(keys.get(self._rank, self._key(f"hb/{self._rank}")), str(beat))
                    with self._state:
                        watched = self._liveness.watched
                    if watched:
                        self._call()
                        values = kv.get_many([keys[r] for r in watched], present=True)
                    else:
                        values = []
                    now = self._clock.now()
                    self._last_ok = now
                    with self._state:
                        dead = self._liveness.observe(now, dict(zip(watched, values, strict=True)))
                    for rank, silent in dead:
                        self._declare_dead(rank, silent, self._rank, post=True)
                    next_beat = now + self._interval
                self._clock.wait(self._send_wake, max(0.0, next_beat - self._clock.now()))
        except StoreError as e:
            self._store_failed(e)
        except BaseException as e:  # a bug: keep it, never lose it
            logger.exception("tickwork.distributed sender failed")
            self._fail(e)

    def _run_watcher(self, kv: KVStore) -> None:
        index = 0
        try:
            while self._fatal is None and not (self._closed and self._threads_stop.is_set()):
                key = self._key(f"ev/{index}")
                self._call()
                raw = kv.wait_get(key, _WATCH_WAIT_SECONDS)
                if raw is None:
                    continue
                self._last_ok = self._clock.now()
                record = json.loads(raw or "{}")
                self._apply(kv, index, record)
                index += 1
                self._watched_to.set()
                if record.get("kind") == "left" and record.get("rank") == self._rank:
                    return
        except StoreError as e:
            self._store_failed(e)
        except BaseException as e:
            logger.exception("tickwork.distributed watcher failed")
            self._fail(e)
        finally:
            self._watcher_done.set()
            self._watched_to.set()

    def _run_watchdog(self) -> None:
        period = min(self._interval, self._timeout / 4)
        while not self._clock.wait(self._threads_stop, period):
            if self._fatal is not None:
                return
            now = self._clock.now()
            if store_stalled(now, self._last_ok, self._timeout):
                self._fail(
                    StoreUnreachableError(
                        f"rank {self._rank}: no reply from {self._describe} for "
                        f"{now - self._last_ok:.1f} s (heartbeat_timeout={self._timeout:g} s): "
                        "the store's host is frozen, overloaded or cut off by the network"
                    )
                )
                return

    # -- what the log says ------------------------------------------------------------------------

    def _apply(self, kv: KVStore, index: int, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        origin = int(record.get("rank", -1))
        with self._state:
            first_stop = kind == "stop" and self._log.first_stop is None
            self._log.apply(index, record)
        if kind == "stop":
            if origin != self._rank:
                error: BaseException | None = None
                if record.get("error"):
                    error = RemoteError.from_record(record["error"])
                    with self._state:
                        self._error_index[id(error)] = index
                self._stop_here(error)
            if record.get("signal") and self._preempt is None:
                self._preempt = {
                    "signal": record["signal"],
                    "rank": origin,
                    "learned_at": self._clock.now(),
                }
            if first_stop:
                self._agree_stop(kv, index)
        elif kind == "dead":
            dead = int(record["dead"])
            if dead != self._rank:
                self._declare_dead(
                    dead,
                    float(record.get("silent_for", self._timeout)),
                    origin,
                    post=False,
                    index=index,
                )
        elif kind == "left":
            with self._state:
                self._liveness.forget(origin)
            self._peers_changed.set()
        elif kind == "spe":
            self._agree_spe(kv, index, int(record["value"]))

    def _agree(self, kv: KVStore, index: int, mine: int | None) -> tuple[bool, int | None]:
        """Publish this rank's commit for entry ``index`` and read everyone's: (agreed, step)."""
        self._call()
        kv.set(self._key(f"ag/{index}/{self._rank}"), json.dumps(mine))
        while True:
            with self._state:
                expected = self._log.expected_at(index, self._dead)
            keys = [self._key(f"ag/{index}/{r}") for r in expected]
            self._call()
            if kv.wait(keys, _AGREE_POLL_SECONDS):
                break
            self._last_ok = self._clock.now()  # a timed-out wait is a round trip too
            if self._fatal is not None or self._plan.stop_now:
                return False, None
        self._call()
        values = kv.get_many(keys, present=True)
        self._last_ok = self._clock.now()
        return True, agreed_step([json.loads(v) if v else None for v in values])

    def _agree_stop(self, kv: KVStore, index: int) -> None:
        with self._state:
            if self._stop_commit is _UNSET:
                self._stop_commit = self._position
            mine = self._stop_commit
        agreed, step = self._agree(kv, index, mine)
        with self._state:
            if agreed:
                self._plan.stopping = True
                self._plan.stop_after = step
        self._stop_agreed.set()
        logger.debug("rank %d: stop agreed after step %r", self._rank, step)

    def _agree_spe(self, kv: KVStore, index: int, value: int) -> None:
        with self._state:
            self._spe_dirty = True
            self._spe_pending += 1
            self._spe_ready.clear()
            mine = self._position
        agreed, step = self._agree(kv, index, mine)
        with self._state:
            if agreed:
                self._plan.switches.append((step, value))
            self._spe_pending -= 1
            if self._spe_pending == 0:
                self._spe_ready.set()
        if self._shared_spe is not None:
            self._shared_spe._received(value)

    def _spe_slow(self, step: int) -> int:
        limit = self._clock.now() + 2 * self._timeout + 5
        while not self._spe_ready.is_set():
            if not self._clock.wait_until(self._spe_ready, limit):
                self._fail(
                    StoreUnreachableError(
                        f"rank {self._rank}: the ranks did not agree on steps per execution "
                        f"within {2 * self._timeout + 5:g} s through {self._describe}"
                    )
                )
        with self._state:
            value = self._plan.spe_at(step)
            if self._spe_pending == 0 and all(
                after is None or step > after for after, _ in self._plan.switches
            ):
                self._spe_value = value
                self._spe_dirty = False
            return value

    # -- failures ---------------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        with self._state:
            first = self._fatal is None
            if first:
                self._fatal = error
            self._plan.stop_now = True
        if first:
            self._stop_here(error)
        self._stop_agreed.set()
        self._spe_ready.set()
        self._posted.set()
        self._watched_to.set()
        self._peers_changed.set()

    def _stop_here(self, error: BaseException | None) -> None:
        """A stop that came from elsewhere (the log, a failure): local only, never raises."""
        with self._lock:
            if self._joined and error is not None:
                logger.warning("rank %d, after join(): %s", self._rank, error)
                self._stop_event.set()
                return
        _LocalCoordinator.request_stop(self, error)

    def _store_failed(self, cause: StoreError) -> None:
        if self._closed or self._threads_stop.is_set():
            return
        error = StoreUnreachableError(
            f"rank {self._rank}: the store failed: {cause} (its host died or the network broke)"
        )
        error.__cause__ = cause
        self._fail(error)

    def _declare_dead(
        self, rank: int, silent: float, by: int, *, post: bool, index: int | None = None
    ) -> None:
        with self._state:
            if rank in self._dead:
                return
            self._dead.add(rank)
            self._liveness.forget(rank)
        error = RankDiedError(rank, self._hosts.get(rank, "?"), silent, self._timeout, by)
        logger.error("rank %d: %s", self._rank, error)
        if index is not None:
            with self._state:
                self._error_index[id(error)] = index
        with self._state:
            self._plan.stop_now = True
        self._stop_here(error)
        self._stop_agreed.set()
        self._spe_ready.set()
        self._peers_changed.set()
        if post:
            self._enqueue({"kind": "dead", "dead": rank, "silent_for": silent}, error)

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._state = threading.RLock()
        self._closed = True  # the threads did not survive the fork: this copy is inert
        self._outbox = collections.deque()


_ids = itertools.count()


def _peek(counter: itertools.count[int]) -> int:
    # itertools.count has no read; its repr carries the next value.
    return int(repr(counter)[6:-1])
