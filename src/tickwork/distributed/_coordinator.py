"""tickwork.distributed.Coordinator: one stop for every rank of a job, through the job's own store.

The API and semantics of :class:`tickwork.Coordinator` (it is one), across processes. This class
is the thin public face; the work is done by one private :class:`~._replica.Replica` made of
small parts (rendezvous, outbox and heartbeats, event log and stop bell, agreements, watchdog):
see :mod:`._replica` and docs/distributed.md for the protocol.

Keys live under ``tickwork/<run_id>/<restart>/<namespace>/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, final

from .._clock import Clock
from .._coordinator import Coordinator as _LocalCoordinator
from .._coordinator import ExcInfo, _exception_of
from .._validate import check_positive
from ._env import resolve
from ._errors import error_record
from ._pace_policy import SlowRank
from ._preemption import PreemptionInfo, PreemptionStop
from ._records import MAX_PHASE
from ._rendezvous import Keys
from ._replica import Replica

__all__ = ["Coordinator", "check_stall_settings", "first_failure"]

logger = logging.getLogger(__name__)

_MAX_POSTED_ERRORS = 16


def _stall_settings(
    timeout: object, directory: object, interval: float
) -> tuple[float | None, Path] | None:
    """``(timeout or None for auto, directory)``, or None when stall detection is off."""
    if timeout is None:
        if directory is not None:
            raise ValueError(
                f"'stall_dir' needs stall_timeout (a number of seconds or 'auto'); got "
                f"stall_dir={directory!r} with stall_timeout=None"
            )
        return None
    if directory is not None and not isinstance(directory, str | os.PathLike):
        raise TypeError(f"'stall_dir' must be a path or None; got {directory!r}")
    path = Path(directory if directory is not None else "tickwork-stalls")
    if timeout == "auto":
        return None, path
    if isinstance(timeout, str):
        raise ValueError(
            f"'stall_timeout' must be a number of seconds, 'auto' or None; got {timeout!r}"
        )
    seconds = check_positive("stall_timeout", timeout)
    if seconds <= interval:
        raise ValueError(
            f"'stall_timeout' must be > heartbeat_interval={interval:g} (progress is read once "
            f"per heartbeat); got {timeout!r}"
        )
    return seconds, path


def check_stall_settings(timeout: object, directory: object) -> None:
    """Raise as the Coordinator would for these stall settings (with the default interval)."""
    _stall_settings(timeout, directory, 1.0)


@final
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
            that a store call may take before the store is declared unreachable. Default 15
            (three times torch's own 5 s stalls; see docs/distributed.md).
        heartbeat_interval: seconds between heartbeats (default 1; must be < heartbeat_timeout).
        startup_timeout: how long the constructor waits for every rank to arrive (default 300).
        run_id, namespace: parts of the key prefix (run_id defaults to ``TORCHELASTIC_RUN_ID``
            or ``"run"``; the restart count comes from ``TORCHELASTIC_RESTART_COUNT``). Two
            coordinators on one store need different namespaces.
        hosts_store: whether this process hosts the store, so that :meth:`close` waits for the
            peers to leave first. Default: rank 0, unless torchrun's agent hosts it.
        clean_stop_exception_types, clock: as for :class:`tickwork.Coordinator`.
        stall_timeout: seconds without progress (a step passed to ``should_stop_at``) on a live
            rank after which the job is stalled; ``"auto"`` learns it from the gaps between steps
            (see docs/distributed.md); None (the default) turns stall detection off. On a stall
            every rank writes ``stall_dir/stall-rank<r>.txt`` (its threads' stacks and
            ``suspect: rank N``), then stops with :class:`StallError`, and a process still alive
            10 s later is ended with status 87 so that a launcher can restart the job.
        stall_dir: where the stall reports go (default ``./tickwork-stalls``).
        report_slow_ranks: name ranks that are slower than the others (a log line on the lowest
            live rank and :attr:`slow_ranks` on every rank), from the main thread's busy time
            that the heartbeats carry (a sampler thread looks at it 50 times a second; see
            docs/distributed.md). Default: on when ``stall_timeout`` is set.

    Every rank constructs one (it is a rendezvous), uses it as :class:`tickwork.Coordinator`, and
    leaves with :meth:`close` or a ``with`` block.
    """

    def __init__(
        self,
        store: object = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        heartbeat_timeout: float = 15.0,
        heartbeat_interval: float = 1.0,
        startup_timeout: float = 300.0,
        run_id: str | None = None,
        namespace: str = "default",
        hosts_store: bool | None = None,
        clean_stop_exception_types: Iterable[type[BaseException]] | None = None,
        clock: Clock | None = None,
        stall_timeout: float | Literal["auto"] | None = None,
        stall_dir: str | os.PathLike[str] | None = None,
        report_slow_ranks: bool | None = None,
    ) -> None:
        super().__init__(clean_stop_exception_types, clock=clock)
        timeout = check_positive("heartbeat_timeout", heartbeat_timeout)
        interval = check_positive("heartbeat_interval", heartbeat_interval)
        if interval >= timeout:
            raise ValueError(
                f"'heartbeat_interval' must be < heartbeat_timeout={heartbeat_timeout!r}; "
                f"got {heartbeat_interval!r}"
            )
        startup = check_positive("startup_timeout", startup_timeout)
        run = run_id or os.environ.get("TORCHELASTIC_RUN_ID") or "run"
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT") or "0"
        for name, value in (("run_id", run), ("namespace", namespace)):
            if not isinstance(value, str) or not value or "/" in value:
                raise ValueError(f"'{name}' must be a non-empty str without '/'; got {value!r}")
        stall = _stall_settings(stall_timeout, stall_dir, interval)
        if report_slow_ranks is not None and not isinstance(report_slow_ranks, bool):
            raise TypeError(
                f"'report_slow_ranks' must be a bool or None; got {report_slow_ranks!r}"
            )
        pace = stall is not None if report_slow_ranks is None else report_slow_ranks
        found = resolve(store, rank, world_size, hosts_store)
        self._posted_plain = False
        self._posted_errors = 0
        self._replica = Replica(
            self,
            found,
            keys=Keys(f"tickwork/{run}/{restart}/{namespace}/"),
            timeout=timeout,
            interval=interval,
            startup=startup,
            clock=self._clock,
            on_stop=self._stop_here,
            stall=stall,
            pace=pace,
        )

    # -- what the caller sees ---------------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self._replica.rank

    @property
    def world_size(self) -> int:
        """The number of ranks."""
        return self._replica.world

    @property
    def heartbeat_timeout(self) -> float:
        """Seconds of silence after which a rank is dead (and a store call overdue)."""
        return self._replica.timeout

    @property
    def store_description(self) -> str:
        """Where the store lives (``"TCPStore at 127.0.0.1:29500"``)."""
        return self._replica.describe

    @property
    def store_requests(self) -> int:
        """Store requests this rank's threads have made so far (for load measurements)."""
        return self._replica.calls.count

    @property
    def dead_ranks(self) -> frozenset[int]:
        """The ranks declared dead (they sent no heartbeat for ``heartbeat_timeout``)."""
        with self._replica.state:
            return frozenset(self._replica.dead)

    @property
    def left_ranks(self) -> frozenset[int]:
        """The ranks whose Coordinator closed normally (they are no longer watched)."""
        with self._replica.state:
            return frozenset(self._replica.log.left)

    @property
    def slow_ranks(self) -> tuple[SlowRank, ...]:
        """The ranks slow right now, the slowest first (empty when ``report_slow_ranks`` is
        off): each a :class:`SlowRank` saying how much slower and since when."""
        pace = self._replica.pace
        return () if pace is None else tuple(pace.slow_now())

    @property
    def slow_rank_history(self) -> tuple[SlowRank, ...]:
        """Every slow episode named so far (the last 100 ended ones, then those under way),
        oldest first; an ended one has ``until`` set."""
        pace = self._replica.pace
        return () if pace is None else tuple(pace.episodes())

    def request_stop(
        self, ex: BaseException | ExcInfo | tuple[None, None, None] | None = None
    ) -> None:
        """Request a stop on every rank, optionally reporting an exception (see the base class).

        The local flag is set before this returns; the other ranks see it two one-way network
        delays later. Safe to call from a signal handler and from any thread.
        """
        error = None if ex is None or ex == (None, None, None) else _exception_of(ex)
        if error is not None and isinstance(error, self.clean_stop_exception_types):
            error = None
        super().request_stop(ex)
        replica = self._replica
        if replica.closed:
            return
        if error is None:
            if self._posted_plain and replica.signal_hint is None:
                return
            self._posted_plain = True
        else:
            self._posted_errors += 1
            if self._posted_errors > _MAX_POSTED_ERRORS:
                return
        replica.post_stop(error, None if error is None else error_record(error, replica.rank))

    def clear_stop(self) -> None:
        """Not supported: a stop is for the whole job. Make a new Coordinator (namespace)."""
        raise RuntimeError(
            "a distributed Coordinator's stop cannot be cleared (every rank has seen it); "
            "create a new Coordinator with another 'namespace' to start afresh"
        )

    def should_stop(self) -> bool:
        """True once a stop has been requested on any rank (a local flag read)."""
        return self._stop_event.is_set()

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
        replica = self._replica
        if replica.step_hook is not None and self._hooked(step):
            return True
        flag = self._stop_event
        if flag.is_set():
            return replica.stop_at(step)
        if replica.position is None:
            replica.first_position = step
        replica.position = step
        if flag.is_set():  # set by another thread meanwhile
            return replica.stop_at(step)
        return False

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Mark what the main thread does inside the block (``"evaluation"``, ``"save"``).

        The heartbeats carry it. Entering or leaving a phase counts as progress for stall
        detection, and ``stall_timeout="auto"`` learns one timeout per phase (a long evaluation
        does not lengthen the training steps' timeout); a stall report names the phase. Blocks
        nest; the outer phase is back when the inner one ends. Costs an attribute write.
        """
        if not isinstance(name, str) or not name or len(name) > MAX_PHASE:
            raise ValueError(
                f"'name' must be a non-empty str of at most {MAX_PHASE} characters; got {name!r}"
            )
        replica = self._replica
        outer, replica.phase = replica.phase, name
        try:
            yield
        finally:
            replica.phase = outer

    def _hooked(self, step: int) -> bool:
        """JAX's preemption sync point (True at the same step on every process)."""
        replica = self._replica
        assert replica.step_hook is not None
        if replica.hook_stop is None:
            if not replica.step_hook(step):
                return False
            replica.hook_stop = step
            if replica.preempt is None:  # JAX does not say which process got the signal
                replica.preempt = {
                    "signal": "SIGTERM",
                    "rank": -1,
                    "learned_at": self._clock.now(),
                }
            replica.signal_hint = "SIGTERM"
            self.request_stop()
        if step >= replica.hook_stop:
            if replica.preemption is not None:
                replica.preemption.run_final_checkpoint(step)
            return True
        return False

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

    def _stop_here(self, error: BaseException | None) -> None:
        """A stop that came from elsewhere (the log, a failure): local only, never raises."""
        with self._lock:
            if self._joined and error is not None:
                logger.warning("rank %d, after join(): %s", self._replica.rank, error)
                self._stop_event.set()
                return
        _LocalCoordinator.request_stop(self, error)

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
        been declared dead, since the store dies with it; when the job is failing, at most
        ``heartbeat_timeout`` seconds (long enough for the peers to read why, not for one stuck
        in a collective). Store failures are logged, not raised (join() raises them).
        """
        self._replica.close(timeout)

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
        if self.should_stop():
            self._replica.await_first_stop()
        try:
            super().join(threads, stop_grace_period_secs, ignore_live_threads)
        except BaseException as raised:
            first = self._replica.first_in_log(raised, list(self.reported_exceptions))
            if first is raised:
                raise
            raise first from None

    def __repr__(self) -> str:
        state = "stop requested" if self.should_stop() else "running"
        replica = self._replica
        return (
            f"<tickwork.distributed.Coordinator rank {replica.rank}/{replica.world} {state} "
            f"on {replica.describe}>"
        )

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        replica = getattr(self, "_replica", None)
        if replica is not None:
            replica.after_fork_in_child()


def first_failure(coord: Coordinator, raised: BaseException | None) -> BaseException | None:
    """The error that started the job's failure: the earliest error in the job's log among those
    this rank knows (``raised``, this rank's own, when it must have been reported first, or
    when none is known). For the trainer callbacks, which cannot call ``join()`` on a
    Coordinator that is the user's."""
    replica = coord._replica  # noqa: SLF001 - the package's own
    if coord.should_stop():
        replica.await_first_stop()
    reported = list(coord.reported_exceptions)
    if not reported:
        return raised
    fallback = raised if raised is not None else reported[0]
    return replica.first_in_log(fallback, reported)
