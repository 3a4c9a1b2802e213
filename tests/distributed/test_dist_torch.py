"""Real ranks on localhost: torch.distributed (gloo), started by torchrun and by a spawn.

Heartbeats here: every 0.25 s, timeout 2 s. Margins are generous (loaded 2-core machines); the
detection figures are benchmarks' business (benchmarks/distributed.py), not these tests'.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed._dist_harness import Job

    StartJob = Callable[..., Job]  # the `job` fixture: job(launcher, world, **cfg)

pytest.importorskip("torch.distributed")

pytestmark = [pytest.mark.distributed, pytest.mark.torch, pytest.mark.timeout(240)]

LAUNCHERS = ["spawn", "torchrun"]


def _remote_or_local(
    error: dict[str, Any], origin: int, rank: int, type_name: str, message: str
) -> None:
    assert error is not None, "join() should have raised"
    if rank == origin:
        assert error["type"] == type_name
        assert error["str"] == message
    else:
        assert error["type"] == "RemoteError"
        assert error["type_name"] == type_name
        assert error["rank"] == origin
        assert message in error["str"]
        assert f"rank {origin}" in error["str"]
        assert "Traceback" in error["remote_traceback"]
        assert "_dist_worker.py" in error["remote_traceback"]


class TestStop:
    @pytest.mark.parametrize(("launcher", "world"), [("spawn", 2), ("torchrun", 4)])
    def test_exception_on_one_rank_is_raised_by_join_everywhere(
        self, job: StartJob, launcher: str, world: int
    ) -> None:
        """An exception on rank 1 stops every rank; join() raises it on each (rebuilt remotely)."""
        j = job(launcher, world, scenario="error", target=1)
        results = j.results()
        for rank, result in results.items():
            assert "crash" not in result, result
            _remote_or_local(result["join"], 1, rank, "ValueError", "boom on rank 1")

    def test_clean_stop_on_one_rank_stops_all_without_error(self, job: StartJob) -> None:
        """A plain request_stop() on the last rank stops all; join() returns normally."""
        j = job("spawn", 2, scenario="clean", target=1)
        results = j.results()
        assert all(r["join"] is None and "crash" not in r for r in results.values()), results

    @pytest.mark.parametrize(("launcher", "world", "seed"), [("spawn", 4, 11), ("torchrun", 2, 5)])
    def test_agreed_step_under_all_reduce(
        self, job: StartJob, launcher: str, world: int, seed: int
    ) -> None:
        """A stop on a random rank at a random step: no hang, every rank ran the same steps."""
        j = job(launcher, world, scenario="allreduce", seed=seed)
        results = j.results()
        steps = {r["steps"] for r in results.values()}
        assert len(steps) == 1, results
        (ran,) = steps
        stop_step = results[0]["stop_step"]
        assert ran > stop_step  # the requesting rank ran its step, so everyone did
        for r in results.values():
            assert "crash" not in r, r
            assert r["join"] is None
            assert r["total"] == ran * world


class TestPreemption:
    @pytest.mark.parametrize(("launcher", "world"), [("spawn", 2), ("torchrun", 2)])
    def test_sigterm_on_one_rank_stops_all_at_one_step_and_saves_once_each(
        self, job: StartJob, launcher: str, world: int
    ) -> None:
        """SIGTERM on rank 1: all ranks stop at the same step; the final checkpoint runs once
        on every rank, with the signal's name and rank, before the block ends."""
        j = job(launcher, world, scenario="sigterm", deadline=30)
        j.wait_ready()
        time.sleep(0.5)
        os.kill(j.pid(1), signal.SIGTERM)
        results = j.results()
        steps = {r["steps"] for r in results.values()}
        assert len(steps) == 1, results
        for r in results.values():
            assert "crash" not in r, r
            assert r["join"] is None
            assert len(r["saves"]) == 1, r
            (save,) = r["saves"]
            assert save["signal"] == "SIGTERM"
            assert save["signalled_rank"] == 1
            assert save["step"] == r["steps"]
            assert r["report"]["completed"]
            assert not r["report"]["overrun"]
        assert results[1]["received"] == ["SIGTERM"]
        assert results[0]["received"] == []

    def test_deadline_overrun_is_cut_short_and_reported(self, job: StartJob) -> None:
        """A final checkpoint that runs past the deadline is abandoned at the deadline, told to
        stop (info.cancelled), reported (report.overrun) and raised by join()."""
        j = job("spawn", 2, scenario="overrun", deadline=2.0)
        j.wait_ready()
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(j.pid(0), signal.SIGUSR1)
        results = j.results()
        assert time.monotonic() - t0 < 20
        for r in results.values():
            assert "crash" not in r, r
            assert r["report"]["overrun"] is True
            assert r["report"]["completed"] is False
            assert r["report"]["seconds"] < 10
            assert r["join"]["type"] == "FinalCheckpointError"
            assert len(r["saves"]) == 1

    def test_torchrun_sibling_killed_is_a_dying_job_not_a_preemption(self, job: StartJob) -> None:
        """Under torchrun, SIGKILL of one worker makes the agent SIGTERM the others: they stop,
        name the dead rank, and skip the collective final checkpoint."""
        j = job("torchrun", 2, scenario="torchrun_kill")
        j.wait_ready()
        time.sleep(0.3)
        os.kill(j.pid(1), signal.SIGKILL)
        (r,) = j.results([0]).values()
        assert "crash" not in r, r
        assert r["join"] is not None, j.diagnostics()
        assert r["received"] == ["SIGTERM"]  # from torchrun's agent
        assert r["join"]["type"] == "RankDiedError"
        assert r["join"]["rank"] == 1
        assert r["saves"] == []
        assert "dying" in r["report"]["skipped"]


