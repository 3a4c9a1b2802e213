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

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from .._coordinator import ExcInfo, _exception_of
from ._errors import (
    StoreUnreachableError,
    error_record,
)
from ._preemption import PreemptionInfo, PreemptionStop
from ._runtime import _UNSET, Replicated, _peek

__all__ = ["Coordinator"]

logger = logging.getLogger(__name__)

_MAX_POSTED_ERRORS = 16


class Coordinator(Replicated):
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

    @property
    def left_ranks(self) -> frozenset[int]:
        """The ranks whose Coordinator closed normally (they are no longer watched)."""
        with self._state:
            return frozenset(self._log.left)

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
        if self._step_hook is not None and self._hooked(step):
            return True
        flag = self._stop_event
        if flag.is_set():
            return self._stop_at_slow(step)
        self._position = step
        if flag.is_set():  # set by another thread meanwhile
            return self._stop_at_slow(step)
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

    # What PreemptionStop uses; not for training loops.

    def note_signal(self, name: str) -> None:
        """Mark the next stop request as coming from signal ``name`` (called in the handler)."""
        self._signal_hint = name

    def attach_preemption(
        self, stop: PreemptionStop | None, step_hook: Callable[[int], bool] | None
    ) -> None:
        """While ``stop``'s block runs: its final checkpoint and JAX's sync point (None after)."""
        self._preemption = stop
        self._step_hook = step_hook

    @property
    def preemption_record(self) -> dict[str, Any] | None:
        """The first stop that came from a signal (``signal``, ``rank``, ``learned_at``) or None."""
        return self._preempt

    def wait_stop_agreed(self, limit: float) -> bool:
        """Wait until ``limit`` for the stop agreement; True if it completed, every rank alive."""
        self.clock.wait_until(self._stop_agreed, limit)
        return not (self._plan.stop_now or self.dead_ranks or not self._stop_agreed.is_set())

    @property
    def fatal_error(self) -> BaseException | None:
        """The failure that stopped the job (a dead rank, the store gone), or None."""
        return self._fatal

    def stop_locally(self, error: BaseException | None) -> None:
        """Stop this rank only (a failure here, already on its way to the others)."""
        self._stop_here(error)

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

    def __repr__(self) -> str:
        state = "stop requested" if self.should_stop() else "running"
        return (
            f"<tickwork.distributed.Coordinator rank {self._rank}/{self._world} {state} "
            f"on {self._describe}>"
        )
