"""The small key-value protocol the cross-rank Coordinator needs, and an in-memory store.

Every engine adapter (torch.distributed's Store, JAX's coordination client) and :class:`MemoryStore`
implement :class:`KVStore`. Values are ``str`` (JSON text); keys are ``/``-separated paths. A
store object is used by one thread at a time: each tickwork thread works on its own
:meth:`KVStore.clone` (a torch Store client runs its calls one at a time, so a thread blocked in
``wait`` would hold up every other call on a shared client).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["KVStore", "MemoryStore", "StoreError"]


class StoreError(RuntimeError):
    """A store call failed (connection lost, host gone): the store cannot be used any more."""


@runtime_checkable
class KVStore(Protocol):
    """What tickwork.distributed needs from a key-value store shared by every rank."""

    def claim(self, key: str, value: str) -> bool:
        """Create ``key`` with ``value`` unless it exists; True if this call created it."""

    def set(self, key: str, value: str) -> None:
        """Write ``key`` (overwriting)."""

    def get_many(self, keys: Sequence[str], present: bool = False) -> list[str | None]:
        """The values of ``keys`` (None for a missing one), without blocking for them.

        ``present=True`` promises every key exists (one round trip instead of two on torch)."""

    def wait(self, keys: Sequence[str], timeout: float) -> bool:
        """Block until every key exists (True) or ``timeout`` seconds pass (False)."""

    def wait_get(self, key: str, timeout: float) -> str | None:
        """Block until ``key`` exists and return its value (None after ``timeout`` seconds).

        One round trip where the engine allows (a torch ``get`` waits for its key)."""

    def clone(self) -> KVStore:
        """A new client on the same store, for another thread."""

    def describe(self) -> str:
        """Where the store lives, for error messages (``"TCPStore at 10.0.0.1:29500"``)."""


class MemoryStore:
    """An in-memory :class:`KVStore` for one process: tests, and a world of one rank.

    Clones share the data. :meth:`freeze` makes every call block (as a frozen store host does)
    until :meth:`thaw`; :meth:`fail` makes every call raise :class:`StoreError` (a dead host).
    """

    def __init__(self) -> None:
        self._shared = _Shared()

    def claim(self, key: str, value: str) -> bool:
        """Create ``key`` with ``value`` unless it exists; True if this call created it."""
        with self._shared.enter() as data:
            if key in data:
                return False
            data[key] = value
            self._shared.cond.notify_all()
            return True

    def set(self, key: str, value: str) -> None:
        """Write ``key`` (overwriting)."""
        with self._shared.enter() as data:
            data[key] = value
            self._shared.cond.notify_all()

    def get_many(self, keys: Sequence[str], present: bool = False) -> list[str | None]:
        """The values of ``keys`` (None for a missing one), without blocking."""
        with self._shared.enter() as data:
            return [data.get(k) for k in keys]

    def wait(self, keys: Sequence[str], timeout: float) -> bool:
        """Block until every key exists (True) or ``timeout`` seconds pass (False)."""
        shared = self._shared
        with shared.enter() as data:
            return (
                shared.cond.wait_for(
                    lambda: shared.broken or all(k in data for k in keys), max(timeout, 0.0)
                )
                and shared.check()
            )

    def wait_get(self, key: str, timeout: float) -> str | None:
        """Block until ``key`` exists and return its value (None after ``timeout`` seconds)."""
        if not self.wait([key], timeout):
            return None
        return self.get_many([key])[0]

    def clone(self) -> MemoryStore:
        """Another client on the same data (clones share it), for another thread."""
        return copy.copy(self)  # the same _Shared: clones share the data

    def describe(self) -> str:
        """Where the store lives, for error messages."""
        return "MemoryStore (this process)"

    # -- fault injection for tests -----------------------------------------------------------------

    def freeze(self) -> None:
        """Make every call block until :meth:`thaw` (a frozen host: SIGSTOP, a partition)."""
        with self._shared.cond:
            self._shared.frozen = True

    def thaw(self) -> None:
        """Let the calls that :meth:`freeze` blocked go on."""
        with self._shared.cond:
            self._shared.frozen = False
            self._shared.cond.notify_all()

    def fail(self) -> None:
        """Make every call raise StoreError from now on (a dead host)."""
        with self._shared.cond:
            self._shared.broken = True
            self._shared.cond.notify_all()

    def keys(self) -> list[str]:
        """Every key, sorted (for tests)."""
        with self._shared.cond:
            return sorted(self._shared.data)

    @property
    def calls(self) -> int:
        """How many calls all clones made (for request-rate tests)."""
        with self._shared.cond:
            return self._shared.calls

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self.keys())} keys>"


class _Shared:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.data: dict[str, str] = {}
        self.frozen = False
        self.broken = False
        self.calls = 0

    def check(self) -> bool:
        if self.broken:
            raise StoreError("MemoryStore failed (fault injected)")
        return True

    def enter(self) -> _Entered:
        return _Entered(self)


class _Entered:
    def __init__(self, shared: _Shared) -> None:
        self._shared = shared

    def __enter__(self) -> dict[str, str]:
        shared = self._shared
        shared.cond.acquire()
        try:
            shared.calls += 1
            shared.cond.wait_for(lambda: not shared.frozen or shared.broken)
            shared.check()
        except BaseException:
            shared.cond.release()
            raise
        return shared.data

    def __exit__(self, *exc: object) -> None:
        self._shared.cond.release()
