"""Store clients kept between Coordinators, so that a new one opens no new connection.

Each Coordinator's log reader and stop bell need a client of their own (a torch client runs its
calls one at a time, and they block in waits). Opening one (torch's ``clone()``) is a new TCP
connection, and under connection churn (a new Coordinator per phase or attempt, every rank at
once) torch's ``clone()`` stalls 5 s. So a client whose thread ended cleanly is handed back here
and the next Coordinator on the same store takes it instead of cloning: after the first
Coordinator of a process, no more connections are opened.
"""

from __future__ import annotations

import os
import threading

from ._store import KVStore

__all__ = ["give_back", "take"]

_lock = threading.Lock()
# id(store the caller gave) -> (that store, its idle clients); the store is kept so that its id
# cannot be reused by another object while clients of it wait here.
_idle: dict[int, tuple[object, list[KVStore]]] = {}


def take(origin: object, opener: KVStore) -> KVStore:
    """An idle client of ``origin``'s store, or a new one (``opener.clone()``, may stall)."""
    with _lock:
        entry = _idle.get(id(origin))
        if entry is not None and entry[0] is origin and entry[1]:
            return entry[1].pop()
    return opener.clone()


def give_back(origin: object, client: KVStore) -> None:
    """``client`` is idle (its thread ended after a completed call): keep it for the next one."""
    with _lock:
        entry = _idle.setdefault(id(origin), (origin, []))
        if entry[0] is origin and len(entry[1]) < 8:
            entry[1].append(client)


def _forget_all() -> None:
    """In a forked child: the kept clients are the parent's connections; drop them."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()


os.register_at_fork(after_in_child=_forget_all)
