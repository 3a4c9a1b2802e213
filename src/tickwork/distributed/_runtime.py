"""The machinery under tickwork.distributed.Coordinator: rendezvous, threads, log, agreements.

:class:`Replicated` holds the state that the sender, the watcher and the watchdog share, and
runs them (see :mod:`._coordinator` for what they do and docs/distributed.md for the protocol).
The public class adds the API on top.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .._clock import Clock
from .._coordinator import Coordinator as _LocalCoordinator
from .._sync import SignalSafeEvent
from .._validate import check_positive
from ._env import resolve
from ._errors import (
    RankDiedError,
    RemoteError,
    StoreUnreachableError,
)
from ._policy import Liveness, LogView, StepPlan, agreed_step, store_stalled
from ._preemption import PreemptionStop
from ._store import KVStore, StoreError

__all__ = ["Replicated"]

logger = logging.getLogger(__name__)

_UNSET: Any = object()
_WATCH_WAIT_SECONDS = 60.0  # one blocked store wait; a close or a failure ends it sooner
_AGREE_POLL_SECONDS = 0.5  # how often a pending agreement looks for dead ranks


class Replicated(_LocalCoordinator):
    """A local Coordinator whose stop, errors and agreements are shared through a store."""

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
        self._on_spe: Callable[[int], None] | None = None  # SharedStepsPerExecution's receiver
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
        if self._on_spe is not None:
            self._on_spe(value)

    # What the collaborators (SharedStepsPerExecution, PreemptionStop) use; not for training loops.

    @property
    def engine(self) -> str:
        """The framework the store came from (``"torch"``, ``"jax"``, ...)."""
        return self._engine

    def share_spe(self, initial: int, on_received: Callable[[int], None]) -> None:
        """Make ``initial`` the steps per execution before any switch (once per Coordinator).

        ``on_received(value)`` is called (on the watcher thread) for every value the log brings.
        """
        if self._on_spe is not None:
            raise RuntimeError("this Coordinator already has a SharedStepsPerExecution")
        self._on_spe = on_received
        self._plan.initial_spe = initial
        self._spe_value = initial

    def propose_spe(self, value: int) -> None:
        """Post a new steps per execution to the job's log (it applies at an agreed step)."""
        self._enqueue({"kind": "spe", "value": value}, None)

    def spe_at(self, step: int) -> int:
        """The steps per execution for the call that starts at ``step`` (same on every rank)."""
        if self._spe_dirty:
            return self._spe_slow(step)
        self._position = step
        if self._spe_dirty:  # set by the watcher meanwhile (mypy cannot know)
            return self._spe_slow(step)  # type: ignore[unreachable]
        return self._spe_value

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
