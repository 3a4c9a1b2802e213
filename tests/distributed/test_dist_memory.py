"""The distributed Coordinator in one process: ranks as threads on a MemoryStore.

Timing rules (heartbeats, the watchdog) run on a FakeClock, so dead ranks and frozen stores are
tested by moving time, never by sleeping. Every real wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

import tickwork
import tickwork.distributed as td
from tickwork.distributed import (
    Coordinator,
    MemoryStore,
    RankDiedError,
    RemoteError,
    SharedStepsPerExecution,
    StoreUnreachableError,
)
from tickwork.testing import FakeClock

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed._inproc import TIMEOUT, make_ranks, wait_for
else:  # pytest runs them with this folder on sys.path
    from _inproc import TIMEOUT, make_ranks, wait_for


Ranks = Callable[..., list[Coordinator]]  # the `ranks` fixture: ranks(world, store=None, **kw)


@pytest.fixture
def ranks() -> Iterator[Callable[..., list[Coordinator]]]:
    made: list[Coordinator] = []
    stores: list[MemoryStore] = []

    def start(world: int, store: MemoryStore | None = None, **kw: Any) -> list[Coordinator]:
        store = store or MemoryStore()
        stores.append(store)
        kw.setdefault("heartbeat_timeout", 5.0)
        coords = make_ranks(store, world, **kw)
        made.extend(coords)
        return coords

    yield start
    for store in stores:
        store.thaw()
    for c in made:
        c.close(timeout=2)


class TestStopAcrossRanks:
    def test_request_stop_on_one_rank_stops_every_rank(self, ranks: Ranks) -> None:
        """A plain stop anywhere turns should_stop() True everywhere; join() returns."""
        coords = ranks(3)
        assert not any(c.should_stop() for c in coords)
        coords[2].request_stop()
        assert coords[2].should_stop()  # locally at once
        wait_for(lambda: all(c.should_stop() for c in coords), "every rank stopped")
        for c in coords:
            c.join()

    def test_join_raises_the_originating_error_everywhere(self, ranks: Ranks) -> None:
        """The origin raises its own exception; the others a RemoteError naming rank and host."""
        coords = ranks(3)
        with coords[1].stop_on_exception():
            raise KeyError("missing")
        wait_for(lambda: all(c.should_stop() for c in coords), "every rank stopped")
        with pytest.raises(KeyError):
            coords[1].join()
        for c in (coords[0], coords[2]):
            with pytest.raises(RemoteError) as info:
                c.join()
            assert info.value.type_name == "KeyError"
            assert info.value.rank == 1
            assert info.value.message == "'missing'"
            assert "raise KeyError" in info.value.remote_traceback

    def test_first_error_in_log_order_wins_on_every_rank(self, ranks: Ranks) -> None:
        """Two ranks fail: every rank's join() raises the same (first logged) one."""
        coords = ranks(2)
        coords[0].request_stop(ValueError("first"))
        wait_for(lambda: coords[1].should_stop(), "rank 1 stopped")
        coords[1].request_stop(TypeError("second"))
        with pytest.raises(ValueError, match="first"):
            coords[0].join()
        with pytest.raises(RemoteError, match="ValueError: first"):
            coords[1].join()

    def test_clean_stop_types_are_plain_stops(self, ranks: Ranks) -> None:
        """StopIteration reported on one rank is a plain stop on all."""
        coords = ranks(2)
        coords[0].request_stop(StopIteration())
        wait_for(lambda: coords[1].should_stop(), "rank 1 stopped")
        coords[0].join()
        coords[1].join()

    def test_looper_thread_error_reaches_other_ranks(self, ranks: Ranks) -> None:
        """An exception in a LooperThread on rank 0 stops rank 1 with a RemoteError."""
        coords = ranks(2)

        def fail() -> None:
            raise RuntimeError("looper broke")

        thread = tickwork.LooperThread(coords[0], 0.01, target=fail)
        thread.start()
        wait_for(lambda: coords[1].should_stop(), "rank 1 stopped")
        with pytest.raises(RuntimeError, match="looper broke"):
            coords[0].join([thread])
        with pytest.raises(RemoteError, match="RuntimeError: looper broke"):
            coords[1].join()

    def test_clear_stop_is_refused(self, ranks: Ranks) -> None:
        """A job-wide stop cannot be undone on one rank."""
        (coord,) = ranks(1)
        with pytest.raises(RuntimeError, match="cannot be cleared"):
            coord.clear_stop()


