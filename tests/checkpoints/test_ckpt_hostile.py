"""Hostile input on a real directory: special files, endless files, names from outside, loops."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import tickwork

REAL_WAIT = 20.0  # real seconds; reached only on failure (the bug these tests guard: a hang)

posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs and /dev/zero are POSIX")


def returns(call: Callable[[], object]) -> object:
    """Run ``call`` in a thread; fail (instead of hanging) when it does not return in time."""
    result: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(REAL_WAIT)
    assert not thread.is_alive(), "the call blocked"
    if errors:
        raise errors[0]
    return result[0]


def tf_files(directory: Path, step: int) -> None:
    (directory / f"ckpt-{step}.index").write_bytes(b"index")
    (directory / f"ckpt-{step}.data-00000-of-00001").write_bytes(b"data")


def state(directory: Path, model: str) -> None:
    (directory / "checkpoint").write_text(
        f'model_checkpoint_path: "{model}"\nall_model_checkpoint_paths: "{model}"\n'
    )


@posix_only
class TestSpecialStateFiles:
    def test_a_fifo_state_file_never_blocks(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A FIFO named `checkpoint` is refused as not a regular file, logged; nothing blocks."""
        tf_files(tmp_path, 1)
        os.mkfifo(tmp_path / "checkpoint")
        caplog.set_level(logging.WARNING)
        assert returns(lambda: tickwork.latest_checkpoint(tmp_path)) is None
        assert "not a regular file" in caplog.text

    def test_a_fifo_state_file_does_not_block_the_iterator(self, tmp_path: Path) -> None:
        """The iterator (polling, so the state file is read every look) times out normally."""
        tf_files(tmp_path, 1)
        os.mkfifo(tmp_path / "checkpoint")
        found = returns(lambda: list(tickwork.checkpoints_iterator(tmp_path, timeout=0.3)))
        assert found == []

    def test_an_endless_state_file_is_refused_not_read(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """`checkpoint` -> /dev/zero: refused at once, not read until memory runs out."""
        tf_files(tmp_path, 1)
        os.symlink("/dev/zero", tmp_path / "checkpoint")
        caplog.set_level(logging.WARNING)
        assert returns(lambda: tickwork.latest_checkpoint(tmp_path)) is None
        assert "not a regular file" in caplog.text

    def test_a_huge_state_file_is_refused_with_its_size(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A regular state file above the size bound is refused, saying so."""
        tf_files(tmp_path, 1)
        with open(tmp_path / "checkpoint", "wb") as file:
            file.write(b'model_checkpoint_path: "ckpt-1"\n' + b"#" * (2 << 20))
        caplog.set_level(logging.WARNING)
        assert tickwork.latest_checkpoint(tmp_path) is None
        assert "larger than" in caplog.text

    def test_a_fifo_checkpoint_file_is_rejected_not_opened(self, tmp_path: Path) -> None:
        """A FIFO with a checkpoint's name is not a checkpoint, and opening it never blocks."""
        (tmp_path / "model_step_1.pt").write_bytes(b"")  # makes the layout torch
        os.mkfifo(tmp_path / "model_step_2.pt")
        with tickwork.CheckpointFollower(tmp_path, watch="poll", settle_secs=0) as follower:
            assert returns(lambda: follower.next_checkpoint(timeout=0.3)) is None
            assert follower.statistics().rejected >= 1

    def test_a_fifo_resume_file_never_blocks(self, tmp_path: Path) -> None:
        """A resume state_file that is a FIFO is refused (logged, counted), not waited on."""
        os.mkfifo(tmp_path / "eval.state")
        directory = tmp_path / "run"
        directory.mkdir()
        follower = returns(
            lambda: tickwork.CheckpointFollower(directory, state_file=tmp_path / "eval.state")
        )
        assert isinstance(follower, tickwork.CheckpointFollower)
        with follower:
            assert follower.statistics().errors == 1


class TestStateFileNames:
    @pytest.mark.parametrize("recorded", ["/elsewhere/ckpt-2", "../x/ckpt-2"])
    def test_a_path_outside_the_directory_is_not_a_checkpoint_of_it(
        self, tmp_path: Path, recorded: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """TensorFlow returns None when the named files do not exist: so does tickwork, even
        when a checkpoint of the same name is in the directory; it says why."""
        directory = tmp_path / "run"
        directory.mkdir()
        tf_files(directory, 2)
        state(directory, recorded)
        caplog.set_level(logging.WARNING)
        assert tickwork.latest_checkpoint(directory) is None
        assert "outside the directory" in caplog.text

    @posix_only
    def test_symlink_loops_are_not_a_complete_checkpoint(self, tmp_path: Path) -> None:
        """A TF checkpoint whose .index and data are symlink loops is rejected, not yielded."""
        os.symlink("ckpt-1.index", tmp_path / "ckpt-1.index")
        os.symlink("ckpt-1.data-00000-of-00001", tmp_path / "ckpt-1.data-00000-of-00001")
        state(tmp_path, "ckpt-1")
        assert tickwork.latest_checkpoint(tmp_path) is None
        with tickwork.CheckpointFollower(tmp_path, watch="poll") as follower:
            assert follower.next_checkpoint(timeout=0) is None
            assert follower.statistics().rejected == 1

    def test_a_tensorflow_looking_file_no_rule_claims_is_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A file that looks like a TensorFlow shard but no rule accepts (a shard number that is
        not a number) is not silently ignored; a prefix with a line break is a prefix like any
        other (TensorFlow writes and reads it escaped)."""
        tf_files(tmp_path, 1)
        (tmp_path / "bad.data-0000x-of-00001").write_bytes(b"data")
        (tmp_path / "line\nbreak-2.index").write_bytes(b"index")
        state(tmp_path, "ckpt-1")
        caplog.set_level(logging.WARNING)
        assert tickwork.latest_checkpoint(tmp_path) == str(tmp_path / "ckpt-1")
        assert "'bad.data-0000x-of-00001'" in caplog.text
        assert "not followed" in caplog.text
        assert "line\\nbreak" not in caplog.text
