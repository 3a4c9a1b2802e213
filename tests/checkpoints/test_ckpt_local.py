"""Following real local directories: filesystem events, polling, holds, bad entries.

Real filesystem events cannot be replayed on a fake clock: these tests wait for them, each wait
bounded by a generous limit (``LIMIT``) so a loaded machine only makes them slower.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ckpt_helpers import fakes, zip_bytes

import tickwork
from tickwork import Checkpoint, CheckpointFollower
from tickwork._checkpoints._storage import Entry, LocalStorage, network_filesystem

LIMIT = 30.0  # seconds; only reached when something is wrong


def save(directory: Path, step: int, *, name: str = "model_step_{}.pt") -> Path:
    """Write a complete zip checkpoint the way torch.save does: in place, then closed."""
    path = directory / name.format(step)
    path.write_bytes(zip_bytes(payload=1024))
    return path


def next_step(f: CheckpointFollower) -> int | None:
    found = f.next_checkpoint(timeout=LIMIT)
    assert found is not None, "no checkpoint within the limit"
    return found.step


class CountingStorage(LocalStorage):
    """A local storage that counts its calls."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.calls: Counter[str] = Counter()

    def listdir(self) -> dict[str, Entry]:
        self.calls["listdir"] += 1
        return super().listdir()

    def stat(self, name: str) -> Entry | None:
        self.calls["stat"] += 1
        return super().stat(name)

    def read_at(self, relpath: str, offset: int, size: int) -> bytes:
        self.calls["read_at"] += 1
        return super().read_at(relpath, offset, size)


