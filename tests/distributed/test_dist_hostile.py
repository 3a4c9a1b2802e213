"""Everything read from the store is input: values another client wrote under tickwork's keys.

Ranks are threads on a MemoryStore; a "hostile" client writes to the Coordinator's keys. Every
rank must stop with StoreRecordError naming the key, the store and the rule, never a bare
JSONDecodeError, and a value a rank did not write must never become a stop step.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tickwork.distributed import Coordinator, MemoryStore, RemoteError, StoreRecordError
from tickwork.distributed._records import MAX_RECORD_BYTES

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed._inproc import TIMEOUT, make_ranks, wait_for
else:  # pytest runs them with this folder on sys.path
    from _inproc import TIMEOUT, make_ranks, wait_for

PREFIX = "tickwork/run/0/default/"


@pytest.fixture
def world() -> Iterator[Callable[[int], tuple[MemoryStore, list[Coordinator]]]]:
    made: list[Coordinator] = []

    def start(size: int) -> tuple[MemoryStore, list[Coordinator]]:
        store = MemoryStore()
        coords = make_ranks(store, size)
        made.extend(coords)
        return store, coords

    yield start
    for c in made:
        c.close(timeout=2)


def _entry(**fields: Any) -> str:
    base = {"rank": 0, "host": "h", "pid": 1, "nonce": "x"}
    base.update(fields)
    return json.dumps(base)


BAD_ENTRIES = [
    pytest.param("not json {", "must be JSON", id="not-json"),
    pytest.param("x" * (MAX_RECORD_BYTES + 1), "at most", id="8-MiB-like"),
    pytest.param("[1,2,3]", "must be a JSON object", id="a-list"),
    pytest.param(_entry(kind="stop", rank="one"), "'rank' must be an int in [0, 2]", id="rank-str"),
    pytest.param(
        _entry(kind="dead", dead=99, silent_for=1.0), "'dead' must be an int", id="rank99"
    ),
    pytest.param(_entry(kind="party"), "'kind' must be one of", id="unknown-kind"),
    pytest.param(
        _entry(kind="stop", error={"type": 3}), "'type' must be a str", id="bad-error-record"
    ),
]


class TestForeignLogEntries:
    @pytest.mark.parametrize(("raw", "rule"), BAD_ENTRIES)
    def test_every_rank_stops_with_an_error_naming_key_store_and_rule(
        self, world: Callable[[int], tuple[MemoryStore, list[Coordinator]]], raw: str, rule: str
    ) -> None:
        """A value in the event log that tickwork did not write stops every rank; join() raises
        StoreRecordError with the key, the store and the rule broken."""
        store, coords = world(3)
        store.set(PREFIX + "ev/0", raw)
        wait_for(lambda: all(c.should_stop() for c in coords), "every rank stopped")
        for c in coords:
            with pytest.raises(StoreRecordError) as info:
                c.join()
            assert info.value.key == PREFIX + "ev/0"
            assert info.value.store == "MemoryStore (this process)"
            assert rule in str(info.value)
            assert not c.dead_ranks  # never a false RankDiedError for a rank 99


class TestForeignAgreementAnswers:
    def test_a_taken_answer_key_never_becomes_the_stop_step(
        self, world: Callable[[int], tuple[MemoryStore, list[Coordinator]]]
    ) -> None:
        """10^18 written under a rank's answer key before it answers: that rank's claim shows
        the key was taken, every rank stops at once (stop_now) and no rank runs to 10^18."""
        store, coords = world(2)
        # The first stop will be entry 0; its answers are ag/0/<rank>.
        store.set(PREFIX + "ag/0/1", json.dumps({"step": 10**18, "nonce": "forged"}))
        for c in coords:
            assert not c.should_stop_at(0)
        coords[0].request_stop()
        results: dict[int, list[int]] = {0: [], 1: []}

        def run(rank: int) -> None:
            for step in range(1, 50):
                if coords[rank].should_stop_at(step):
                    results[rank].append(step)
                    return

        threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(3 * TIMEOUT)
        assert results[0], "rank 0 never stopped"
        assert results[1], "rank 1 never stopped"
        for c in coords:  # the first report of it, rebuilt on the ranks that did not raise it
            with pytest.raises((StoreRecordError, RemoteError), match=r"ag/0/1") as info:
                c.join()
            if isinstance(info.value, RemoteError):
                assert info.value.type_name == "tickwork.distributed.StoreRecordError"

    def test_a_bell_rung_by_someone_else_is_named(
        self, world: Callable[[int], tuple[MemoryStore, list[Coordinator]]]
    ) -> None:
        """A bell set by another client (a forged nonce) stops the rank with StoreRecordError."""
        store, coords = world(2)
        store.set(PREFIX + "bell/1", _entry(nonce="forged"))
        wait_for(lambda: coords[1].should_stop(), "rank 1 stopped")
        with pytest.raises(StoreRecordError, match=r"bell/1.*not rung by it"):
            coords[1].join()


class TestForeignHeartbeats:
    def test_a_heartbeat_that_is_not_one_is_ignored_with_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Garbage under a peer's heartbeat key is logged once and counts as no beat."""
        store = MemoryStore()
        info = {"host": "ghost", "pid": 1, "world_size": 2, "nonce": "ghost"}
        store.set(PREFIX + "info/1", json.dumps(info))
        store.set(PREFIX + "hb/1", "garbage")
        coord = Coordinator(
            store, rank=0, world_size=2, heartbeat_timeout=30.0, heartbeat_interval=0.05
        )
        try:
            wait_for(
                lambda: "ignoring a heartbeat that is not one" in caplog.text,
                "a warning about hb/1",
            )
            assert caplog.text.count("ignoring a heartbeat") == 1
            assert "'tickwork/run/0/default/hb/1'" in caplog.text
            assert not coord.should_stop()
        finally:
            coord.close(timeout=2)
