"""A writer killed mid-save, the job restarted and saving again: on a real local directory, the
follower passes the cut checkpoint over once a newer one is complete: at once when the cut one
has not changed since the newer one appeared, in any case within abandon_secs."""

from __future__ import annotations

from pathlib import Path

import pytest
from ckpt_helpers import safetensors_bytes

from tickwork import CheckpointFollower

TRAINER_STATE = '{"global_step": 1, "log_history": []}'


@pytest.mark.parametrize(
    ("abandon_secs", "restart"),
    [
        # The restart (0.5 s) is quicker than the 1 s of quiet that "moved on" needs: the
        # abandon_secs bound passes it over, in seconds rather than the minute it used to take.
        (1.0, 0.5),
        # abandon_secs=600: only "unchanged since the newer one appeared" can pass it over
        # before the bounded wait ends.
        (600.0, 1.5),
    ],
    ids=["within-abandon-secs", "at-once"],
)
def test_a_cut_checkpoint_is_passed_over_once_a_newer_one_is_complete(
    tmp_path: Path, abandon_secs: float, restart: float
) -> None:
    """checkpoint-1 cut by a SIGKILL (half a safetensors file, no trainer state), checkpoint-2
    then written whole by the restarted job: checkpoint-2 comes out, checkpoint-1 is counted as
    rejected (bounded real waits)."""
    whole = safetensors_bytes()
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "model.safetensors").write_bytes(whole[: len(whole) // 2])
    with CheckpointFollower(
        str(tmp_path), skip_to_latest=False, layout="huggingface", abandon_secs=abandon_secs
    ) as follower:
        assert follower.next_checkpoint(timeout=restart) is None
        (tmp_path / "checkpoint-2").mkdir()
        (tmp_path / "checkpoint-2" / "model.safetensors").write_bytes(whole)
        (tmp_path / "checkpoint-2" / "trainer_state.json").write_text(TRAINER_STATE)
        checkpoint = follower.next_checkpoint(timeout=60)
        assert checkpoint is not None
        assert checkpoint.path.endswith("checkpoint-2")
        assert follower.statistics().rejected == 1
