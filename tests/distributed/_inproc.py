"""Ranks as threads of this process on one MemoryStore, and a bounded wait (every wait here
is bounded by :data:`TIMEOUT` real seconds)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tickwork.distributed import Coordinator, MemoryStore

TIMEOUT = 10.0  # real seconds any single wait here may take


def make_ranks(store: MemoryStore, world: int, **kw: Any) -> list[Coordinator]:
    """``world`` Coordinators on clones of ``store``, built at once (the rendezvous needs all)."""
    coords: list[Coordinator | None] = [None] * world
    errors: list[BaseException] = []

    def make(rank: int) -> None:
        try:
            coords[rank] = Coordinator(store.clone(), rank=rank, world_size=world, **kw)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=make, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors, errors
    made = [c for c in coords if c is not None]
    assert len(made) == world
    return made


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Until ``predicate()`` is true, at most TIMEOUT real seconds (AssertionError naming it)."""
    done = threading.Event()
    for _ in range(int(TIMEOUT / 0.005)):
        if predicate():
            return
        done.wait(0.005)
    raise AssertionError(f"not within {TIMEOUT} s: {what}")