class TestEvents:
    def test_new_checkpoints_are_noticed_through_events(self, tmp_path: Path) -> None:
        """A local directory is watched through filesystem events and each save is seen."""
        with CheckpointFollower(tmp_path, skip_to_latest=False, watch="events") as f:
            assert f.next_checkpoint(timeout=0) is None
            assert f.mode == "events"
            for step in (1, 2, 3):
                save(tmp_path, step)
                assert next_step(f) == step
            assert f.statistics().change_batches >= 1

    def test_half_written_file_is_not_handed_out(self, tmp_path: Path) -> None:
        """A file being written is examined on each event and handed out only once whole."""
        data = zip_bytes(entries=8, payload=64 * 1024)
        with CheckpointFollower(tmp_path, skip_to_latest=False, watch="events") as f:
            with open(tmp_path / "m_1.pt", "wb") as file:
                last = len(data) - 1000  # the final bytes (the zip end record) come later
                for start in range(0, last, 50_000):
                    file.write(data[start : min(start + 50_000, last)])
                    file.flush()
                    assert f.next_checkpoint(timeout=0.05) is None
                file.write(data[file.tell() :])
            save(tmp_path, 2)  # written after m_1 was finished: seen after it
            steps = [next_step(f), next_step(f)]
            assert steps == [1, 2]

    def test_writer_killed_midway_never_yields(self, tmp_path: Path) -> None:
        """What a killed writer leaves (a truncated file, closed by the kernel) never counts."""
        data = zip_bytes(entries=4, payload=4096)
        (tmp_path / "m_1.pt").write_bytes(data[: len(data) // 2])
        with CheckpointFollower(tmp_path, skip_to_latest=False, watch="events") as f:
            save(tmp_path, 2)
            assert f.next_checkpoint(timeout=0.2) is None  # step 1 pending holds back step 2
            assert f.statistics().pending == 1
            (tmp_path / "m_1.pt").write_bytes(data)  # the restarted writer saves it again
            assert next_step(f) == 1
            assert next_step(f) == 2

    def test_a_burst_with_a_slow_consumer_loses_nothing(self, tmp_path: Path) -> None:
        """100 checkpoints saved back to back while the consumer works: all, in step order."""
        written = threading.Event()

        def train() -> None:
            for step in range(100):
                save(tmp_path, step)
            written.set()

        with CheckpointFollower(tmp_path, skip_to_latest=False, watch="events") as f:
            assert f.next_checkpoint(timeout=0) is None
            writer = threading.Thread(target=train)
            writer.start()
            seen = []
            for _ in range(100):
                found = f.next_checkpoint(timeout=LIMIT)
                assert found is not None
                seen.append(found.step)
                Path(found).read_bytes()  # the consumer's work
            writer.join(LIMIT)
            assert written.is_set()
            assert seen == list(range(100))
            assert f.next_checkpoint(timeout=0) is None

    def test_deletions_before_the_consumer_reaches_them(self, tmp_path: Path) -> None:
        """Checkpoints deleted (max_to_keep) before being reached are counted, not waited for."""
        for step in range(1, 6):
            save(tmp_path, step)
        with CheckpointFollower(tmp_path, skip_to_latest=False, watch="events") as f:
            assert next_step(f) == 1
            (tmp_path / "model_step_2.pt").unlink()
            (tmp_path / "model_step_3.pt").unlink()
            save(tmp_path, 6)
            assert [next_step(f), next_step(f), next_step(f)] == [4, 5, 6]
            assert f.statistics().deleted_before_reached == 2

    def test_stop_ends_an_event_wait(self, tmp_path: Path) -> None:
        """Setting stop from another thread ends a wait for events."""
        stop = threading.Event()
        with CheckpointFollower(tmp_path, stop=stop, watch="events") as f:
            assert f.next_checkpoint(timeout=0) is None
            timer = threading.Timer(0.05, stop.set)
            timer.start()
            assert f.next_checkpoint(timeout=LIMIT) is None
            timer.join()
            assert f.stopped

    def test_missing_directory_then_created(self, tmp_path: Path) -> None:
        """A directory that does not exist yet is waited for, then watched."""
        directory = tmp_path / "later" / "run"
        with CheckpointFollower(directory, watch="events") as f:
            assert f.next_checkpoint(timeout=0) is None
            assert f.mode == "waiting"
            directory.mkdir(parents=True)
            save(directory, 3)
            assert next_step(f) == 3
            assert f.mode == "events"

    def test_directory_removed_and_recreated(self, tmp_path: Path) -> None:
        """A directory removed while followed is waited for again and followed anew."""
        directory = tmp_path / "run"
        directory.mkdir()
        save(directory, 1)
        with CheckpointFollower(directory, watch="events") as f:
            assert next_step(f) == 1
            (directory / "model_step_1.pt").unlink()
            directory.rmdir()
            assert f.next_checkpoint(timeout=0.2) is None
            directory.mkdir()
            save(directory, 2)
            assert next_step(f) == 2

    def test_noticing_one_checkpoint_does_not_depend_on_how_many_exist(
        self, tmp_path: Path
    ) -> None:
        """Noticing a new checkpoint costs the same calls with 10 or 2,000 present: no listing."""
        costs = []
        for present in (10, 2000):
            directory = tmp_path / f"run{present}"
            directory.mkdir()
            for step in range(present):
                save(directory, step)
            storage = CountingStorage(str(directory))
            with fakes(storage), CheckpointFollower(storage.directory, watch="events") as f:
                assert next_step(f) == present - 1
                for _ in range(int(LIMIT / 0.05)):  # until the watch is in place and caught up
                    if f.statistics().scans >= 2:
                        break
                    f.next_checkpoint(timeout=0.05)
                assert f.statistics().scans == 2
                storage.calls.clear()
                save(directory, present)
                assert next_step(f) == present
                costs.append(dict(storage.calls))
        assert costs[0] == costs[1]
        assert costs[0].get("listdir", 0) == 0


class TestPolling:
    def test_poll_mode(self, tmp_path: Path) -> None:
        """watch='poll' lists the directory every poll_interval."""
        with CheckpointFollower(tmp_path, watch="poll", poll_interval=0.05) as f:
            assert f.next_checkpoint(timeout=0) is None
            assert f.mode == "poll"
            save(tmp_path, 8)
            assert next_step(f) == 8
            assert f.statistics().scans >= 2

    def test_network_filesystems_are_polled(self) -> None:
        """NFS and remote FUSE mounts are detected (inotify misses other machines' writes)."""
        mountinfo = (
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
            "40 22 0:50 / /mnt/nfs rw - nfs4 server:/export rw\n"
            "41 22 0:51 / /mnt/my\\040drive rw - fuse.sshfs host: rw\n"
            "42 22 0:52 / /var/lib/docker rw - fuse.fuse-overlayfs fuse rw\n"
        )
        assert network_filesystem("/mnt/nfs/runs/a", mountinfo) == "nfs4"
        assert network_filesystem("/mnt/my drive/x", mountinfo) == "fuse.sshfs"
        assert network_filesystem("/var/lib/docker/x", mountinfo) is None
        assert network_filesystem("/home/me/run", mountinfo) is None


class TestMissingDirectory:
    def test_a_missing_directory_is_said_once_then_followed_when_it_appears(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A directory that does not exist (a typo, or not created yet) is waited for, with one
        warning naming it however many looks find nothing; statistics() says it is missing
        until it appears, and then it is followed."""
        run = tmp_path / "not-yet"
        with (
            caplog.at_level(logging.INFO, logger="tickwork"),
            CheckpointFollower(run, watch="poll", poll_interval=0.01) as f,
        ):
            for _ in range(3):
                assert f.next_checkpoint(timeout=0.05) is None
            assert f.statistics().missing
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert warnings == [f"checkpoint directory {str(run)!r} does not exist yet; "
                                "waiting for it to appear"]  # fmt: skip
            run.mkdir()
            save(run, 3)
            assert next_step(f) == 3
            assert not f.statistics().missing
            assert f"checkpoint directory {str(run)!r} exists now" in caplog.text


class TestHold:
    def test_held_file_survives_deletion(self, tmp_path: Path) -> None:
        """With hold=True the consumer reads a hard-linked copy the training cannot delete."""
        original = save(tmp_path, 1)
        with CheckpointFollower(tmp_path, hold=True, watch="poll") as f:
            held = f.next_checkpoint(timeout=LIMIT)
            assert isinstance(held, Checkpoint)
            assert held.held
            assert held.source == str(original)
            assert held.step == 1
            original.unlink()  # max_to_keep deletes it while it is being evaluated
            assert Path(held).read_bytes() == zip_bytes(payload=1024)
            hold_root = tmp_path / ".tickwork-hold"
            assert any(hold_root.iterdir())
            f.done()
            assert not any(hold_root.iterdir())

    def test_held_directory(self, tmp_path: Path) -> None:
        """A step directory is held file by file."""
        step_dir = tmp_path / "5"
        (step_dir / "state").mkdir(parents=True)
        (step_dir / "state" / "a").write_bytes(b"weights")
        with CheckpointFollower(tmp_path, hold=True, layout="orbax", watch="poll") as f:
            held = f.next_checkpoint(timeout=LIMIT)
            assert held is not None
            for child in (step_dir / "state").iterdir():
                child.unlink()
            assert (Path(held) / "state" / "a").read_bytes() == b"weights"

    def test_hold_dir_on_another_filesystem_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Hard links cannot cross filesystems: that hold_dir is refused, naming it."""
        save(tmp_path, 1)
        hold_dir = tmp_path / "holds"
        real_stat = os.stat

        def fake_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            result = real_stat(path, *args, **kwargs)
            if os.fspath(path) == str(hold_dir):
                values = list(result)
                values[2] += 1  # st_dev
                return os.stat_result(values)
            return result

        monkeypatch.setattr(os, "stat", fake_stat)
        with (
            pytest.raises(OSError, match="'hold_dir' must be on the same filesystem"),
            CheckpointFollower(tmp_path, hold=True, hold_dir=hold_dir, watch="poll") as f,
        ):
            f.next_checkpoint(timeout=LIMIT)


class TestBadEntries:
    def test_symlink_loop(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """Checkpoint names that are symlink loops are logged and never handed out."""
        os.symlink(tmp_path / "m_6.pt", tmp_path / "m_5.pt")
        os.symlink(tmp_path / "m_5.pt", tmp_path / "m_6.pt")
        save(tmp_path, 1, name="m_{}.pt")
        with CheckpointFollower(tmp_path, skip_to_latest=False, watch="poll") as f:
            assert next_step(f) == 1
            assert f.next_checkpoint(timeout=0) is None
            assert f.statistics().rejected == 2
        assert "m_5.pt" in caplog.text

    def test_file_instead_of_directory(self, tmp_path: Path) -> None:
        """A file given as checkpoint_dir is refused at the call, naming the argument."""
        target = tmp_path / "not_a_dir"
        target.write_text("x")
        with pytest.raises(NotADirectoryError, match="'checkpoint_dir' must be a directory"):
            tickwork.checkpoints_iterator(target)

    def test_unreadable_directory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A directory that cannot be listed is refused at the call, naming the argument."""
        real_scandir = os.scandir

        def denied(path: Any = ".") -> Any:
            if os.fspath(path) == str(tmp_path):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", denied)
        with pytest.raises(PermissionError, match="'checkpoint_dir' must be a directory that"):
            tickwork.checkpoints_iterator(tmp_path)

    def test_symlinked_directory(self, tmp_path: Path) -> None:
        """A checkpoint_dir that is a symlink to a directory is followed."""
        real = tmp_path / "real"
        real.mkdir()
        link = tmp_path / "link"
        link.symlink_to(real)
        with CheckpointFollower(link, watch="events") as f:
            assert f.next_checkpoint(timeout=0) is None
            save(real, 4)
            found = f.next_checkpoint(timeout=LIMIT)
            assert found == str(link / "model_step_4.pt")
