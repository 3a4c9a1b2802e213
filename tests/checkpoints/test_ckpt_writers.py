"""Real writers, directed cases: a torch.distributed.checkpoint save slowed or killed between
its shards and .metadata, or with .metadata cut; the Hugging Face Trainer's trainer_state.json
written in place. The writers followed beside training (DCP, the Trainer, Lightning, Keras,
TensorFlow, Orbax, torch.save / safetensors killed mid-write) are in test_writers_stress.py."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import writers
from writers import LIMIT, problems

import tickwork
from tickwork import CheckpointFollower

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")

# The frameworks' own warnings (single-process DCP, Lightning's hints) are not under test here.
pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def next_step(follower: CheckpointFollower, timeout: float = LIMIT) -> int | None:
    found = follower.next_checkpoint(timeout=timeout)
    return None if found is None else found.step


# -- torch.distributed.checkpoint -----------------------------------------------------------------


class SlowFinish(dcp.FileSystemWriter):  # type: ignore[misc,name-defined]
    """A DCP writer that waits between its shards and its .metadata."""

    def __init__(self, path: str, reached: threading.Event, go_on: threading.Event) -> None:
        super().__init__(path)
        self.reached, self.go_on = reached, go_on

    def finish(self, metadata: Any, results: Any) -> None:
        self.reached.set()
        assert self.go_on.wait(LIMIT)
        super().finish(metadata, results)


def test_dcp_slowed_before_metadata_is_not_handed_out(tmp_path: Path) -> None:
    """Shards written, .metadata not yet: pending (whatever layout the names suggest)."""
    dcp.save(writers.dcp_state(1), checkpoint_id=str(tmp_path / "step_1"))
    reached, go_on = threading.Event(), threading.Event()
    path = tmp_path / "step_2"
    saver = threading.Thread(
        target=lambda: dcp.save(
            writers.dcp_state(2), storage_writer=SlowFinish(str(path), reached, go_on)
        )
    )
    with CheckpointFollower(tmp_path, skip_to_latest=False) as follower:
        assert follower.start(LIMIT)
        saver.start()
        try:
            assert reached.wait(LIMIT)
            assert any(p.suffix == ".distcp" for p in path.iterdir())
            first = follower.next_checkpoint(timeout=LIMIT)
            assert first is not None
            assert first.step == 1
            assert follower.next_checkpoint(timeout=0.5) is None
            assert follower.pending == 1
        finally:
            go_on.set()
            saver.join(LIMIT)
        second = follower.next_checkpoint(timeout=LIMIT)
        assert second is not None
        assert second.step == 2
        writers.dcp_load(second)
        assert follower.layout == "dcp"


def test_dcp_writer_killed_before_metadata_is_never_handed_out(tmp_path: Path) -> None:
    """A process killed between its shards and .metadata leaves a directory that never counts;
    a later complete save is held back (step order) until that one is dealt with."""
    dcp.save(writers.dcp_state(1), checkpoint_id=str(tmp_path / "step_1"))
    writers.kill_dcp_writer(tmp_path / "step_2")
    assert any(p.suffix == ".distcp" for p in (tmp_path / "step_2").iterdir())
    assert not (tmp_path / "step_2" / ".metadata").exists()
    with CheckpointFollower(tmp_path, skip_to_latest=False, watch="poll") as follower:
        assert next_step(follower) == 1
        assert follower.next_checkpoint(timeout=0.5) is None
        assert follower.pending == 1
        shutil.rmtree(tmp_path / "step_2")  # the restarted job cleans up, saves again
        dcp.save(writers.dcp_state(2), checkpoint_id=str(tmp_path / "step_2"))
        found = follower.next_checkpoint(timeout=LIMIT)
        assert found is not None
        assert found.step == 2
        writers.dcp_load(found)


def test_dcp_metadata_must_be_whole(tmp_path: Path) -> None:
    """A .metadata written in place (another storage writer) counts only once whole: a cut
    pickle is pending, the whole one complete."""
    dcp.save(writers.dcp_state(1), checkpoint_id=str(tmp_path / "step_1"))
    metadata = tmp_path / "step_1" / ".metadata"
    whole = metadata.read_bytes()
    metadata.write_bytes(whole[: len(whole) - 7])
    with CheckpointFollower(tmp_path, skip_to_latest=False, watch="poll") as follower:
        assert follower.next_checkpoint(timeout=0.5) is None
        assert follower.pending == 1
        metadata.write_bytes(whole)
        found = follower.next_checkpoint(timeout=LIMIT)
        assert found is not None
        writers.dcp_load(found)


# -- Hugging Face Trainer -----------------------------------------------------------------------

transformers_needed = pytest.mark.skipif(
    not writers.importable("transformers"), reason="needs transformers"
)


@transformers_needed
def test_trainer_state_written_in_place_is_waited_for(tmp_path: Path) -> None:
    """trainer_state.json is written in place: at 0 bytes, or cut, the checkpoint is pending;
    whole, complete. (Every file the format needs must be whole, not merely present.)"""
    source = tmp_path / "run"
    outcome = writers.run_huggingface(source, save_steps=2, max_steps=2)
    assert problems(outcome) == []
    follow = tmp_path / "follow"
    shutil.copytree(source / "checkpoint-2", follow / "checkpoint-2")
    state = follow / "checkpoint-2" / "trainer_state.json"
    whole = state.read_bytes()
    json.loads(whole)
    state.write_bytes(b"")
    with CheckpointFollower(follow, skip_to_latest=False, watch="poll") as follower:
        assert follower.next_checkpoint(timeout=0.3) is None
        state.write_bytes(whole[: len(whole) // 2])
        assert follower.next_checkpoint(timeout=0.3) is None
        assert follower.pending == 1
        state.write_bytes(whole)
        assert next_step(follower) == 2


def test_layout_is_reported(tmp_path: Path) -> None:
    """The DCP layout can be named explicitly too."""
    dcp.save(writers.dcp_state(3), checkpoint_id=str(tmp_path / "s3"))
    with tickwork.checkpoints_iterator(
        tmp_path, timeout=0, skip_to_latest=False, layout="dcp"
    ) as found:
        steps = [c.step for c in found]
    assert steps == [3]
