"""SidecarEvaluator on S3, end to end against the moto server: checkpoints and the done marker
are seen through the same remote storage."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from ckpt_helpers import zip_bytes

from tickwork import Checkpoint, EndReason, SidecarEvaluator

pytest.importorskip("s3fs")

pytestmark = pytest.mark.s3

LIMIT = 60.0  # seconds; only reached when something is wrong


def test_every_checkpoint_then_the_remote_done_marker(s3: tuple[Any, dict[str, Any], str]) -> None:
    """Objects written while the evaluator polls S3 are evaluated once each, in step order
    (one failing once is retried), and the DONE object ends the run after the last one."""
    writer, options, bucket = s3
    run = f"{bucket}/run"
    attempts: dict[int | None, int] = {}

    def evaluate(checkpoint: Checkpoint) -> int:
        attempts[checkpoint.step] = attempts.get(checkpoint.step, 0) + 1
        data = writer.cat_file(checkpoint.path)
        if checkpoint.step == 2 and attempts[2] == 1:
            raise OSError("a transient read error")
        return len(data)

    def train() -> None:
        for step in range(1, 5):
            writer.pipe_file(f"{run}/model_step_{step}.pt", zip_bytes())
            time.sleep(0.05)  # a training run's cadence
        writer.pipe_file(f"{run}/DONE", b"")

    evaluator: SidecarEvaluator[int] = SidecarEvaluator(
        run,
        evaluate,
        done_marker="DONE",
        storage_options=options,
        poll_interval=0.05,
        backoff=0.05,
        stall_timeout=LIMIT,
    )
    evaluator.start()
    writer_thread = threading.Thread(target=train)
    writer_thread.start()
    writer_thread.join(LIMIT)
    assert evaluator.join(LIMIT)
    assert [r.step for r in evaluator.results()] == [1, 2, 3, 4]
    assert attempts == {1: 1, 2: 2, 3: 1, 4: 1}
    stats = evaluator.statistics()
    assert (stats.end_reason, stats.retries, stats.follower.mode) == (
        EndReason.DONE,
        1,
        "remote",
    )