class TestAgreedStep:
    @pytest.mark.parametrize("seed", range(8))
    def test_ranks_in_lockstep_stop_at_the_same_step(self, ranks: Ranks, seed: int) -> None:
        """Ranks kept in lockstep by a barrier (a collective) all stop at one step, past the
        step where the stop was requested; none is left waiting in the barrier."""
        world = 3
        coords = ranks(world)
        rng = random.Random(seed)
        target, stop_step = rng.randrange(world), rng.randrange(1, 30)
        barrier = threading.Barrier(world, timeout=TIMEOUT)
        steps = [0] * world

        def loop(rank: int) -> None:
            coord, step = coords[rank], 0
            jitter = random.Random(seed * 10 + rank)
            while not coord.should_stop_at(step):
                if rank == target and step == stop_step:
                    coord.request_stop()
                barrier.wait()
                if jitter.random() < 0.3:
                    threading.Event().wait(jitter.random() * 0.002)
                step += 1
            steps[rank] = step

        threads = [threading.Thread(target=loop, args=(r,)) for r in range(world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        assert len(set(steps)) == 1, steps
        assert steps[0] > stop_step

    def test_untracked_ranks_stop_at_once(self, ranks: Ranks) -> None:
        """Without any should_stop_at call before the stop, should_stop_at is True at once."""
        coords = ranks(2)
        coords[0].request_stop()
        wait_for(lambda: coords[1].should_stop(), "rank 1 stopped")
        assert coords[1].should_stop_at(0)
        assert coords[0].should_stop_at(0)


class TestDeadRanks:
    def _fake_peer(self, store: MemoryStore, rank: int, world: int) -> None:
        info = {"host": "ghost", "pid": 1, "world_size": world, "nonce": "ghost"}
        store.set(f"tickwork/run/0/default/info/{rank}", json.dumps(info))
        store.set(f"tickwork/run/0/default/hb/{rank}", json.dumps({"n": 0, "step": None}))

    def test_a_silent_rank_is_declared_dead_after_the_timeout(self, ranks: Ranks) -> None:
        """A peer whose heartbeat stops is named in RankDiedError once the timeout passes."""
        clock = FakeClock(1000.0)
        store = MemoryStore()
        self._fake_peer(store, 1, 2)
        coord = Coordinator(
            store,
            rank=0,
            world_size=2,
            heartbeat_timeout=5.0,
            heartbeat_interval=1.0,
            clock=clock,
        )
        try:
            for _ in range(4):
                clock.wait_for_sleepers(2)
                clock.advance(1.0)
            assert not coord.should_stop()
            clock.wait_for_sleepers(2)
            clock.advance(1.0)  # 5 s after its last beat
            wait_for(coord.should_stop, "rank 1 declared dead")
            assert coord.dead_ranks == {1}
            assert coord.should_stop_at(0)  # no agreement with a dead rank
            with pytest.raises(RankDiedError, match=r"rank 1 \(host ghost, pid 1\)") as info:
                coord.join()
            assert info.value.rank == 1
        finally:
            coord.close(timeout=1)

    def test_a_rank_that_closed_is_not_dead(self, ranks: Ranks) -> None:
        """close() posts 'left': the others stop watching it and go on."""
        clock = FakeClock(1000.0)
        coords = ranks(2, clock=clock, heartbeat_interval=1.0)
        coords[1].close()
        wait_for(lambda: coords[0].dead_ranks == frozenset() and 1 in coords[0].left_ranks, "left")
        for _ in range(10):
            clock.wait_for_sleepers(2)
            clock.advance(1.0)
        assert not coords[0].should_stop()

    def _failing_host_and_peer(
        self, clock: FakeClock
    ) -> tuple[Coordinator, Coordinator, threading.Thread, list[float]]:
        """Ranks 0 (hosts the store) and 1 of 3; rank 2 never beats, so both fail with
        RankDiedError. Then rank 0 closes on a thread; ``closed`` gets the fake time it returned."""
        store = MemoryStore()
        self._fake_peer(store, 2, 3)
        made: dict[int, Coordinator] = {}

        def make(rank: int) -> None:
            made[rank] = Coordinator(
                store.clone(),
                rank=rank,
                world_size=3,
                heartbeat_timeout=5.0,
                heartbeat_interval=1.0,
                hosts_store=rank == 0,
                clock=clock,
            )

        builders = [threading.Thread(target=make, args=(r,)) for r in (0, 1)]
        for t in builders:
            t.start()
        for t in builders:
            t.join(TIMEOUT)
        host, peer = made[0], made[1]

        def stopped() -> bool:
            return host.should_stop() or peer.should_stop()

        for _ in range(20):
            # Both ranks' sender and watchdog asleep on the clock, or one rank failed already (a
            # failed rank's threads sleep less; the other learns it from the log).
            wait_for(lambda: stopped() or clock.sleepers >= 4, "the ranks waiting on the clock")
            if stopped():
                break
            clock.advance(1.0)
        wait_for(lambda: host.should_stop() and peer.should_stop(), "rank 2 declared dead")
        closed: list[float] = []

        def close_host() -> None:
            host.close(timeout=60)
            closed.append(clock.now())

        closer = threading.Thread(target=close_host)
        closer.start()
        return host, peer, closer, closed

    def test_a_failing_store_host_waits_for_live_peers_to_leave(self) -> None:
        """The store dies with its host: a failing host leaves only after its live peers have
        read the failure and left, so that they raise the job's error, not a lost store."""
        clock = FakeClock(1000.0)
        host, peer, closer, closed = self._failing_host_and_peer(clock)
        try:
            started = clock.now()
            for _ in range(4):  # 2 s of fake time: the host waits on
                clock.advance(0.5)
                closer.join(0.05)
            assert closer.is_alive()
            assert not closed
            peer.close(timeout=2)
            closer.join(TIMEOUT)
            assert not closer.is_alive()
            assert closed == [started + 2.0]  # it left when rank 1 left, not before or after
            with pytest.raises(RankDiedError, match=r"rank 2 \(host ghost"):
                peer.join()
        finally:
            peer.close(timeout=1)
            host.close(timeout=1)

    def test_a_failing_store_host_waits_at_most_the_heartbeat_timeout(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A peer that never leaves (stuck in a collective) holds a failing host back for
        heartbeat_timeout, not for close()'s whole timeout; the host says so."""
        clock = FakeClock(1000.0)
        caplog.set_level("WARNING", logger="tickwork.distributed")
        host, peer, closer, closed = self._failing_host_and_peer(clock)
        try:
            started = clock.now()
            for _ in range(200):
                if not closer.is_alive():
                    break
                clock.advance(0.5)
                closer.join(0.05)
            assert not closer.is_alive()
            (when,) = closed
            assert started + 5.0 <= when < started + 10.0, (started, when)
            assert "hosts the store and leaves while ranks [1] have not left yet" in caplog.text
        finally:
            peer.close(timeout=1)
            host.close(timeout=1)

    def test_idle_load_is_two_requests_per_heartbeat(self, ranks: Ranks) -> None:
        """At idle a rank makes one set and one read per heartbeat, and nothing else."""
        clock = FakeClock(1000.0)
        store = MemoryStore()
        self._fake_peer(store, 1, 2)
        coord = Coordinator(
            store,
            rank=0,
            world_size=2,
            heartbeat_timeout=50.0,
            heartbeat_interval=1.0,
            clock=clock,
        )
        try:
            clock.wait_for_sleepers(2)
            before = coord.store_requests
            for beat in range(10):
                # the peer is alive
                store.set("tickwork/run/0/default/hb/1", json.dumps({"n": beat + 1, "step": 0}))
                clock.advance(1.0)
                clock.wait_for_sleepers(2)
            assert coord.store_requests - before == 20
        finally:
            coord.close(timeout=1)


class TestStoreFailures:
    def test_a_frozen_store_is_noticed_by_the_watchdog(self, ranks: Ranks) -> None:
        """Calls that block forever (SIGSTOPped host) end in StoreUnreachableError after the
        timeout, measured without any store call."""
        clock = FakeClock(1000.0)
        store = MemoryStore()
        coords = ranks(2, store=store, clock=clock, heartbeat_interval=1.0)
        clock.wait_for_sleepers(4)
        store.freeze()
        for _ in range(8):
            clock.advance(1.0)
        wait_for(lambda: all(c.should_stop() for c in coords), "every rank stopped")
        for c in coords:
            with pytest.raises(StoreUnreachableError, match="no reply from MemoryStore"):
                c.join()
            assert c.should_stop_at(0)

    def test_a_dead_store_is_noticed_at_the_next_call(self, ranks: Ranks) -> None:
        """A store that fails (dead host) stops every rank with StoreUnreachableError."""
        store = MemoryStore()
        coords = ranks(2, store=store, heartbeat_interval=0.05, heartbeat_timeout=5.0)
        store.fail()
        wait_for(lambda: all(c.should_stop() for c in coords), "every rank stopped")
        for c in coords:
            with pytest.raises(StoreUnreachableError, match="the store failed"):
                c.join()


class TestPreemption:
    def test_signal_stops_at_agreed_step_and_saves_once_chaining_the_old_handler(
        self, ranks: Ranks
    ) -> None:
        """SIGUSR1 in the main thread: the previous handler still runs, should_stop_at is True
        at the next step, the final checkpoint runs once and the report says so."""
        (coord,) = ranks(1)
        chained: list[int] = []
        previous = signal.signal(signal.SIGUSR1, lambda s, f: chained.append(s))
        saves: list[Any] = []
        try:
            with coord.stop_on_signals(final_checkpoint=saves.append, deadline=30) as stop:
                assert not coord.should_stop_at(0)
                os.kill(os.getpid(), signal.SIGUSR1)
                wait_for(coord.should_stop, "stop after the signal")
                step = 1
                while not coord.should_stop_at(step):
                    step += 1
                assert coord.should_stop_at(step + 1)
        finally:
            signal.signal(signal.SIGUSR1, previous)
        assert chained == [signal.SIGUSR1]
        assert len(saves) == 1
        assert saves[0].signal == "SIGUSR1"
        assert saves[0].step == step
        assert stop.report is not None
        assert stop.report.completed
        coord.join()


class TestSharedSpe:
    def test_every_rank_switches_at_the_same_step(self, ranks: Ranks) -> None:
        """The decider assigns; ranks in lockstep apply each value from the same step."""
        world = 2
        coords = ranks(world)
        shared = [SharedStepsPerExecution(c, 1) for c in coords]
        barrier = threading.Barrier(world, timeout=TIMEOUT)
        calls: list[list[tuple[int, int]]] = [[] for _ in range(world)]

        def loop(rank: int) -> None:
            coord, step = coords[rank], 0
            while not coord.should_stop_at(step):
                n = shared[rank].value_at(step)
                calls[rank].append((step, n))
                if rank == 0 and step in (5, 6, 20, 21):
                    value = 2 if step < 20 else 4
                    shared[0].assign(value)
                    # Rank 1's watcher agrees while its main thread waits in the barrier; wait
                    # for it, so that a slow machine cannot reach the stop first.

                    def agreed(v: int = value) -> bool:
                        return shared[1].value == v

                    wait_for(agreed, f"spe {value} agreed")
                if rank == 1 and step >= 60:
                    coord.request_stop()
                barrier.wait()
                step += n

        threads = [threading.Thread(target=loop, args=(r,)) for r in range(world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        assert calls[0] == calls[1]
        assert [n for _, n in calls[0]][:1] == [1]
        assert {n for _, n in calls[0]} == {1, 2, 4}

    def test_only_the_decider_assigns(self, ranks: Ranks) -> None:
        """Another rank's assign() is refused with a message naming the decider."""
        coords = ranks(2)
        spe = SharedStepsPerExecution(coords[1], 1)
        with pytest.raises(RuntimeError, match="only rank 0"):
            spe.assign(4)


class TestArguments:
    def test_bad_arguments_are_named(self) -> None:
        """Errors name the argument, the rule and the value."""
        with pytest.raises(ValueError, match="'rank' must be an int in"):
            Coordinator(MemoryStore(), rank=3, world_size=2)
        with pytest.raises(ValueError, match="'heartbeat_interval' must be <"):
            Coordinator(MemoryStore(), heartbeat_timeout=1.0, heartbeat_interval=2.0)
        with pytest.raises(TypeError, match="'store' must be a torch.distributed Store"):
            Coordinator(object())

    def test_slow_rank_report_is_off_unless_asked_for(self) -> None:
        """Off by default (no sampler thread); on with report_slow_ranks=True or a stall
        timeout; a non-bool is refused, named."""
        with Coordinator(MemoryStore(), rank=0, world_size=1) as coord:
            assert coord.slow_ranks == ()
            assert coord.slow_rank_history == ()
            assert not any("pace sampler" in t.name for t in threading.enumerate())
        with Coordinator(MemoryStore(), rank=0, world_size=1, report_slow_ranks=True) as coord:
            assert any("pace sampler (rank 0)" in t.name for t in threading.enumerate())
            assert coord.slow_ranks == ()
        with pytest.raises(TypeError, match="'report_slow_ranks' must be a bool or None; got 1"):
            Coordinator(MemoryStore(), rank=0, world_size=1, report_slow_ranks=1)  # type: ignore[arg-type]

    def test_a_phase_rides_on_the_heartbeat_and_nests(self) -> None:
        """coord.phase(name): the heartbeat says which; the outer one is back after the inner;
        a bad name is refused, named."""
        clock = FakeClock(1000.0)
        store = MemoryStore()
        key = "tickwork/run/0/default/hb/0"

        def beat_phase() -> object:
            clock.wait_for_sleepers(2)
            clock.advance(1.0)
            clock.wait_for_sleepers(2)
            return json.loads(store.get_many([key])[0] or "{}").get("phase")

        with Coordinator(store, rank=0, world_size=1, clock=clock) as coord:
            assert beat_phase() is None
            with coord.phase("evaluation"):
                assert beat_phase() == "evaluation"
                with coord.phase("save"):
                    assert beat_phase() == "save"
                assert beat_phase() == "evaluation"
            assert beat_phase() is None
            for bad in ("", "x" * 65, 3):
                with (
                    pytest.raises(ValueError, match="'name' must be a non-empty str"),
                    coord.phase(bad),  # type: ignore[arg-type]
                ):
                    pass

    def test_no_store_and_no_framework_is_explained(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """store=None outside torch.distributed/jax.distributed says what to pass."""
        monkeypatch.delitem(sys.modules, "torch.distributed", raising=False)
        monkeypatch.delitem(sys.modules, "jax", raising=False)
        with pytest.raises(ValueError, match="neither torch.distributed"):
            Coordinator()

    def test_startup_timeout_names_the_missing_ranks(self) -> None:
        """A rank that never arrives is named after startup_timeout."""
        with pytest.raises(TimeoutError, match=r"ranks \[1\] did not join"):
            Coordinator(MemoryStore(), rank=0, world_size=2, startup_timeout=0.2)


def test_exports_are_real_and_import_no_framework() -> None:
    """Every name in __all__ exists; importing tickwork.distributed imports no framework."""
    assert list(td.__all__) == sorted(set(td.__all__))
    for name in td.__all__:
        assert getattr(td, name).__doc__, f"tickwork.distributed.{name} has no docstring"
    code = (
        "import sys, tickwork, tickwork.distributed; "
        "bad = [m for m in ('torch', 'jax', 'tensorflow', 'numpy') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0
