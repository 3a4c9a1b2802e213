"""The two readers of a rank: the event log, in order, and the stop bell.

:class:`LogWatcher` reads the log's entries one by one, each with one blocked store wait on the
next (woken by the store in one round trip; none at idle but one every
:data:`WATCH_WAIT_SECONDS`), checks each (:mod:`._records`) and hands it to the replica.

:class:`Bell` is the fast path of a stop. A rank that posts a stop (or a dead rank) first sets
every rank's ``bell/<rank>`` key; each rank's bell thread is blocked in a store ``wait`` on its
own and, woken, sets the local stop flag before any further round trip: a stop reaches every
rank in two one-way delays (the set, the wake-up) instead of four (a torch ``get`` is a wait and
a read). Close wakes a rank's own bell (it knows it is leaving). The bell's value is checked
after the flag is set; the stop's details (its error, its agreement) come through the log.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .._naming import start_daemon
from .._sync import SignalSafeEvent
from ._errors import StoreRecordError
from ._records import Left, parse_bell, parse_entry
from ._store import StoreError
from ._tracked import TrackedStore

if TYPE_CHECKING:
    from ._replica import Replica

__all__ = ["BELL_WAIT_SECONDS", "WATCH_WAIT_SECONDS", "Bell", "LogWatcher"]

logger = logging.getLogger(__name__)

WATCH_WAIT_SECONDS = 120.0  # one blocked wait on the log; an entry (or close) ends it sooner
BELL_WAIT_SECONDS = 120.0  # one blocked wait on the bell; a stop (or close) ends it sooner


class LogWatcher:
    """Reads the event log in order on a client of its own (see module docs)."""

    def __init__(self, replica: Replica, kv: TrackedStore) -> None:
        self._r = replica
        self._kv = kv
        self.done = SignalSafeEvent()

    def start(self) -> threading.Thread:
        return start_daemon(self._run, f"distributed log reader (rank {self._r.rank})")

    def _run(self) -> None:
        r = self._r
        index = 0
        kv = self._kv
        try:
            while not r.threads_stop.is_set():
                key = r.keys.entry(index)
                raw = kv.wait_get(key, WATCH_WAIT_SECONDS)
                if raw is None:
                    continue
                entry = parse_entry(raw, key, r.describe, r.world)
                r.apply(index, entry, kv)
                index += 1
                r.applied.set()
                if isinstance(entry, Left) and entry.origin.rank == r.rank:
                    r.done_with(kv)
                    return  # this rank's own 'left': nothing after it concerns it
        except StoreError as e:
            r.store_failed(e)
        except StoreRecordError as e:
            r.fail(e)
        except BaseException as e:  # a bug: keep it, never lose it
            logger.exception("tickwork.distributed log reader failed")
            r.fail(e)
        finally:
            self.done.set()
            r.applied.set()


class Bell:
    """Waits on this rank's bell on a client of its own (see module docs)."""

    def __init__(self, replica: Replica, kv: TrackedStore) -> None:
        self._r = replica
        self._kv = kv

    def start(self) -> threading.Thread:
        return start_daemon(self._run, f"distributed stop bell (rank {self._r.rank})")

    def _run(self) -> None:
        r = self._r
        key = r.keys.bell(r.rank)
        kv = self._kv
        try:
            while not r.threads_stop.is_set():
                if not kv.wait([key], BELL_WAIT_SECONDS):
                    continue
                if r.leaving or r.threads_stop.is_set():
                    r.done_with(kv)
                    return
                r.stop_here(None)  # at once: what the stop carries comes through the log
                (raw,) = kv.get_many([key], present=True)
                origin = parse_bell(raw, key, r.describe, r.world)
                if origin.nonce != r.peers.info[origin.rank].nonce:
                    raise StoreRecordError(
                        key,
                        r.describe,
                        f"the bell names rank {origin.rank} but was not rung by it (nonce "
                        f"{origin.nonce!r}): another client writes under tickwork's keys",
                    )
                r.done_with(kv)
                return
        except StoreError as e:
            r.store_failed(e)
        except StoreRecordError as e:
            r.fail(e, post=True)
        except BaseException as e:  # a bug: keep it, never lose it
            logger.exception("tickwork.distributed stop bell failed")
            r.fail(e)
