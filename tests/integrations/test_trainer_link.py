"""The framework-free part of the trainer callbacks: stop sources, the final checkpoint's
deadline (FakeClock), how training ended, the saver-only marker, signal handlers put back,
periodic work and its errors."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import tickwork
from tickwork import TrainingStatus
from tickwork.integrations._trainer_link import FinalSave, TrainerLink
from tickwork.testing import FakeClock

REAL_WAIT = 10.0  # seconds; reached only when something is wrong


def link(tmp_path: Path, **options: Any) -> TrainerLink:
    settings: dict[str, Any] = {
        "done_marker": "DONE",
        "checkpoint_dir": tmp_path,
        "storage_options": None,
        "stop": None,
        "signals": (),
        "final_checkpoint": True,
        "save_deadline": None,
        "background": (),
        "clear_stale_marker": True,
    }
    settings.update(options)
    return TrainerLink(**settings)


class TestStop:
    def test_event_coordinator_and_agreed_step(self, tmp_path: Path) -> None:
        """An Event, a Coordinator and a should_stop_at(step) source each stop training."""
        event = threading.Event()
        by_event = link(tmp_path, stop=event)
        by_event.begin(is_saver=True, checkpoint_dir=None)
        assert not by_event.should_stop(1)
        event.set()
        assert by_event.should_stop(2)
        coord = tickwork.Coordinator()
        by_coord = link(tmp_path, stop=coord)
        by_coord.begin(is_saver=True, checkpoint_dir=None)
        threading.Thread(target=coord.request_stop).start()
        assert coord.wait_for_stop(REAL_WAIT)
        assert by_coord.should_stop(None)

        class Agreed:
            def should_stop(self) -> bool:
                return True  # ignored: the agreed step decides

            def should_stop_at(self, step: int) -> bool:
                return step >= 5

        agreed = link(tmp_path, stop=Agreed())
        agreed.begin(is_saver=True, checkpoint_dir=None)
        assert agreed.wants_step
        assert [agreed.should_stop(s) for s in (3, 4, 5)] == [False, False, True]
        for each in (by_event, by_coord, agreed):
            each.end(is_saver=False, step=None)

    def test_a_signal_requests_a_stop_and_the_handler_is_put_back(self, tmp_path: Path) -> None:
        """The signal handler runs the previous one too, and is removed at the end."""
        calls: list[int] = []
        previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
        try:
            coord = tickwork.Coordinator()
            each = link(tmp_path, stop=coord, signals=(signal.SIGUSR1,))
            each.begin(is_saver=True, checkpoint_dir=None)
            signal.raise_signal(signal.SIGUSR1)
            assert coord.should_stop()  # the user's Coordinator got the request
            assert each.should_stop(3)
            assert calls == [int(signal.SIGUSR1)]
            end = each.end(is_saver=True, step=3)
            assert end is not None
            assert end.status is TrainingStatus.STOPPED
            assert end.details["signals"] == ["SIGUSR1"]
            signal.raise_signal(signal.SIGUSR1)
            assert calls == [int(signal.SIGUSR1)] * 2  # only the previous handler now
        finally:
            signal.signal(signal.SIGUSR1, previous)


class TestFinalSave:
    def test_saved_once(self, tmp_path: Path) -> None:
        """The save runs once, only after a stop."""
        saves: list[int] = []
        each = link(tmp_path, stop=(event := threading.Event()))
        each.begin(is_saver=True, checkpoint_dir=None)
        assert each.final_save(lambda: saves.append(1)) == FinalSave.NOT_REQUESTED
        event.set()
        assert each.should_stop(1)
        assert each.final_save(lambda: saves.append(1)) == FinalSave.SAVED
        assert each.final_save(lambda: saves.append(1)) == FinalSave.SAVED
        assert saves == [1]
        each.end(is_saver=True, step=1)

    def test_not_started_once_the_deadline_passed(self, tmp_path: Path) -> None:
        """A stop seen after the deadline: no save is started."""
        clock = FakeClock()
        each = link(tmp_path, stop=(event := threading.Event()), save_deadline=5.0, clock=clock)
        each.begin(is_saver=True, checkpoint_dir=None)
        event.set()
        assert each.should_stop(1)
        clock.advance(6.0)
        assert each.final_save(lambda: pytest.fail("must not save")) == FinalSave.SKIPPED
        end = each.end(is_saver=True, step=1)
        assert end is not None
        assert end.details == {"final_checkpoint": FinalSave.SKIPPED}

    def test_an_overrunning_save_is_left_to_finish(self, tmp_path: Path) -> None:
        """A save still running at the deadline: training goes on to end; the save finishes
        in its own thread."""
        release, finished = threading.Event(), threading.Event()

        def slow() -> None:
            assert release.wait(REAL_WAIT)
            finished.set()

        each = link(tmp_path, stop=(event := threading.Event()), save_deadline=0.05)
        each.begin(is_saver=True, checkpoint_dir=None)
        event.set()
        assert each.should_stop(1)
        assert each.final_save(slow) == FinalSave.TIMED_OUT
        release.set()
        assert each.final_save_thread is not None
        each.final_save_thread.join(REAL_WAIT)
        assert finished.is_set()
        each.end(is_saver=True, step=1)

    def test_a_failing_save_is_raised(self, tmp_path: Path) -> None:
        """The save's error is raised in the trainer's thread, with or without a deadline."""
        for deadline in (None, 30.0):
            each = link(tmp_path, stop=(event := threading.Event()), save_deadline=deadline)
            each.begin(is_saver=True, checkpoint_dir=None)
            event.set()
            each.should_stop(1)

            def broken() -> None:
                raise OSError("disk full")

            with pytest.raises(OSError, match="disk full"):
                each.final_save(broken)
            assert each.final_checkpoint == FinalSave.FAILED
            each.end(is_saver=True, step=1, error=OSError("disk full"))


class TestEnd:
    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (None, TrainingStatus.COMPLETED),
            (ValueError("x"), TrainingStatus.FAILED),
            (KeyboardInterrupt(), TrainingStatus.STOPPED),
            (SystemExit(1), TrainingStatus.STOPPED),
        ],
    )
    def test_how_training_ended(
        self, tmp_path: Path, error: BaseException | None, status: TrainingStatus
    ) -> None:
        """completed; failed for an Exception; stopped for an interruption."""
        each = link(tmp_path)
        each.begin(is_saver=True, checkpoint_dir=None)
        end = each.end(is_saver=True, step=2, error=error)
        assert end is not None
        assert end.status is status
        assert tickwork.read_training_end(tmp_path) == end

    def test_only_the_saver_writes_or_clears(self, tmp_path: Path) -> None:
        """Another rank neither removes the stale marker nor writes one."""
        tickwork.mark_training_done(tmp_path, step=99)
        each = link(tmp_path)
        each.begin(is_saver=False, checkpoint_dir=None)
        assert each.end(is_saver=False, step=3) is None
        end = tickwork.read_training_end(tmp_path)
        assert end is not None
        assert end.step == 99
        saver = link(tmp_path)
        saver.begin(is_saver=True, checkpoint_dir=None)
        assert tickwork.read_training_end(tmp_path) is None  # the stale one is gone

    def test_periodic_work_errors_raised_at_the_end(self, tmp_path: Path) -> None:
        """Background work is started at begin, stopped at end; its error is raised then and
        recorded in the marker."""
        ran = threading.Event()

        def broken() -> None:
            if not ran.is_set():
                ran.set()
                raise OSError("disk full")

        thread = tickwork.every(0.001, broken)
        each = link(tmp_path, background=[thread])
        each.begin(is_saver=True, checkpoint_dir=None)
        assert ran.wait(REAL_WAIT)
        with pytest.raises(OSError, match="disk full"):
            each.end(is_saver=True, step=1)
        assert not thread.is_alive()
        payload = tickwork.read_training_end(tmp_path)
        assert payload is not None
        assert (payload.status, payload.error_type) == (TrainingStatus.FAILED, "OSError")

    def test_the_tuner_is_refused_where_spe_cannot_change(self, tmp_path: Path) -> None:
        """Keras: a StepsPerExecutionTuner in background is refused, naming why."""
        tuner = tickwork.StepsPerExecutionTuner(lambda: 0, tickwork.StepsPerExecution())
        with pytest.raises(TypeError, match="cannot change steps_per_execution during fit"):
            link(tmp_path, background=[tuner], allow_tuner=False)
        link(tmp_path, background=[tuner])  # elsewhere it is periodic work like any other


class TestPhase:
    def test_a_phase_is_entered_once_and_left_on_the_coordinator(self, tmp_path: Path) -> None:
        """enter_phase: on a stop target with ``phase()`` (a distributed Coordinator), once
        until leave_phase; without one (an Event), nothing happens."""
        seen: list[str] = []

        class Target:
            def should_stop(self) -> bool:
                return False

            def should_stop_at(self, step: int) -> bool:
                return False

            def phase(self, name: str) -> Any:
                import contextlib

                @contextlib.contextmanager
                def cm() -> Any:
                    seen.append(f"enter {name}")
                    yield
                    seen.append(f"leave {name}")

                return cm()

        one = link(tmp_path, stop=Target())
        one.enter_phase("evaluation")
        one.enter_phase("evaluation")  # each evaluation step calls it
        one.leave_phase()
        one.leave_phase()
        assert seen == ["enter evaluation", "leave evaluation"]
        plain = link(tmp_path, stop=threading.Event())
        plain.enter_phase("evaluation")
        plain.leave_phase()


class TestRanks:
    """Distributed training (``begin(distributed=True)``): two ranks as threads of this process,
    their Coordinators on one MemoryStore (the link's factory replaced)."""

    @pytest.fixture
    def ranks(self, monkeypatch: pytest.MonkeyPatch) -> Any:
        from tickwork.distributed import Coordinator, MemoryStore
        from tickwork.integrations import _trainer_link

        store = MemoryStore()
        rank_of: dict[int, int] = {}

        def make(namespace: str, **options: Any) -> Coordinator:
            # Both ranks are threads of one process, which counts trainings once for both: the
            # namespace is the store's, new for each test.
            rank = rank_of[threading.get_ident()]
            return Coordinator(
                store.clone(), rank=rank, world_size=2, startup_timeout=REAL_WAIT, **options
            )

        monkeypatch.setattr(_trainer_link, "make_coordinator", make)
        return rank_of

    @staticmethod
    def run_ranks(rank_of: dict[int, int], work: Any) -> list[Any]:
        """``work(rank)`` on two threads, each a rank; their results (errors re-raised)."""
        results: list[Any] = [None, None]
        errors: list[BaseException] = []

        def body(rank: int) -> None:
            rank_of[threading.get_ident()] = rank
            try:
                results[rank] = work(rank)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=body, args=(r,)) for r in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(REAL_WAIT * 3)
        assert not any(t.is_alive() for t in threads), "a rank did not finish"
        if errors:
            raise errors[0]
        return results

    def test_a_local_stop_on_one_rank_stops_both_at_one_step(
        self, tmp_path: Path, ranks: Any
    ) -> None:
        """An Event set on rank 1 alone is forwarded to every rank: both stop at one step, the
        final save runs on both (it is collective), the saver's marker says stopped."""
        event = threading.Event()
        saves: list[int] = []
        lockstep = threading.Barrier(2, timeout=REAL_WAIT)  # the step's collective

        def work(rank: int) -> int:
            one = link(tmp_path, stop=event if rank == 1 else None)
            one.begin(is_saver=rank == 0, checkpoint_dir=None, distributed=True)
            assert one.coordinator is not None
            for step in range(1, 100):
                lockstep.wait()
                if rank == 1 and step == 3:
                    event.set()
                if one.should_stop(step):
                    one.final_save(lambda: saves.append(rank))
                    one.end(is_saver=rank == 0, step=step)
                    assert one.coordinator is None  # left at the end
                    return step
            raise AssertionError("never stopped")

        stopped = self.run_ranks(ranks, work)
        assert stopped[0] == stopped[1]
        assert sorted(saves) == [0, 1]
        end = tickwork.read_training_end(tmp_path)
        assert end is not None
        assert (end.status, end.step) == (TrainingStatus.STOPPED, stopped[0])

    def test_the_saver_names_the_error_that_started_the_failure(
        self, tmp_path: Path, ranks: Any
    ) -> None:
        """Rank 1 raises first; rank 0 then fails with its own error (a collective's "connection
        closed"): the marker names rank 1's error, its type, message and rank."""
        reported = threading.Event()

        def work(rank: int) -> None:
            one = link(tmp_path)
            one.begin(is_saver=rank == 0, checkpoint_dir=None, distributed=True)
            if rank == 1:
                one.end(is_saver=False, step=5, error=ValueError("loss is nan"))
                reported.set()
            else:
                assert reported.wait(REAL_WAIT)
                one.end(is_saver=True, step=5, error=RuntimeError("Connection closed by peer"))

        self.run_ranks(ranks, work)
        end = tickwork.read_training_end(tmp_path)
        assert end is not None
        assert (end.status, end.error_type, end.error_message, end.rank) == (
            TrainingStatus.FAILED,
            "ValueError",
            "loss is nan",
            1,
        )
        assert "on rank 1" in end.describe()

    def test_no_collective_save_when_the_job_is_failing(self, tmp_path: Path, ranks: Any) -> None:
        """A stop that carries an error from another rank: no rank starts the final save."""
        saves: list[int] = []
        lockstep = threading.Barrier(2, timeout=REAL_WAIT)

        def work(rank: int) -> str:
            one = link(tmp_path)
            one.begin(is_saver=rank == 0, checkpoint_dir=None, distributed=True)
            coord = one.coordinator
            if rank == 1:
                coord.request_stop(ValueError("loss is nan"))
            for step in range(1, 100):
                lockstep.wait()
                if one.should_stop(step):
                    result = one.final_save(lambda: saves.append(rank))
                    one.end(is_saver=rank == 0, step=step, error=None)
                    return result
            raise AssertionError("never stopped")

        results = self.run_ranks(ranks, work)
        assert results == [FinalSave.JOB_FAILING, FinalSave.JOB_FAILING]
        assert saves == []
        end = tickwork.read_training_end(tmp_path)
        assert end is not None
        assert (end.status, end.error_type, end.rank) == (TrainingStatus.FAILED, "ValueError", 1)
