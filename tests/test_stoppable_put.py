"""stoppable_put(): a loader on a full bounded queue ends cleanly on a stop, never with
queue.Full or a thread that will not stop."""

from __future__ import annotations

import queue
import threading

import pytest

import tickwork
from tickwork import Coordinator, LooperThread, stoppable_put

REAL_WAIT = 10.0  # seconds; reached only when something is wrong


class TestStoppablePut:
    def test_a_loader_blocked_on_a_full_queue_ends_cleanly_on_a_stop(self) -> None:
        """The README's shape: a LooperThread fills a bounded queue nobody empties; a stop (what
        Ctrl-C does under stop_on_signals) ends it, and coord.join() raises nothing."""
        coord = Coordinator()
        batches: queue.Queue[int] = queue.Queue(maxsize=2)
        results: list[bool] = []
        full = threading.Event()

        def fill_queue() -> None:
            if batches.full():
                full.set()
            results.append(stoppable_put(batches, len(results), stop=coord))

        loader = LooperThread(coord, None, target=fill_queue)
        loader.start()
        assert full.wait(REAL_WAIT)
        coord.request_stop()
        coord.join(stop_grace_period_secs=REAL_WAIT)  # raises nothing: no queue.Full
        assert not loader.is_alive()
        assert results[:2] == [True, True]
        assert results[-1] is False  # the stop came before room did
        assert batches.qsize() == 2

    def test_with_room_it_puts_at_once(self) -> None:
        """With room on the queue the item is put and True returned."""
        q: queue.Queue[str] = queue.Queue(maxsize=1)
        assert stoppable_put(q, "x", stop=threading.Event())
        assert q.get_nowait() == "x"

    def test_a_stop_already_set_puts_nothing(self) -> None:
        """A stop set before the call: nothing is put, False."""
        q: queue.Queue[str] = queue.Queue()
        stop = threading.Event()
        stop.set()
        assert stoppable_put(q, "x", stop=stop) is False
        assert q.empty()

    def test_bad_arguments_name_themselves(self) -> None:
        """A stop that is None, or a check_every that is not > 0, is refused naming it."""
        q: queue.Queue[int] = queue.Queue()
        with pytest.raises(TypeError, match="'stop' must be"):
            stoppable_put(q, 1, stop=None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="'check_every' must be a finite number > 0; got 0"):
            stoppable_put(q, 1, stop=threading.Event(), check_every=0)

    def test_it_is_public(self) -> None:
        """It is exported from tickwork."""
        assert tickwork.stoppable_put is stoppable_put
