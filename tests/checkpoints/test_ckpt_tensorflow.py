"""Parity with TensorFlow on directories written by real TensorFlow savers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import tickwork

tf = pytest.importorskip("tensorflow")

pytestmark = pytest.mark.tensorflow

LIMIT = 60.0  # seconds; only reached when something is wrong


def manager(directory: str | Path, max_to_keep: int | None = 5) -> tuple[object, object]:
    variable = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(v=variable)
    return variable, tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)


class TestLatestCheckpoint:
    @pytest.mark.parametrize("form", ["relative", "absolute", "trailing-slash", "pathlike"])
    def test_same_string_as_tensorflow(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
    ) -> None:
        """latest_checkpoint returns exactly what tf.train.latest_checkpoint returns."""
        monkeypatch.chdir(tmp_path)
        _, saver = manager("run")
        for _ in range(3):
            saver.save()  # type: ignore[attr-defined]
        forms: dict[str, str | Path] = {
            "relative": "run",
            "absolute": str(tmp_path / "run"),
            "trailing-slash": "run/",
            "pathlike": Path("run"),
        }
        given = forms[form]
        ours = tickwork.latest_checkpoint(given)
        assert ours == tf.train.latest_checkpoint(given)
        assert ours is not None
        assert ours.step == 3
        assert ours.layout == "tensorflow"

    @pytest.mark.parametrize("name", ["model\nckpt", "model\tckpt", 'say "hi"', "ünï"])
    def test_prefixes_that_tensorflow_escapes(self, tmp_path: Path, name: str) -> None:
        """A prefix with characters TensorFlow's text format escapes in the state file (a line
        break, a tab, quotes, non-ASCII): the same path as TensorFlow, followed."""
        checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
        saver = tf.train.CheckpointManager(checkpoint, str(tmp_path), 3, checkpoint_name=name)
        saver.save(checkpoint_number=3)
        ours = tickwork.latest_checkpoint(tmp_path)
        assert ours is not None
        assert ours == tf.train.latest_checkpoint(str(tmp_path))
        assert ours.step == 3

    def test_checkpoint_save_without_manager(self, tmp_path: Path) -> None:
        """tf.train.Checkpoint.save keeps the state file too."""
        checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
        checkpoint.save(str(tmp_path / "model"))
        checkpoint.save(str(tmp_path / "model"))
        assert tickwork.latest_checkpoint(tmp_path) == tf.train.latest_checkpoint(str(tmp_path))

    def test_absolute_paths_in_the_state_file(self, tmp_path: Path) -> None:
        """State files with absolute paths (v1 Saver style) give the recorded path."""
        _, saver = manager(tmp_path)
        first = saver.save()  # type: ignore[attr-defined]
        tf.compat.v1.train.update_checkpoint_state(  # records the paths as given: absolute
            str(tmp_path), first, all_model_checkpoint_paths=[first]
        )
        assert str(tmp_path) in (tmp_path / "checkpoint").read_text()
        assert tickwork.latest_checkpoint(tmp_path) == tf.train.latest_checkpoint(str(tmp_path))
        assert os.path.isabs(tickwork.latest_checkpoint(tmp_path) or "")

    def test_empty_and_missing_directories(self, tmp_path: Path) -> None:
        """No checkpoint, or no directory: None, as TensorFlow."""
        assert tickwork.latest_checkpoint(tmp_path) is None
        assert tf.train.latest_checkpoint(str(tmp_path)) is None
        assert tickwork.latest_checkpoint(tmp_path / "missing") is None

    def test_yielded_path_restores(self, tmp_path: Path) -> None:
        """The Checkpoint handed out is a path TensorFlow restores from."""
        variable, saver = manager(tmp_path)
        variable.assign(42.0)  # type: ignore[attr-defined]
        saver.save()  # type: ignore[attr-defined]
        found = tickwork.latest_checkpoint(tmp_path)
        restored = tf.Variable(0.0)
        tf.train.Checkpoint(v=restored).restore(found).assert_consumed()
        assert float(restored.numpy()) == 42.0


class TestIteration:
    def test_iterator_yields_what_tensorflows_yields(self, tmp_path: Path) -> None:
        """On a static directory both iterators yield the latest checkpoint, then time out."""
        _, saver = manager(tmp_path)
        for _ in range(4):
            saver.save()  # type: ignore[attr-defined]
        theirs = list(tf.train.checkpoints_iterator(str(tmp_path), timeout=0.1))
        ours = list(tickwork.checkpoints_iterator(tmp_path, timeout=0.1))
        assert ours == theirs
        assert [c.step for c in ours] == [4]

    def test_wait_for_new_checkpoint(self, tmp_path: Path) -> None:
        """wait_for_new_checkpoint returns the latest unless it is last_checkpoint."""
        _, saver = manager(tmp_path)
        saver.save()  # type: ignore[attr-defined]
        latest = tf.train.latest_checkpoint(str(tmp_path))
        assert tickwork.wait_for_new_checkpoint(tmp_path, timeout=0.1) == latest
        assert tickwork.wait_for_new_checkpoint(tmp_path, latest, timeout=0.1) is None
        from tensorflow.python.training.checkpoint_utils import wait_for_new_checkpoint

        assert wait_for_new_checkpoint(str(tmp_path), latest, timeout=0.1) is None
        assert wait_for_new_checkpoint(str(tmp_path), timeout=0.1) == latest

    def test_every_save_while_training(self, tmp_path: Path) -> None:
        """Followed while training saves: every checkpoint once, in order, each restorable."""
        variable, saver = manager(tmp_path, max_to_keep=None)
        saved: list[str] = []

        def train() -> None:
            for step in range(1, 21):
                variable.assign(float(step))  # type: ignore[attr-defined]
                saved.append(saver.save())  # type: ignore[attr-defined]

        thread = threading.Thread(target=train)
        restored = tf.Variable(0.0)
        with tickwork.checkpoints_iterator(
            tmp_path, timeout=LIMIT, skip_to_latest=False
        ) as checkpoints:
            thread.start()
            seen = []
            for found in checkpoints:
                tf.train.Checkpoint(v=restored).restore(found).assert_consumed()
                assert float(restored.numpy()) == found.step
                seen.append(found)
                if found.step == 20:
                    break
        thread.join(LIMIT)
        assert seen == saved

    def test_hold_keeps_checkpoints_that_training_deletes(self, tmp_path: Path) -> None:
        """With max_to_keep=1 and hold=True, every checkpoint handed out restores, and each
        save is either handed out or counted as deleted before it was reached."""
        variable, saver = manager(tmp_path, max_to_keep=1)
        done = threading.Event()

        def train() -> None:
            for step in range(1, 16):
                variable.assign(float(step))  # type: ignore[attr-defined]
                saver.save()  # type: ignore[attr-defined]
            done.set()

        thread = threading.Thread(target=train)
        restored = tf.Variable(0.0)
        seen = []
        with tickwork.checkpoints_iterator(
            tmp_path, timeout=LIMIT, skip_to_latest=False, hold=True
        ) as checkpoints:
            assert checkpoints.follower.start(timeout=LIMIT)  # nothing saved from now is missed
            thread.start()
            for found in checkpoints:
                assert found.held
                tf.train.Checkpoint(v=restored).restore(found).assert_consumed()
                assert float(restored.numpy()) == found.step
                seen.append(found.step)
                if found.step == 15:
                    break
            thread.join(LIMIT)
            assert done.is_set()
            # The last deletions (of 14, after 15 was saved) may still be on their way.
            follower = checkpoints.follower
            for _ in range(int(LIMIT / 0.1)):
                stats = follower.statistics()
                if stats.yielded + stats.deleted_before_reached >= 15:
                    break
                assert follower.next_checkpoint(timeout=0.1) is None
            stats = follower.statistics()
        assert seen == sorted(seen)
        assert seen[-1] == 15
        assert stats.yielded + stats.deleted_before_reached == 15
        assert not any((tmp_path / ".tickwork-hold").iterdir())
