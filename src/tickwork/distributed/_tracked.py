"""Every store call a rank makes, counted and timed, so a watchdog can tell a frozen store.

A frozen store host (SIGSTOP, a partition) blocks torch store calls far past the store's own
timeout. :class:`Calls` records when each thread's call in progress began; :class:`TrackedStore`
wraps one thread's client and registers each call there. The watchdog reads :meth:`Calls.overdue`
without making a store call itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, final

from .._clock import Clock
from ._store import KVStore

__all__ = ["Calls", "Overdue", "TrackedStore"]

T = TypeVar("T")


@final
@dataclass(frozen=True, kw_only=True)
class Overdue:
    """A call that has run past its bound: what it is and for how long it has run."""

    what: str
    seconds: float


class Calls:
    """The calls in progress on one rank's clients, and how many were made."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[int, tuple[str, float, float]] = {}  # id -> (what, began, bound)
        self._ids = 0
        self.count = 0

    def run(self, what: str, bound: float, call: Callable[[], T]) -> T:
        """Run ``call`` as a store call that should end within ``bound`` seconds."""
        with self._lock:
            self._ids += 1
            ident = self._ids
            self.count += 1
            self._running[ident] = (what, self._clock.now(), bound)
        try:
            return call()
        finally:
            with self._lock:
                del self._running[ident]

    def overdue(self, now: float) -> Overdue | None:
        """The call furthest past its bound at ``now``, if any."""
        with self._lock:
            late = [
                (now - began - bound, what, now - began)
                for what, began, bound in self._running.values()
                if now - began >= bound
            ]
        if not late:
            return None
        _, what, seconds = max(late)
        return Overdue(what=what, seconds=seconds)

    def restart(self, now: float) -> None:
        """Count the calls in progress as begun at ``now`` (this process was frozen: the time
        it spent stopped says nothing about the store)."""
        with self._lock:
            self._running = {i: (w, now, b) for i, (w, _, b) in self._running.items()}


class TrackedStore:
    """One thread's store client, every call registered in ``calls`` with ``bound`` seconds
    (blocking waits: their own timeout plus ``bound``)."""

    def __init__(self, store: KVStore, calls: Calls, bound: float) -> None:
        self._store = store
        self._calls = calls
        self._bound = bound

    def claim(self, key: str, value: str) -> bool:
        return self._calls.run(f"claim {key}", self._bound, lambda: self._store.claim(key, value))

    def set(self, key: str, value: str) -> None:
        self._calls.run(f"set {key}", self._bound, lambda: self._store.set(key, value))

    def get_many(self, keys: Sequence[str], present: bool = False) -> list[str | None]:
        return self._calls.run(
            f"read of {len(keys)} key(s)", self._bound, lambda: self._store.get_many(keys, present)
        )

    def wait(self, keys: Sequence[str], timeout: float) -> bool:
        return self._calls.run(
            f"wait for {len(keys)} key(s)",
            timeout + self._bound,
            lambda: self._store.wait(keys, timeout),
        )

    def wait_get(self, key: str, timeout: float) -> str | None:
        return self._calls.run(
            f"wait for {key}", timeout + self._bound, lambda: self._store.wait_get(key, timeout)
        )

    def describe(self) -> str:
        return self._store.describe()

    @property
    def inner(self) -> KVStore:
        """The client this wraps."""
        return self._store
