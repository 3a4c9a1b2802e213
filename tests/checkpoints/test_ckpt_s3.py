"""Following checkpoints on S3, end to end: s3fs against a moto S3 server in a subprocess."""

from __future__ import annotations

from typing import Any

import pytest
from ckpt_helpers import tf_state, zip_bytes

import tickwork
from tickwork import CheckpointFollower

s3fs = pytest.importorskip("s3fs")

pytestmark = pytest.mark.s3

LIMIT = 60.0  # seconds; only reached when something is wrong


def put_tf(writer: Any, run: str, step: int) -> None:
    """A TensorFlow checkpoint's files, then the state file naming it (TensorFlow's order)."""
    writer.pipe_file(f"{run}/ckpt-{step}.data-00000-of-00001", b"data")
    writer.pipe_file(f"{run}/ckpt-{step}.index", b"index")
    writer.pipe_file(f"{run}/checkpoint", tf_state(f"ckpt-{step}"))


def test_tensorflow_layout_on_s3(s3: tuple[Any, dict[str, Any], str]) -> None:
    """A TF checkpoint directory on S3 is followed; paths keep their s3:// URL."""
    writer, options, bucket = s3
    run = f"{bucket}/run"
    put_tf(writer, run, 1)
    with CheckpointFollower(
        run, skip_to_latest=False, storage_options=options, poll_interval=0.05
    ) as follower:
        first = follower.next_checkpoint(timeout=LIMIT)
        assert first == f"{run}/ckpt-1"
        assert first is not None
        assert first.step == 1
        assert follower.mode == "remote"
        put_tf(writer, run, 2)
        assert follower.next_checkpoint(timeout=LIMIT) == f"{run}/ckpt-2"


def test_partial_objects_are_never_handed_out(s3: tuple[Any, dict[str, Any], str]) -> None:
    """A cut torch file on S3 is checked with range reads and never handed out."""
    writer, options, bucket = s3
    data = zip_bytes()
    writer.pipe_file(f"{bucket}/run/m_1.pt", data[: len(data) // 2])
    writer.pipe_file(f"{bucket}/run/m_2.pt", data)
    with CheckpointFollower(
        f"{bucket}/run", skip_to_latest=False, storage_options=options, poll_interval=0.05
    ) as follower:
        assert follower.next_checkpoint(timeout=0.5) is None  # step 1 pending holds back 2
        assert follower.pending == 1
        writer.pipe_file(f"{bucket}/run/m_1.pt", data)  # rewritten whole
        found = [follower.next_checkpoint(timeout=LIMIT) for _ in range(2)]
        assert [c.step if c is not None else None for c in found] == [1, 2]


def test_stale_listing_caches_are_bypassed(s3: tuple[Any, dict[str, Any], str]) -> None:
    """A cached s3fs instance keeps a stale listing; the follower still sees new objects."""
    writer, options, bucket = s3
    run = f"{bucket}/run"
    put_tf(writer, run, 1)
    cached = s3fs.S3FileSystem(**options)  # the default: instance and listing caches on
    assert [p.rsplit("/", 1)[1] for p in cached.ls(run)].count("ckpt-1.index") == 1
    put_tf(writer, run, 2)
    assert "ckpt-2.index" not in [p.rsplit("/", 1)[1] for p in cached.ls(run)]  # stale
    assert tickwork.latest_checkpoint(run, storage_options=options) == f"{run}/ckpt-2"


def test_deletions_and_missing_prefix(s3: tuple[Any, dict[str, Any], str]) -> None:
    """A prefix that does not exist yet is waited for; deletions are counted."""
    writer, options, bucket = s3
    run = f"{bucket}/later"
    with CheckpointFollower(
        run, skip_to_latest=False, storage_options=options, poll_interval=0.05
    ) as follower:
        assert follower.next_checkpoint(timeout=0) is None
        for step in (1, 2, 3):
            writer.pipe_file(f"{run}/model_step_{step}.pt", zip_bytes())
        found = follower.next_checkpoint(timeout=LIMIT)
        assert found is not None
        assert found.step == 1
        writer.rm(f"{run}/model_step_2.pt")
        last = follower.next_checkpoint(timeout=LIMIT)
        assert last is not None
        assert last.step == 3
        assert follower.statistics().deleted_before_reached == 1


def test_step_directories_need_their_marker_or_settle(
    s3: tuple[Any, dict[str, Any], str],
) -> None:
    """On S3 (no atomic rename) an Orbax step directory counts once committed or settled."""
    writer, options, bucket = s3
    run = f"{bucket}/orbax"
    writer.pipe_file(f"{run}/5/state/data", b"x" * 100)
    with CheckpointFollower(
        run, layout="orbax", storage_options=options, poll_interval=0.05, settle_secs=0.5
    ) as follower:
        assert follower.next_checkpoint(timeout=0) is None
        found = follower.next_checkpoint(timeout=LIMIT)
        assert found == f"{run}/5"
        writer.pipe_file(f"{run}/6/state/data", b"x" * 100)
        writer.pipe_file(f"{run}/6/commit_success.txt", b"")
        assert follower.next_checkpoint(timeout=LIMIT) == f"{run}/6"


def test_hold_is_refused_on_s3(s3: tuple[Any, dict[str, Any], str]) -> None:
    """Object stores have no hard links: hold=True is refused, saying why."""
    _, options, bucket = s3
    with pytest.raises(ValueError, match="'hold' needs a local checkpoint_dir"):
        tickwork.checkpoints_iterator(f"{bucket}/run", hold=True, storage_options=options)
