"""SidecarEvaluator over a scripted in-memory directory on a fake clock, and over real
directories where real waits are the point (bounded generously)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ckpt_helpers import MemoryStorage, fakes, zip_bytes

import tickwork
from tickwork import (
    Checkpoint,
    Coordinator,
    EndReason,
    Evaluation,
    Outcome,
    SidecarEvaluator,
)
from tickwork._clock import any_stop
from tickwork._naming import thread_name
from tickwork._sync import SignalSafeEvent
from tickwork.testing import FakeClock

REAL_WAIT = 30.0  # real seconds a test waits for a thread it started; reached only on failure


def torch_files(storage: MemoryStorage, *steps: int) -> None:
    for step in steps:
        storage.write(f"model_step_{step}.pt", zip_bytes())


def evaluator(
    storage: MemoryStorage,
    clock: FakeClock,
    evaluate: Callable[[Checkpoint], Any],
    **options: Any,
) -> SidecarEvaluator[Any]:
    options.setdefault("watch", "poll")
    with fakes(storage):
        return SidecarEvaluator(storage.directory, evaluate, clock=clock, **options)


class Recorder:
    """An evaluate() that records the steps it saw and fails as scripted."""

    def __init__(self, fail: Callable[[Checkpoint, int], BaseException | None] | None = None):
        self.steps: list[int | None] = []
        self._fail = fail

    def __call__(self, checkpoint: Checkpoint) -> int:
        self.steps.append(checkpoint.step)
        error = self._fail(checkpoint, self.steps.count(checkpoint.step)) if self._fail else None
        if error is not None:
            raise error
        return 10 * (checkpoint.step or 0)


def write_real(directory: Path, step: int) -> None:
    """A complete torch-style file, renamed into place as real writers do."""
    temporary = directory / f".model_step_{step}.pt.tmp"
    temporary.write_bytes(zip_bytes())
    os.replace(temporary, directory / f"model_step_{step}.pt")


class TestOrderAndResults:
    def test_every_checkpoint_is_evaluated_once_in_step_order(self) -> None:
        """By default nothing is skipped: each complete checkpoint once, by step; the values
        are kept; run() returns the statistics with the reason it ended."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 30, 4, 100, 7)
        storage.write("DONE", b"")
        evaluate = Recorder()
        stats = evaluator(storage, clock, evaluate, done_marker="DONE").run()
        assert evaluate.steps == [4, 7, 30, 100]
        assert (stats.evaluated, stats.failed, stats.skipped) == (4, 0, 0)
        assert stats.end_reason is EndReason.DONE
        assert stats.last_step == 100

    def test_results_keep_the_latest_values(self) -> None:
        """results() holds the last keep_results evaluations with their values and steps."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3)
        storage.write("DONE", b"")
        ev = evaluator(storage, clock, Recorder(), done_marker="DONE", keep_results=2)
        ev.run()
        results = ev.results()
        assert [(r.step, r.value, r.ok, r.attempts) for r in results] == [
            (2, 20, True, 1),
            (3, 30, True, 1),
        ]
        assert all(r.outcome is Outcome.EVALUATED and r.error is None for r in results)

    def test_on_result_gets_every_evaluation(self) -> None:
        """on_result is called with each finished checkpoint's Evaluation, in order."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        storage.write("DONE", b"")
        seen: list[Evaluation[Any]] = []
        evaluator(storage, clock, Recorder(), done_marker="DONE", on_result=seen.append).run()
        assert [(e.step, e.value) for e in seen] == [(1, 10), (2, 20)]

    def test_a_raising_on_result_is_reported_and_does_not_stop(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An on_result that raises is logged with its traceback, counted and kept; evaluation
        goes on and the checkpoint still counts as evaluated."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        storage.write("DONE", b"")

        def on_result(evaluation: Evaluation[Any]) -> None:
            raise KeyError(evaluation.step)

        ev = evaluator(storage, clock, Recorder(), done_marker="DONE", on_result=on_result)
        stats = ev.run()
        assert (stats.evaluated, stats.errors) == (2, 2)
        assert [type(e) for e in ev.errors] == [KeyError, KeyError]
        assert any(r.exc_info and "on_result() raised" in r.message for r in caplog.records)

    def test_newest_only_skips_and_counts(self) -> None:
        """skip_to_latest=True is tf_keras's behaviour: the newest only, the rest counted."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3)
        storage.write("DONE", b"")
        evaluate = Recorder()
        stats = evaluator(storage, clock, evaluate, done_marker="DONE", skip_to_latest=True).run()
        assert evaluate.steps == [3]
        assert (stats.evaluated, stats.skipped) == (1, 2)


class TestRetry:
    def test_a_failing_checkpoint_is_retried_with_backoff_on_the_clock(self) -> None:
        """Attempt 2 comes backoff seconds after attempt 1, attempt 3 backoff * factor after
        that; once it succeeds, the next checkpoint follows at once."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        storage.write("DONE", b"")
        times: list[tuple[int | None, float]] = []

        def evaluate(checkpoint: Checkpoint) -> int:
            times.append((checkpoint.step, clock.now()))
            if checkpoint.step == 1 and len(times) < 3:
                raise OSError("not readable yet")
            return 0

        ev = evaluator(storage, clock, evaluate, done_marker="DONE", backoff=1.5)
        ev.start()
        clock.wait_for_sleepers(1)
        assert clock.next_deadline() == 1.5
        clock.advance(1.5)
        clock.wait_for_sleepers(1)
        assert clock.next_deadline() == 4.5
        clock.advance(3.0)
        assert ev.join(REAL_WAIT)
        assert times == [(1, 0.0), (1, 1.5), (1, 4.5), (2, 4.5)]
        stats = ev.statistics()
        assert (stats.evaluated, stats.failed, stats.retries) == (2, 0, 2)
        assert ev.results()[0].attempts == 3
        assert ev.results()[0].seconds == 4.5

    def test_after_the_last_attempt_it_is_reported_and_the_next_one_evaluated(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A checkpoint failing every attempt is logged with its traceback, counted, kept with
        a note naming it, re-raisable as itself; the evaluator goes on to the next."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        storage.write("DONE", b"")
        error = ValueError("corrupt weights")
        evaluate = Recorder(lambda c, n: error if c.step == 1 else None)
        ev = evaluator(storage, clock, evaluate, done_marker="DONE", max_attempts=2, backoff=0)
        stats = ev.run()
        assert evaluate.steps == [1, 1, 2]
        assert (stats.evaluated, stats.failed, stats.retries, stats.errors) == (1, 1, 1, 1)
        failed = ev.results()[0]
        assert (failed.outcome, failed.error, failed.attempts, failed.value) == (
            Outcome.FAILED,
            error,
            2,
            None,
        )
        with pytest.raises(ValueError, match="corrupt weights") as raised:
            ev.raise_errors()
        assert raised.value is error
        assert (
            "model_step_1.pt' (step 1) failed after 2 attempt(s)"
            in getattr(error, "__notes__", [""])[0]
        )
        logged = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert logged
        assert logged[0].exc_info is not None
        assert logged[0].exc_info[1] is error

    def test_errors_outside_retry_on_fail_at_once(self) -> None:
        """Only the exception types in retry_on are retried."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1)
        storage.write("DONE", b"")
        evaluate = Recorder(lambda c, n: TypeError("a bug, not a race"))
        ev = evaluator(storage, clock, evaluate, done_marker="DONE", retry_on=(OSError,))
        stats = ev.run()
        assert evaluate.steps == [1]
        assert (stats.failed, stats.retries) == (1, 0)

    def test_on_error_stop_ends_the_evaluator(self) -> None:
        """With on_error='stop' the first checkpoint failing every attempt ends it."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        evaluate = Recorder(lambda c, n: RuntimeError("no"))
        ev = evaluator(storage, clock, evaluate, max_attempts=1, on_error="stop")
        stats = ev.run()
        assert evaluate.steps == [1]
        assert stats.end_reason is EndReason.FAILED

    def test_a_checkpoint_deleted_before_its_retry_is_not_retried(self) -> None:
        """If the checkpoint is gone when an attempt fails (max_to_keep deleted it), it is
        counted as deleted, not failed, and not tried again."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        storage.write("DONE", b"")

        def vanish(checkpoint: Checkpoint, attempt: int) -> BaseException | None:
            if checkpoint.step != 1:
                return None
            storage.remove("model_step_1.pt")
            return FileNotFoundError(checkpoint.path)

        evaluate = Recorder(vanish)
        ev = evaluator(storage, clock, evaluate, done_marker="DONE")
        stats = ev.run()
        assert evaluate.steps == [1, 2]
        assert (stats.evaluated, stats.failed, stats.deleted_before_reached) == (1, 0, 1)
        assert ev.results()[0].outcome is Outcome.DELETED
        assert ev.errors == ()


class TestEnding:
    def test_done_marker_ends_after_everything_complete_is_evaluated(self) -> None:
        """Checkpoints that appear while the marker is not there are evaluated as they come;
        once it is there, the evaluator evaluates what is complete and ends."""
        storage, clock = MemoryStorage(), FakeClock()
        evaluate = Recorder()
        ev = evaluator(storage, clock, evaluate, done_marker="DONE", poll_interval=1.0)
        ev.start()
        torch_files(storage, 1)
        clock.wait_for_sleepers(1)
        clock.advance(1.0)
        clock.wait_for_sleepers(1)
        assert evaluate.steps == [1]
        torch_files(storage, 2, 3)
        storage.write("DONE", b"")  # written together, between two polls
        clock.advance(0.25)  # the marker is looked for every 0.25 s locally
        assert ev.join(REAL_WAIT)
        assert evaluate.steps == [1, 2, 3]
        assert ev.end_reason is EndReason.DONE
        assert ev.statistics().done_seen

    def test_done_waits_a_grace_for_checkpoints_still_being_written(self) -> None:
        """A checkpoint half-written when the marker appears is evaluated once complete if that
        happens within the grace; a torn one that never completes ends the wait."""
        storage, clock = MemoryStorage(), FakeClock()
        data = zip_bytes()
        storage.write("model_step_1.pt", data[:40])
        storage.write("model_step_2.pt", data[:40])
        storage.write("DONE", b"")
        evaluate = Recorder()
        ev = evaluator(storage, clock, evaluate, done_marker="DONE", poll_interval=1.0)
        ev.start()
        clock.wait_for_sleepers(1)
        storage.write("model_step_1.pt", data)
        clock.advance(1.0)
        clock.wait_for_sleepers(1)
        assert evaluate.steps == [1]
        assert ev.is_alive()
        clock.advance(10.0)  # past the grace: step 2 stays torn
        assert ev.join(REAL_WAIT)
        assert evaluate.steps == [1]
        assert ev.end_reason is EndReason.DONE

    def test_stall_timeout_ends_counting_from_the_last_checkpoint(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No new checkpoint for stall_timeout seconds: ends as stalled, exactly then."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1)
        ev = evaluator(storage, clock, Recorder(), stall_timeout=10.0)
        ev.start()
        while ev.is_alive():
            clock.wait_for_sleepers(1)
            clock.advance_to(clock.next_deadline() or clock.now())
            ev.join(0.01)
        assert ev.end_reason is EndReason.STALLED
        assert clock.now() == 10.0
        assert "training seems to have stopped" in caplog.text

    def test_timeout_fn_has_tensorflows_semantics(self) -> None:
        """After each timeout timeout_fn is asked; False waits again, True ends it."""
        storage, clock = MemoryStorage(), FakeClock()
        answers = [False, True]
        asked_at: list[float] = []

        def timeout_fn() -> bool:
            asked_at.append(clock.now())
            return answers.pop(0)

        ev = evaluator(storage, clock, Recorder(), timeout=3.0, timeout_fn=timeout_fn)
        ev.start()
        while ev.is_alive():
            clock.wait_for_sleepers(1)
            clock.advance_to(clock.next_deadline() or clock.now())
            ev.join(0.01)
        assert asked_at == [3.0, 6.0]
        assert ev.end_reason is EndReason.TIMEOUT

    def test_timeout_without_timeout_fn_ends(self) -> None:
        """timeout alone ends the evaluator after that long without a checkpoint."""
        storage, clock = MemoryStorage(), FakeClock()
        ev = evaluator(storage, clock, Recorder(), timeout=0)
        assert ev.run().end_reason is EndReason.TIMEOUT

    def test_max_evaluations_and_until_step(self) -> None:
        """max_evaluations counts finished checkpoints; until_step ends at that step."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3, 4)
        evaluate = Recorder()
        assert evaluator(storage, clock, evaluate, max_evaluations=2).run().end_reason is (
            EndReason.MAX_EVALUATIONS
        )
        assert evaluate.steps == [1, 2]
        evaluate = Recorder()
        assert evaluator(storage, clock, evaluate, until_step=3).run().end_reason is (
            EndReason.UNTIL_STEP
        )
        assert evaluate.steps == [1, 2, 3]

    def test_finish_evaluates_the_rest_then_ends(self) -> None:
        """finish() is a done marker from the training's own process."""
        storage, clock = MemoryStorage(), FakeClock()
        evaluate = Recorder()
        ev = evaluator(storage, clock, evaluate)
        ev.start()
        clock.wait_for_sleepers(1)
        torch_files(storage, 5, 6)  # before the next poll: finish() must look for them
        assert not ev.finish(wait=False)
        clock.advance(0.25)  # finish() is noticed within one 0.25 s slice of waiting
        assert ev.join(REAL_WAIT)
        assert evaluate.steps == [5, 6]
        assert ev.end_reason is EndReason.DONE


class TestResume:
    def test_a_restarted_evaluator_neither_repeats_nor_skips(self, tmp_path: Path) -> None:
        """With state_file, a second evaluator goes on after the last checkpoint finished."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3, 4)
        state = tmp_path / "state.json"
        first = Recorder()
        evaluator(storage, clock, first, state_file=state, max_evaluations=2).run()
        second = Recorder()
        stats = evaluator(storage, clock, second, state_file=state, max_evaluations=2).run()
        assert (first.steps, second.steps) == ([1, 2], [3, 4])
        assert stats.resumed_from == 2

    def test_an_interrupted_evaluation_is_evaluated_again(self, tmp_path: Path) -> None:
        """A stop that cuts an evaluation short (it raises while the stop is set) is not
        retried and not recorded: the restarted evaluator evaluates that checkpoint again."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3)
        state, stop = tmp_path / "state.json", threading.Event()

        def interrupted_at_2(checkpoint: Checkpoint, attempt: int) -> BaseException | None:
            if checkpoint.step != 2:
                return None
            stop.set()
            return RuntimeError("killed by the stop")

        first = Recorder(interrupted_at_2)
        stats = evaluator(storage, clock, first, state_file=state, stop=stop).run()
        assert first.steps == [1, 2]
        assert (stats.end_reason, stats.interrupted, stats.failed) == (EndReason.STOPPED, 1, 0)
        second = Recorder()
        evaluator(storage, clock, second, state_file=state, max_evaluations=2).run()
        assert second.steps == [2, 3]

    def test_an_evaluation_that_returns_after_a_stop_counts(self, tmp_path: Path) -> None:
        """If evaluate() returns after the stop was set, that checkpoint is finished."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        state, stop = tmp_path / "state.json", threading.Event()

        def evaluate(checkpoint: Checkpoint) -> None:
            stop.set()

        stats = evaluator(storage, clock, evaluate, state_file=state, stop=stop).run()
        assert (stats.evaluated, stats.end_reason) == (1, EndReason.STOPPED)
        again = Recorder()
        evaluator(storage, clock, again, state_file=state, max_evaluations=1).run()
        assert again.steps == [2]

    def test_keyboard_interrupt_propagates_from_run_and_is_not_recorded(
        self, tmp_path: Path
    ) -> None:
        """A BaseException from evaluate() is not retried or swallowed by run(); the checkpoint
        is evaluated again after a restart."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1)
        state = tmp_path / "state.json"
        ev = evaluator(storage, clock, Recorder(lambda c, n: KeyboardInterrupt()), state_file=state)
        with pytest.raises(KeyboardInterrupt):
            ev.run()
        assert ev.end_reason is EndReason.ERROR
        again = Recorder()
        evaluator(storage, clock, again, state_file=state, max_evaluations=1).run()
        assert again.steps == [1]


class TestThread:
    def test_the_thread_is_named_after_the_directory_and_runs_once(self) -> None:
        """start() runs it in a thread named after what it follows; a second start() raises."""
        storage, clock = MemoryStorage(), FakeClock()
        names: list[str] = []
        ev = evaluator(storage, clock, lambda c: names.append(threading.current_thread().name))
        torch_files(storage, 1)
        ev.start()
        with pytest.raises(RuntimeError, match="has already been started; an evaluator runs once"):
            ev.start()
        ev.finish(wait=False)
        clock.wait_for_sleepers(1)
        clock.advance(0.25)
        assert ev.join(REAL_WAIT)
        assert names == [
            thread_name("SidecarEvaluator(/mem/run)")
        ]  # tickwork:SidecarEvaluator(...)
        with pytest.raises(RuntimeError, match="runs once"):
            ev.run()

    def test_a_base_exception_in_the_thread_is_kept(self) -> None:
        """SystemExit raised by evaluate() ends the thread and is re-raisable in the caller."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1)
        ev = evaluator(storage, clock, Recorder(lambda c, n: SystemExit(3)))
        ev.start()
        assert ev.join(REAL_WAIT)
        assert ev.end_reason is EndReason.ERROR
        with pytest.raises(SystemExit):
            ev.raise_errors()

    @pytest.mark.parametrize("watch", ["events", "poll"])
    def test_the_context_manager_finishes_on_normal_exit(self, tmp_path: Path, watch: str) -> None:
        """Leaving the block normally evaluates what training wrote, then ends (real clock;
        with polling every 60 s, the last checkpoints come from the final listing)."""
        evaluate = Recorder()
        with SidecarEvaluator(tmp_path, evaluate, watch=watch, poll_interval=60.0) as ev:
            write_real(tmp_path, 1)
            write_real(tmp_path, 2)
        assert evaluate.steps == [1, 2]
        assert ev.end_reason is EndReason.DONE

    def test_the_context_manager_stops_on_an_exception(self, tmp_path: Path) -> None:
        """Leaving the block by an exception stops at once: nothing more is evaluated."""
        evaluate = Recorder()
        with pytest.raises(ZeroDivisionError), SidecarEvaluator(tmp_path, evaluate) as ev:
            _ = 1 / 0
        assert ev.end_reason is EndReason.STOPPED
        assert not ev.statistics().done_seen


class TestStop:
    @pytest.mark.parametrize("kind", ["event", "coordinator", "method"])
    def test_a_stop_ends_a_long_backoff_at_once(self, tmp_path: Path, kind: str) -> None:
        """stop= (an Event or a Coordinator) or stop() ends a 60 s backoff wait at once, and the
        checkpoint counts as interrupted (real clock, real directory)."""
        failed = threading.Event()

        def evaluate(checkpoint: Checkpoint) -> None:
            failed.set()
            raise OSError("cannot read")

        signal: Any = {"event": threading.Event(), "coordinator": Coordinator()}.get(kind)
        write_real(tmp_path, 1)
        ev = SidecarEvaluator(tmp_path, evaluate, backoff=60.0, stop=signal)
        ev.start()
        assert failed.wait(REAL_WAIT)
        began = time.monotonic()
        if kind == "event":
            signal.set()
        elif kind == "coordinator":
            signal.request_stop()
        else:
            ev.stop()
        assert ev.join(REAL_WAIT)
        assert time.monotonic() - began < 5.0  # 60 s if the wait were not interrupted
        stats = ev.statistics()
        assert (stats.end_reason, stats.interrupted, stats.failed) == (EndReason.STOPPED, 1, 0)

    def test_a_stop_ends_the_wait_for_checkpoints(self, tmp_path: Path) -> None:
        """An evaluator waiting for checkpoints that never come ends when stopped."""
        stop = threading.Event()
        ev = SidecarEvaluator(tmp_path, Recorder(), stop=stop)
        ev.start()
        stop.set()
        assert ev.join(REAL_WAIT)
        assert ev.end_reason is EndReason.STOPPED

    def test_either_stop_wakes_a_wait_on_the_other(self) -> None:
        """The combined stop signal ends a wait when either of its two events is set (the
        evaluator's own, a tickwork event, and the user's, a plain one)."""
        own, user = SignalSafeEvent(), threading.Event()
        either = any_stop(own, user)
        assert either is not None
        assert not either.wait(0.01)
        threading.Timer(0.05, own.set).start()
        began = time.monotonic()
        assert either.wait(REAL_WAIT)
        assert time.monotonic() - began < REAL_WAIT / 2
        own.clear()
        user.set()
        assert either.is_set()
        assert either.wait(0)


class TestRealDirectory:
    def test_checkpoints_written_while_it_follows_then_a_marker(self, tmp_path: Path) -> None:
        """A writer thread saves checkpoints (some faster than they are evaluated) and then the
        done marker: every one is evaluated in order, and the evaluator ends by itself."""
        evaluate = Recorder()
        ev = SidecarEvaluator(tmp_path, evaluate, done_marker="DONE", name="eval-real")

        def train() -> None:
            for step in range(1, 21):
                write_real(tmp_path, step)
            (tmp_path / "DONE").touch()

        with ev:
            writer = threading.Thread(target=train)
            writer.start()
            writer.join(REAL_WAIT)
            assert ev.join(REAL_WAIT)
        assert evaluate.steps == list(range(1, 21))
        assert ev.end_reason is EndReason.DONE


class TestArguments:
    @pytest.mark.parametrize(
        ("options", "error", "message"),
        [
            ({"evaluate": 3}, TypeError, "'evaluate' must be callable; got 3"),
            ({"timeout_fn": lambda: True}, ValueError, "'timeout_fn' needs a 'timeout'"),
            ({"timeout": 1, "timeout_fn": 5}, TypeError, "'timeout_fn' must be callable"),
            ({"done_marker": "a/b"}, ValueError, "'done_marker' must be None or a file name"),
            ({"done_marker": ""}, ValueError, "'done_marker' must be None or a file name"),
            ({"retry_on": ValueError("x")}, TypeError, "'retry_on' must be an exception type"),
            ({"retry_on": ()}, TypeError, "'retry_on' must be an exception type"),
            ({"keep_results": -1}, ValueError, "'keep_results' must be an int >= 0; got -1"),
            ({"on_error": "ignore"}, ValueError, "'on_error' must be one of 'continue', 'stop'"),
            ({"on_result": "print"}, TypeError, "'on_result' must be callable or None"),
            ({"stall_timeout": -5}, ValueError, "'stall_timeout' must be None or a finite"),
            ({"max_attempts": 0}, ValueError, "'max_attempts' must be an int >= 1; got 0"),
            ({"poll_interval": -1}, ValueError, "'poll_interval' must be a finite number >= 0"),
            ({"name": ""}, TypeError, "'name' must be a non-empty str or None"),
            ({"stop": 5}, TypeError, "'stop' must be a threading.Event"),
        ],
    )
    def test_bad_arguments_name_the_argument(
        self, tmp_path: Path, options: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Each bad argument raises at construction, naming the argument, rule and value."""
        evaluate = options.pop("evaluate", Recorder())
        with pytest.raises(error, match=message):
            SidecarEvaluator(tmp_path, evaluate, **options)

    def test_a_file_for_a_directory_is_refused(self, tmp_path: Path) -> None:
        """checkpoint_dir that is a file raises NotADirectoryError at once."""
        path = tmp_path / "file"
        path.write_text("x")
        with pytest.raises(NotADirectoryError, match="'checkpoint_dir' must be a directory"):
            SidecarEvaluator(path, Recorder())


class TestMisspeltKeywords:
    @pytest.mark.parametrize(
        ("make", "wrong", "right", "owner"),
        [
            (
                lambda d: SidecarEvaluator(d, print, done_maker="DONE"),  # type: ignore[call-arg]  # misspelt on purpose
                "done_maker",
                "done_marker",
                "SidecarEvaluator()",
            ),
            (
                lambda d: tickwork.checkpoints_iterator(d, skip_to_lates=False),  # type: ignore[call-arg]  # misspelt on purpose
                "skip_to_lates",
                "skip_to_latest",
                "checkpoints_iterator()",
            ),
            (
                lambda d: tickwork.CheckpointFollower(d, poll_intervall=1),  # type: ignore[call-arg]  # misspelt on purpose
                "poll_intervall",
                "poll_interval",
                "CheckpointFollower()",
            ),
        ],
    )
    def test_an_unknown_keyword_names_the_callee_and_the_close_match(
        self, tmp_path: Path, make: Callable[[Path], object], wrong: str, right: str, owner: str
    ) -> None:
        """A misspelt keyword is blamed on what was called (not FollowOptions.__init__), and
        the keyword meant is suggested."""
        with pytest.raises(TypeError) as raised:
            make(tmp_path)
        assert str(raised.value) == (
            f"{owner} got an unexpected keyword argument {wrong!r}; did you mean {right!r}?"
        )
        assert "FollowOptions" not in str(raised.value)

    def test_without_a_close_match_no_guess_is_made(self, tmp_path: Path) -> None:
        """A keyword like nothing it takes gets no suggestion."""
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'zzz'$"):
            SidecarEvaluator(tmp_path, print, zzz=1)  # type: ignore[call-arg]
