"""The progress hook (``on_progress=``): what a follower, an iterator and an evaluator are doing,
as typed events, without logging configured."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
from ckpt_helpers import zip_bytes

import tickwork
from tickwork import (
    Checkpoint,
    CheckpointFound,
    EndReason,
    Evaluated,
    Evaluating,
    FollowingEnded,
    Outcome,
    ProgressEvent,
    SidecarEvaluator,
    Waiting,
)


def save(directory: Path, step: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"model_step_{step}.pt").write_bytes(zip_bytes())


def summary(events: list[ProgressEvent]) -> list[tuple[object, ...]]:
    """The events as short tuples: the kind and what it is about."""
    out: list[tuple[object, ...]] = []
    for event in events:
        if isinstance(event, Waiting):
            out.append(("waiting", event.missing))
        elif isinstance(event, CheckpointFound):
            out.append(("found", event.checkpoint.step))
        elif isinstance(event, Evaluating):
            out.append(("evaluating", event.checkpoint.step, event.attempt))
        elif isinstance(event, Evaluated):
            out.append(("evaluated", event.evaluation.step, event.evaluation.outcome))
        elif isinstance(event, FollowingEnded):
            out.append(("ended", event.reason))
    return out


class TestSidecarEvaluator:
    def test_every_step_of_the_work_is_an_event(self, tmp_path: Path) -> None:
        """Each checkpoint is found, evaluated (each attempt announced) and finished, in order;
        then the evaluator waits, sees training done and ends: each is one event, naming the
        directory."""
        save(tmp_path, 1)
        save(tmp_path, 2)
        (tmp_path / "DONE").touch()
        events: list[ProgressEvent] = []
        failed_once: list[int] = []

        def evaluate(checkpoint: Checkpoint) -> int:
            if checkpoint.step == 2 and not failed_once:
                failed_once.append(2)
                raise RuntimeError("flaky")
            return checkpoint.step or 0

        evaluator = SidecarEvaluator(
            tmp_path, evaluate, done_marker="DONE", backoff=0, on_progress=events.append
        )
        assert evaluator.run().end_reason is EndReason.DONE
        assert [e for e in summary(events) if e[0] != "waiting"] == [
            ("found", 1),
            ("evaluating", 1, 1),
            ("evaluated", 1, Outcome.EVALUATED),
            ("found", 2),
            ("evaluating", 2, 1),
            ("evaluating", 2, 2),
            ("evaluated", 2, Outcome.EVALUATED),
            ("ended", EndReason.DONE),
        ]
        assert all(event.checkpoint_dir == str(tmp_path) for event in events)
        # Waiting is said when waiting begins, not at every look.
        kinds = [e[0] for e in summary(events)]
        assert ("waiting", "waiting") not in set(itertools.pairwise(kinds))

    def test_an_error_in_the_hook_is_logged_and_kept_and_the_work_goes_on(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """on_progress raising does not stop the evaluation: logged with its traceback, kept in
        ``errors``."""
        save(tmp_path, 1)
        (tmp_path / "DONE").touch()

        def broken(event: ProgressEvent) -> None:
            raise ValueError("the hook is broken")

        evaluator = SidecarEvaluator(
            tmp_path, lambda c: c.step, done_marker="DONE", on_progress=broken
        )
        with caplog.at_level(logging.ERROR, logger="tickwork"):
            stats = evaluator.run()
        assert stats.evaluated == 1
        assert stats.end_reason is EndReason.DONE
        assert any(isinstance(e, ValueError) for e in evaluator.errors)
        assert "on_progress() raised ValueError" in caplog.text

    def test_the_hook_must_be_callable(self, tmp_path: Path) -> None:
        """A hook that cannot be called is refused at once, naming the argument."""
        with pytest.raises(TypeError, match="'on_progress' must be callable or None; got 3"):
            SidecarEvaluator(tmp_path, print, on_progress=3)  # type: ignore[arg-type]


class TestCheckpointsIterator:
    def test_a_missing_directory_then_a_timeout(self, tmp_path: Path) -> None:
        """Waiting on a directory that does not exist says so (``missing``); the timeout ends it
        with a FollowingEnded event."""
        events: list[ProgressEvent] = []
        iterator = tickwork.checkpoints_iterator(
            tmp_path / "later", timeout=0.2, watch="poll", poll_interval=0.01,
            on_progress=events.append,
        )  # fmt: skip
        assert list(iterator) == []
        assert summary(events) == [("waiting", True), ("ended", EndReason.TIMEOUT)]

    def test_each_checkpoint_yielded_is_found(self, tmp_path: Path) -> None:
        """Each checkpoint yielded comes with a CheckpointFound event, before it is yielded."""
        save(tmp_path, 5)
        save(tmp_path, 6)
        events: list[ProgressEvent] = []
        seen = [
            (checkpoint.step, summary(events)[-1])
            for checkpoint in tickwork.checkpoints_iterator(
                tmp_path, timeout=0, skip_to_latest=False, on_progress=events.append
            )
        ]
        assert seen == [(5, ("found", 5)), (6, ("found", 6))]
        assert summary(events)[-1] == ("ended", EndReason.TIMEOUT)