class TestDeadRanks:
    @pytest.mark.parametrize(
        ("launcher", "world", "sig"),
        [
            ("spawn", 4, signal.SIGKILL),
            ("torchrun", 2, signal.SIGSTOP),
        ],
    )
    def test_dead_or_frozen_rank_is_named_by_every_other_rank(
        self, job: StartJob, launcher: str, world: int, sig: signal.Signals
    ) -> None:
        """A rank SIGKILLed or SIGSTOPped: every other rank stops with RankDiedError naming it,
        within the timeout plus margins."""
        victim = world - 1
        j = job(launcher, world, scenario="die")
        j.wait_ready()
        killed = time.time()
        os.kill(j.pid(victim), sig)
        survivors = [r for r in range(world) if r != victim]
        results = j.results(survivors)
        for r in results.values():
            assert "crash" not in r, r
            assert r["join"]["type"] == "RankDiedError", r
            assert r["join"]["rank"] == victim
            assert f"rank {victim}" in r["join"]["str"]
            assert r["stopped_at"] - killed < 2.0 + 10.0

    def test_a_frozen_rank_resumed_learns_it_was_declared_dead(self, job: StartJob) -> None:
        """SIGSTOP rank 2 of 3 until the others have named it, then SIGCONT: it stops at once
        with RankDiedError naming itself (never runs on, never blames a healthy store)."""
        j = job("spawn", 3, scenario="die")
        j.wait_ready()
        victim = j.pid(2)
        os.kill(victim, signal.SIGSTOP)
        try:
            survivors = j.results([0, 1])
        finally:
            os.kill(victim, signal.SIGCONT)
        for r in survivors.values():
            assert r["join"]["type"] == "RankDiedError", r
            assert r["join"]["rank"] == 2
        (resumed,) = j.results([2], timeout=60).values()
        assert "crash" not in resumed, resumed
        assert resumed["join"]["type"] == "RankDiedError", resumed
        assert resumed["join"]["rank"] == 2
        assert (
            "this process" in resumed["join"]["str"] or "noticed by rank" in resumed["join"]["str"]
        )

    @pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
    def test_store_host_killed_or_frozen(self, job: StartJob, sig: signal.Signals) -> None:
        """Rank 0 hosts the TCPStore; when it dies or freezes, the others stop with
        StoreUnreachableError instead of hanging in a store call."""
        j = job("spawn", 3, scenario="die")
        j.wait_ready()
        killed = time.time()
        os.kill(j.pid(0), sig)
        results = j.results([1, 2])
        for r in results.values():
            assert "crash" not in r, r
            assert r["join"]["type"] == "StoreUnreachableError", r
            assert "TCPStore" in r["join"]["str"]
            assert r["stopped_at"] - killed < 2.0 + 10.0


class TestNoFalseVerdicts:
    def test_twenty_coordinators_in_quick_succession_on_eight_ranks(self, job: StartJob) -> None:
        """8 ranks on a 2-core machine, default timeouts, a new Coordinator every 0.1 s (store
        connection churn, under which torch's clone() stalls 5 s): no rank is ever declared
        dead and the store is never declared unreachable."""
        j = job("spawn", 8, scenario="churn", coordinators=20)
        results = j.results(timeout=220)
        for r in results.values():
            assert "crash" not in r, r
            assert r["errors"] == [None] * 20, r["errors"]


class TestSharedSpe:
    def test_every_rank_applies_the_same_spe_at_the_same_step(self, job: StartJob) -> None:
        """The tuner runs on rank 0 only; ranks of different speeds get the same spe at the
        same steps (an all_reduce of the value checks it every call)."""
        j = job("spawn", 2, scenario="tuner", seconds=3.0)
        results = j.results()
        for r in results.values():
            assert "crash" not in r, r
            assert r["mismatches"] == 0
            assert r["join"] is None
        assert results[0]["calls"] == results[1]["calls"]
        assert len({n for _, n in results[0]["calls"]}) > 1, "the tuner never changed spe"
