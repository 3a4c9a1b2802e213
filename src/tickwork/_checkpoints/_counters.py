"""Thread-safe counters behind :meth:`CheckpointFollower.statistics`."""

from __future__ import annotations

import threading

__all__ = ["Counters"]

_NAMES = (
    "yielded",
    "skipped",
    "deleted_before_reached",
    "rejected",
    "errors",
    "scans",
    "change_batches",
)


class Counters:
    """Counts what a follower did; read from any thread with :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_NAMES, 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
