"""The cross-rank decisions as pure functions: no threads, no store, no real time."""

from __future__ import annotations

import json
from typing import NoReturn

import pytest

from tickwork.distributed import RankDiedError, RemoteError
from tickwork.distributed._errors import error_record
from tickwork.distributed._policy import (
    Liveness,
    LogView,
    StepPlan,
    agreed_step,
    self_silent,
)
from tickwork.distributed._records import Left, Origin, Stop


def _origin(rank: int) -> Origin:
    return Origin(rank=rank, host="h", pid=1, nonce="n")


class TestLiveness:
    def test_a_peer_is_dead_once_its_counter_stalls_for_the_timeout(self) -> None:
        """Dead exactly when the counter has not moved for `timeout` on the local clock."""
        live = Liveness([1, 2], timeout=5.0, now=100.0)
        assert live.observe(101.0, {1: "1", 2: "1"}) == []
        assert live.observe(105.9, {1: "2", 2: "1"}) == []
        assert live.observe(106.0, {1: "2", 2: "1"}) == [(2, 5.0)]
        assert live.watched == [1]

    def test_a_dead_peer_is_reported_once(self) -> None:
        """After being declared dead a peer is no longer watched nor reported again."""
        live = Liveness([1], timeout=1.0, now=0.0)
        assert live.observe(2.0, {1: None}) == [(1, 2.0)]
        assert live.observe(9.0, {1: None}) == []

    def test_a_peer_that_left_is_never_dead(self) -> None:
        """forget() (a rank that closed) stops the watch."""
        live = Liveness([1], timeout=1.0, now=0.0)
        live.forget(1)
        assert live.observe(10.0, {1: "0"}) == []
        assert live.watched == []

    def test_a_peer_that_never_beat_is_dead_after_the_timeout(self) -> None:
        """The clock starts at construction: a peer silent from the start is dead too."""
        live = Liveness([3], timeout=2.0, now=10.0)
        assert live.observe(11.0, {3: None}) == []
        assert live.observe(12.5, {3: None}) == [(3, 2.5)]


def test_self_silent_only_past_the_timeout_and_after_a_first_beat() -> None:
    """A rank that has not beaten for the timeout knows its peers gave up on it."""
    assert self_silent(14.9, 10.0, 5.0) is None
    assert self_silent(15.0, 10.0, 5.0) == 5.0
    assert self_silent(100.0, None, 5.0) is None


class TestAgreement:
    def test_agreed_step_is_the_largest_commit(self) -> None:
        """Every rank runs up to the furthest step any rank had reached."""
        assert agreed_step([3, 5, 4]) == 5
        assert agreed_step([None, 2, None]) == 2
        assert agreed_step([None, None]) is None

    def test_plan_stops_past_the_agreed_step(self) -> None:
        """should_stop_at is False up to the agreed step, True after it."""
        plan = StepPlan(stopping=True, stop_after=5)
        assert [plan.should_stop_at(s) for s in (4, 5, 6, 7)] == [False, False, True, True]
        assert not StepPlan().should_stop_at(100)

    def test_plan_stops_at_once_without_agreement(self) -> None:
        """A dead rank (stop_now) or untracked steps (stop_after None): True at the next call."""
        assert StepPlan(stop_now=True).should_stop_at(0)
        assert StepPlan(stopping=True, stop_after=None).should_stop_at(0)

    def test_spe_switches_apply_past_their_step_in_log_order(self) -> None:
        """A call starting past `after` uses the new value; later entries win."""
        plan = StepPlan(initial_spe=1, switches=[(10, 4), (20, 8)])
        assert [plan.spe_at(s) for s in (0, 10, 11, 20, 21)] == [1, 1, 4, 4, 8]


class TestLogView:
    def test_expected_ranks_exclude_those_that_left_before_and_the_dead(self) -> None:
        """An agreement waits for every rank but those gone before it."""
        log = LogView(world_size=4)
        log.apply(0, Left(origin=_origin(3)))
        log.apply(1, Stop(origin=_origin(0)))
        log.apply(2, Left(origin=_origin(2)))
        assert log.first_stop == 1
        assert log.expected_at(1) == [0, 1, 2]
        assert log.expected_at(1, dead_now=[1]) == [0, 2]

    def test_entries_must_come_in_order(self) -> None:
        """Out-of-order application is a bug and says so."""
        log = LogView(world_size=2)
        with pytest.raises(ValueError, match="expected 0, got 1"):
            log.apply(1, Stop(origin=_origin(0)))


class TestWire:
    def test_an_exception_crosses_as_json_and_comes_back_as_remote_error(self) -> None:
        """Type name, message, rank, host, pid and traceback text; nothing pickled."""

        class Unpicklable(Exception):
            def __reduce__(self) -> NoReturn:
                raise TypeError("no pickling")

        try:
            raise Unpicklable("bad thing")
        except Unpicklable as e:
            record = json.loads(json.dumps(error_record(e, rank=3)))
        assert record["type"].endswith("Unpicklable")
        assert record["message"] == "bad thing"
        assert record["rank"] == 3
        assert "raise Unpicklable" in record["traceback"]
        remote = RemoteError.from_record(record)
        assert remote.rank == 3
        assert remote.type_name == record["type"]
        assert "bad thing (raised on rank 3" in str(remote)
        assert "raise Unpicklable" in str(remote)

    def test_forwarded_remote_error_keeps_its_origin(self) -> None:
        """A RemoteError re-reported elsewhere still names the first rank."""
        remote = RemoteError("KeyError", "'x'", 2, "h", 9, "tb")
        assert error_record(remote, rank=0)["rank"] == 2

    def test_rank_died_error_names_rank_host_and_timeout(self) -> None:
        """The message says which rank, where, for how long and the timeout."""
        text = str(RankDiedError(2, "node7, pid 5", 5.2, 5.0, by=0))
        assert "rank 2 (host node7, pid 5)" in text
        assert "5.2 s" in text
        assert "heartbeat_timeout=5 s" in text
