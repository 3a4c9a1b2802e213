"""CheckpointFollower over a scripted in-memory directory, on a fake clock."""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ckpt_helpers import (
    MemoryStorage,
    fakes,
    safetensors_bytes,
    tf_state,
    write_tf,
    zip_bytes,
)

from tickwork import Checkpoint, CheckpointFollower, CheckpointPattern, Coordinator
from tickwork._checkpoints._api import CheckpointIterator
from tickwork._errors import DEFAULT_KEEP, FULL_LOGS
from tickwork.testing import FakeClock

REAL_WAIT = 10.0  # seconds a test waits, in real time, for a thread it started


def follower(storage: MemoryStorage, clock: FakeClock, **options: Any) -> CheckpointFollower:
    options.setdefault("watch", "poll")
    with fakes(storage):
        return CheckpointFollower(storage.directory, clock=clock, **options)


def torch_files(storage: MemoryStorage, *steps: int) -> None:
    for step in steps:
        storage.write(f"model_step_{step}.pt", zip_bytes())


def drain(f: CheckpointFollower) -> list[int | None]:
    steps = []
    while (found := f.next_checkpoint(timeout=0)) is not None:
        steps.append(found.step)
    return steps


class InThread:
    """Runs a blocking call in a thread so the test can move the fake clock."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.result: object = "not finished"
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        self.result = call()

    def finished(self, timeout: float = REAL_WAIT) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


class TestOrder:
    def test_never_miss_yields_every_checkpoint_in_step_order(self) -> None:
        """skip_to_latest=False hands out each complete checkpoint once, by step not name."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 10, 9, 100, 1)
        with follower(storage, clock, skip_to_latest=False) as f:
            assert drain(f) == [1, 9, 10, 100]
            torch_files(storage, 101, 5)
            clock.advance(1.0)
            assert drain(f) == [5, 101]
            assert f.statistics().yielded == 6

    def test_skip_to_latest_is_tensorflows_behaviour(self) -> None:
        """By default only the newest is handed out; the older ones count as skipped."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3)
        with follower(storage, clock) as f:
            assert drain(f) == [3]
            torch_files(storage, 4, 5)
            clock.advance(1.0)
            assert drain(f) == [5]
            stats = f.statistics()
            assert (stats.yielded, stats.skipped) == (2, 3)

    def test_pending_checkpoint_holds_back_newer_ones(self) -> None:
        """Order by step is a promise: nothing newer is handed out while an older checkpoint
        is incomplete; once it completes, both come, in step order."""
        storage, clock = MemoryStorage(), FakeClock()
        data = zip_bytes()
        storage.write("m_1.pt", data[:100])
        torch_files(storage, 2)
        with follower(storage, clock, skip_to_latest=False) as f:
            assert drain(f) == []
            assert f.statistics().pending == 1
            storage.write("m_1.pt", data)
            clock.advance(1.0)
            assert drain(f) == [1, 2]

    def test_pending_checkpoint_deleted_counts_and_releases_the_newer_ones(self) -> None:
        """An incomplete checkpoint deleted while it holds back newer ones is counted as deleted
        before reached; the newer ones come."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("m_1.pt", zip_bytes()[:100])
        torch_files(storage, 2)
        with follower(storage, clock, skip_to_latest=False) as f:
            assert drain(f) == []
            storage.remove("m_1.pt")
            clock.advance(1.0)
            assert drain(f) == [2]
            stats = f.statistics()
            assert (stats.yielded, stats.deleted_before_reached) == (1, 1)

    def test_broken_checkpoint_does_not_hold_back_newer_ones(self) -> None:
        """A corrupt checkpoint (rejected, never handed out) does not stop the ones after it."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("m_1.keras", b"this is not a zip archive")
        storage.write("m_2.keras", zip_bytes())
        with follower(storage, clock, skip_to_latest=False) as f:
            assert drain(f) == [2]
            assert f.statistics().rejected == 1

    def test_latest_does_not_hand_out(self) -> None:
        """latest() reports the newest complete checkpoint without consuming it."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        with follower(storage, clock, skip_to_latest=False) as f:
            latest = f.latest()
            assert latest is not None
            assert latest.step == 2
            assert drain(f) == [1, 2]


class TestNeverEarly:
    def test_truncated_files_are_never_handed_out(self) -> None:
        """A zip or safetensors file cut anywhere stays pending; complete, it is handed out."""
        storage, clock = MemoryStorage(), FakeClock()
        archive, tensors = zip_bytes(), safetensors_bytes()
        with follower(storage, clock, skip_to_latest=False) as f:
            for cut in range(0, len(archive), 97):
                storage.write("m_1.pt", archive[:cut])
                storage.write("m_2.safetensors", tensors[: cut % len(tensors)])
                clock.advance(1.0)
                assert f.next_checkpoint(timeout=0) is None
            storage.write("m_1.pt", archive)
            storage.write("m_2.safetensors", tensors)
            clock.advance(1.0)
            assert drain(f) == [1, 2]

    def test_uncheckable_files_wait_until_settled(self) -> None:
        """A legacy pickle file is handed out once unchanged for settle_secs, not before."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("m_1.pt", pickle.dumps(list(range(10)), protocol=2))
        with follower(storage, clock, settle_secs=2.0) as f:
            assert f.next_checkpoint(timeout=0) is None
            clock.advance(1.0)
            storage.write("m_1.pt", pickle.dumps(list(range(20)), protocol=2))  # still growing
            assert f.next_checkpoint(timeout=0) is None
            clock.advance(1.5)
            assert f.next_checkpoint(timeout=0) is None
            clock.advance(1.0)
            found = f.next_checkpoint(timeout=0)
            assert found is not None
            assert found.step == 1

    def test_tensorflow_needs_the_state_file_and_every_file(self) -> None:
        """A TF checkpoint counts once its files exist and the state file names it."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("ckpt-1.index", b"index")  # no data shard yet
        with follower(storage, clock, skip_to_latest=False) as f:
            assert f.next_checkpoint(timeout=0) is None
            storage.write("ckpt-1.data-00000-of-00002", b"d")
            storage.write("ckpt-1.data-00001-of-00002", b"d")
            clock.advance(1.0)
            assert f.next_checkpoint(timeout=0) is None  # not named yet
            storage.write("checkpoint", tf_state("ckpt-1"))
            clock.advance(1.0)
            found = f.next_checkpoint(timeout=0)
            assert found == "/mem/run/ckpt-1"
            assert isinstance(found, Checkpoint)
            assert found.step == 1
            assert found.layout == "tensorflow"
            assert found.files == (
                "/mem/run/ckpt-1.index",
                "/mem/run/ckpt-1.data-00000-of-00002",
                "/mem/run/ckpt-1.data-00001-of-00002",
            )

    def test_tensorflow_newer_named_completes_the_older(self) -> None:
        """Checkpoints saved faster than the state file is read are not lost."""
        storage, clock = MemoryStorage(), FakeClock()
        for step in (1, 2, 3):
            write_tf(storage, step)
        storage.write("checkpoint", tf_state("ckpt-3", "ckpt-3"))  # max_to_keep=1 style
        with follower(storage, clock, skip_to_latest=False) as f:
            assert drain(f) == [1, 2, 3]

    def test_corrupt_state_file_is_logged_not_fatal(self, caplog: pytest.LogCaptureFixture) -> None:
        """An unreadable state file is logged and counted; a later good one is used."""
        storage, clock = MemoryStorage(), FakeClock()
        write_tf(storage, 1)
        storage.write("checkpoint", b'model_checkpoint_path: "ckpt-1')
        with follower(storage, clock) as f:
            assert f.next_checkpoint(timeout=0) is None
            assert f.statistics().rejected == 1
            assert "unreadable state file" in caplog.text
            storage.write("checkpoint", tf_state("ckpt-1"))
            clock.advance(1.0)
            assert f.next_checkpoint(timeout=0) == "/mem/run/ckpt-1"

    def test_symlink_loop_is_rejected(self, caplog: pytest.LogCaptureFixture) -> None:
        """An entry that cannot be examined (a symlink loop) is logged and never handed out."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.loops.add("m_3.pt")
        torch_files(storage, 1)
        with follower(storage, clock, skip_to_latest=False) as f:
            assert drain(f) == [1]
            assert f.statistics().rejected == 1
            assert "m_3.pt" in caplog.text

    def test_orbax_temporary_directories_are_ignored(self) -> None:
        """Orbax writes into *.orbax-checkpoint-tmp-* then renames: only the rename counts."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("7.orbax-checkpoint-tmp-123/state/data", b"x")
        with follower(storage, clock) as f:
            assert f.next_checkpoint(timeout=0) is None
            storage.rename("7.orbax-checkpoint-tmp-123", "7")
            clock.advance(1.0)
            found = f.next_checkpoint(timeout=0)
            assert (found, getattr(found, "layout", None)) == ("/mem/run/7", "orbax")

    def test_orbax_on_gcs_needs_the_commit_marker(self) -> None:
        """Where rename is not atomic (GCS), Orbax's commit_success.txt commits a step."""
        storage, clock = MemoryStorage(remote=True, protocol="gs"), FakeClock()
        storage.write("7/state/data", b"x")
        with follower(storage, clock, layout="orbax") as f:
            clock.advance(100.0)
            assert f.next_checkpoint(timeout=0) is None
            storage.write("7/commit_success.txt", b"")
            clock.advance(100.0)
            assert f.next_checkpoint(timeout=0) == "mem://run/7"

    def test_huggingface_checkpoint_needs_its_state_and_weights(self) -> None:
        """checkpoint-<step> counts once trainer_state.json is there and weights are whole."""
        storage, clock = MemoryStorage(), FakeClock()
        weights = safetensors_bytes()
        storage.write("checkpoint-10/model.safetensors", weights[:50])
        with follower(storage, clock) as f:
            assert f.next_checkpoint(timeout=0) is None
            storage.write("checkpoint-10/trainer_state.json", b"{}")
            clock.advance(1.0)
            assert f.next_checkpoint(timeout=0) is None  # weights still being written
            storage.write("checkpoint-10/model.safetensors", weights)
            clock.advance(1.0)
            assert f.next_checkpoint(timeout=0) == "/mem/run/checkpoint-10"

    def test_pattern_directories_settle(self) -> None:
        """A pattern directory without a marker counts once nothing in it changed for a while."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.write("snap-3/a.bin", b"x" * 100)
        pattern = CheckpointPattern(r"snap-(?P<step>\d+)", kind="dir")
        with follower(storage, clock, layout=pattern, settle_secs=1.5) as f:
            assert f.next_checkpoint(timeout=0) is None
            clock.advance(1.0)
            storage.write("snap-3/b.bin", b"y" * 100)
            assert f.next_checkpoint(timeout=0) is None
            clock.advance(2.0)
            found = f.next_checkpoint(timeout=0)
            assert (found, getattr(found, "layout", None)) == ("/mem/run/snap-3", "pattern")


class TestDeletion:
    def test_deleted_before_reached_is_counted(self, caplog: pytest.LogCaptureFixture) -> None:
        """A checkpoint deleted (max_to_keep) before the consumer got to it is counted."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3)
        with follower(storage, clock, skip_to_latest=False) as f:
            one = f.next_checkpoint(timeout=0)
            assert one is not None
            assert one.step == 1
            storage.remove("model_step_2.pt")
            clock.advance(1.0)
            assert drain(f) == [3]
            assert f.statistics().deleted_before_reached == 1
            assert "deleted before it was handed out" in caplog.text

    def test_superseded_deletions_count_as_skipped(self) -> None:
        """With skip_to_latest, a deleted checkpoint that a newer one replaced was skipped."""
        storage, clock = MemoryStorage(), FakeClock()
        with follower(storage, clock) as f:
            assert f.next_checkpoint(timeout=0) is None
            torch_files(storage, 1, 2)
            clock.advance(1.0)
            f.rescan()
            storage.remove("model_step_1.pt")
            clock.advance(1.0)
            assert drain(f) == [2]
            stats = f.statistics()
            assert (stats.skipped, stats.deleted_before_reached) == (1, 0)


class TestWaiting:
    def test_timeout_is_exact_on_the_clock(self) -> None:
        """next_checkpoint(timeout) returns None when the clock reaches the deadline."""
        storage, clock = MemoryStorage(), FakeClock()
        with follower(storage, clock, poll_interval=0.5) as f:
            call = InThread(lambda: f.next_checkpoint(timeout=2.0))
            while clock.now() < 1.75:
                clock.wait_for_sleepers(1)
                clock.advance(0.25)
            clock.wait_for_sleepers(1)
            assert call.result == "not finished"
            clock.advance(0.25)
            assert call.finished()
            result: object = call.result  # a fresh name: mypy narrowed call.result above
            assert result is None
            assert clock.now() == 2.0

    def test_checkpoint_arriving_during_the_wait(self) -> None:
        """A checkpoint that appears while waiting is handed out at the next poll."""
        storage, clock = MemoryStorage(), FakeClock()
        with follower(storage, clock) as f:
            call = InThread(lambda: f.next_checkpoint())
            clock.wait_for_sleepers(1)
            torch_files(storage, 4)
            clock.advance(1.0)
            assert call.finished()
            assert isinstance(call.result, Checkpoint)
            assert call.result.step == 4

    @pytest.mark.parametrize("kind", ["event", "coordinator"])
    def test_stop_ends_the_wait_at_once(self, kind: str) -> None:
        """Setting stop (an Event or a Coordinator) ends a wait without the clock moving."""
        storage, clock = MemoryStorage(), FakeClock()
        event = threading.Event()
        coordinator = Coordinator()
        stop: object = event if kind == "event" else coordinator
        with follower(storage, clock, stop=stop) as f:
            call = InThread(lambda: f.next_checkpoint(timeout=100.0))
            clock.wait_for_sleepers(1)
            if kind == "event":
                event.set()
            else:
                coordinator.request_stop()
            assert call.finished()
            assert call.result is None
            assert f.stopped
            assert clock.now() == 0.0

    def test_missing_directory_is_waited_for(self) -> None:
        """A directory that does not exist yet is waited for, then followed."""
        storage, clock = MemoryStorage(), FakeClock()
        storage.exists_dir = False
        with follower(storage, clock) as f:
            assert f.next_checkpoint(timeout=0) is None
            assert f.mode == "waiting"
            storage.exists_dir = True
            torch_files(storage, 1)
            clock.advance(1.0)
            found = f.next_checkpoint(timeout=0)
            assert found is not None
            assert f.mode == "poll"

    def test_directory_that_vanishes_is_waited_for_again(self) -> None:
        """If the directory disappears, its checkpoints count as deleted and it is awaited."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        with follower(storage, clock, skip_to_latest=False) as f:
            assert f.next_checkpoint(timeout=0) is not None
            storage.exists_dir = False
            storage.files.clear()
            clock.advance(1.0)
            assert f.next_checkpoint(timeout=0) is None
            assert f.mode == "waiting"
            assert f.statistics().deleted_before_reached == 1

    def test_remote_polling_backs_off(self) -> None:
        """Remote polls back off while nothing changes and return to the base interval."""
        storage, clock = MemoryStorage(remote=True, protocol="s3"), FakeClock()
        with follower(storage, clock, watch="auto", poll_interval=1.0) as f:
            assert f.next_checkpoint(timeout=0) is None
            assert f.mode == "remote"
            listed = []
            for _ in range(5):
                clock.advance(16.0)
                f.next_checkpoint(timeout=0)
                listed.append(storage.calls["listdir"])
            assert listed == [2, 3, 4, 5, 6]  # one poll per 16 s once at the 10 s ceiling
            torch_files(storage, 1)
            clock.advance(10.0)
            assert f.next_checkpoint(timeout=0) is not None


class TestIterator:
    def iterator(
        self, storage: MemoryStorage, clock: FakeClock, **options: Any
    ) -> CheckpointIterator:
        timeout = options.pop("timeout", None)
        min_interval = options.pop("min_interval_secs", 0)
        timeout_fn = options.pop("timeout_fn", None)
        return CheckpointIterator(
            follower(storage, clock, **options),
            min_interval_secs=min_interval,
            timeout=timeout,
            timeout_fn=timeout_fn,
            clock=clock,
        )

    def test_timeout_without_timeout_fn_ends_iteration(self) -> None:
        """As TensorFlow: the first timeout ends the iteration."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1)
        it = self.iterator(storage, clock, timeout=0)
        assert [c.step for c in it] == [1]

    def test_timeout_fn_decides_whether_to_go_on(self) -> None:
        """timeout_fn is called after each timeout; False waits again, True ends."""
        storage, clock = MemoryStorage(), FakeClock()
        calls: list[float] = []

        def timeout_fn() -> bool:
            calls.append(clock.now())
            if len(calls) == 2:
                torch_files(storage, 7)
            return len(calls) >= 4

        it = self.iterator(storage, clock, timeout=2.0, timeout_fn=timeout_fn)
        call = InThread(lambda: [c.step for c in it])
        while not call.finished(0.01):
            clock.advance(0.5)
        assert call.result == [7]
        assert len(calls) == 4
        assert calls[0] >= 2.0  # never before the timeout

    def test_min_interval_waits_on_the_clock(self) -> None:
        """Consecutive checkpoints are at least min_interval_secs apart."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        it = self.iterator(storage, clock, skip_to_latest=False, min_interval_secs=5.0)
        assert next(it).step == 1
        call = InThread(lambda: next(it))
        clock.wait_for_sleepers(1)
        clock.advance(4.0)
        clock.wait_for_sleepers(1)
        assert call.result == "not finished"
        clock.advance(1.0)
        assert call.finished()
        assert isinstance(call.result, Checkpoint)
        assert call.result.step == 2

    def test_stop_during_min_interval(self) -> None:
        """A stop ends the min_interval_secs wait too, and the iteration."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        stop = threading.Event()
        it = self.iterator(storage, clock, skip_to_latest=False, min_interval_secs=60, stop=stop)
        next(it)
        call = InThread(lambda: list(it))
        clock.wait_for_sleepers(1)
        stop.set()
        assert call.finished()
        assert call.result == []


class TestResume:
    def test_restart_goes_on_after_the_last_finished(self, tmp_path: Path) -> None:
        """A restarted follower neither repeats finished checkpoints nor skips unfinished ones."""
        state = tmp_path / "progress.json"
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2, 3, 4)
        with follower(storage, clock, skip_to_latest=False, state_file=state) as f:
            assert [f.next_checkpoint(timeout=0).step for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
            # 1 and 2 are finished (the consumer asked for the next); 3 is being consumed.
        record = json.loads(state.read_text())
        assert record["done"]["step"] == 2
        with follower(storage, clock, skip_to_latest=False, state_file=state) as f:
            assert drain(f) == [3, 4]
            assert f.statistics().resumed_from == 2

    def test_done_records_progress_explicitly(self, tmp_path: Path) -> None:
        """done() records the current checkpoint without asking for the next."""
        state = tmp_path / "progress.json"
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1, 2)
        with follower(storage, clock, skip_to_latest=False, state_file=state) as f:
            current = f.next_checkpoint(timeout=0)
            with pytest.raises(ValueError, match="'checkpoint' must be the checkpoint"):
                f.done(Checkpoint("/elsewhere"))
            f.done(current)
        assert json.loads(state.read_text())["done"]["key"] == "model_step_1.pt"

    def test_corrupt_resume_file_starts_afresh(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An unreadable resume file is logged and counted, never fatal."""
        state = tmp_path / "progress.json"
        state.write_text("{not json")
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1)
        with follower(storage, clock, state_file=state) as f:
            assert drain(f) == [1]
            assert f.statistics().errors == 1
        assert "not valid JSON" in caplog.text

    def test_resume_file_of_another_directory_is_refused(self, tmp_path: Path) -> None:
        """A resume file written for another directory is not applied."""
        state = tmp_path / "progress.json"
        state.write_text(
            json.dumps(
                {"format": "tickwork.checkpoints/1", "checkpoint_dir": "/other", "done": None}
            )
        )
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, 1)
        with follower(storage, clock, state_file=state) as f:
            assert drain(f) == [1]
            assert f.statistics().errors == 1


class TestCost:
    def test_start_reads_only_what_it_hands_out(self) -> None:
        """With 2,000 checkpoints present, following the newest reads one file, not all."""
        storage, clock = MemoryStorage(), FakeClock()
        torch_files(storage, *range(2000))
        with follower(storage, clock) as f:
            found = f.next_checkpoint(timeout=0)
            assert found is not None
            assert found.step == 1999
            assert storage.calls["read_at"] <= 4


class TestValidation:
    @pytest.mark.parametrize(
        ("options", "error", "message"),
        [
            ({"poll_interval": -1}, ValueError, "'poll_interval' must be a finite number >= 0"),
            ({"poll_interval": math.nan}, ValueError, "'poll_interval'"),
            ({"settle_secs": -1}, ValueError, "'settle_secs' must be a finite number >= 0"),
            ({"max_poll_interval": 0.5}, ValueError, "'max_poll_interval' must be >= poll"),
            ({"watch": "inotify"}, ValueError, "'watch' must be one of"),
            ({"layout": "jax"}, ValueError, "'layout' must be one of"),
            ({"skip_to_latest": 1}, TypeError, "'skip_to_latest' must be a bool"),
            ({"stop": 5}, TypeError, "'stop' must be a threading.Event"),
            ({"latest_filename": "a/b"}, ValueError, "'latest_filename'"),
            ({"clock": 5}, TypeError, "'clock'"),
        ],
    )
    def test_bad_options_name_the_argument(
        self, options: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Every bad option is refused at construction with the argument's name."""
        with pytest.raises(error, match=message):
            follower(MemoryStorage(), FakeClock(), **options)

    def test_remote_cannot_hold_or_use_events(self) -> None:
        """hold=True and watch='events' are refused for remote storage, saying why."""
        remote = MemoryStorage(remote=True, protocol="s3")
        with pytest.raises(ValueError, match="'hold' needs a local checkpoint_dir"):
            follower(remote, FakeClock(), hold=True)
        with pytest.raises(ValueError, match="'watch' must be 'auto' or 'poll'"):
            follower(remote, FakeClock(), watch="events")

    def test_file_instead_of_directory(self) -> None:
        """A checkpoint_dir that is a file is refused at once, naming the argument."""
        storage = MemoryStorage()
        storage.is_file = True
        with pytest.raises(NotADirectoryError, match="'checkpoint_dir' must be a directory"):
            follower(storage, FakeClock())

    def test_closed_follower_refuses_work(self) -> None:
        """A closed follower says so instead of waiting forever."""
        f = follower(MemoryStorage(), FakeClock())
        f.close()
        with pytest.raises(RuntimeError, match="is closed"):
            f.next_checkpoint(timeout=0)


class TestCheckpointType:
    def test_is_a_str_with_a_step(self) -> None:
        """A Checkpoint compares, hashes and pickles as its path, and keeps its attributes."""
        found = Checkpoint("/r/ckpt-5", step=5, layout="tensorflow", files=["/r/ckpt-5.index"])
        assert found == "/r/ckpt-5"
        assert {found: 1}["/r/ckpt-5"] == 1  # type: ignore[index]
        assert found.name == "ckpt-5"
        assert not found.held
        again = pickle.loads(pickle.dumps(found))
        assert (again, again.step, again.layout, again.files) == (
            "/r/ckpt-5",
            5,
            "tensorflow",
            ("/r/ckpt-5.index",),
        )
        assert repr(found) == "Checkpoint('/r/ckpt-5', step=5, layout='tensorflow')"
        assert type(found.path) is str


class FailingListing(MemoryStorage):
    """A directory whose listing fails every time (an unreachable mount, a revoked bucket)."""

    def listdir(self) -> dict[str, Any]:
        self.calls["listdir"] += 1
        raise OSError(5, "Input/output error")


class TestRepeatedErrors:
    def test_a_listing_failing_at_every_poll_is_summarised_and_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The first FULL_LOGS failures are logged with their traceback, later ones as one
        summary line at each power of ten or once a minute (of the follower's clock), and one
        more when the follower is closed; every failure is still counted, the first 64 kept."""
        storage, clock = FailingListing(), FakeClock()
        looks = 300  # one a second of fake time: 5 minutes
        caplog.set_level(logging.WARNING, logger="tickwork._checkpoints._watching")
        with follower(storage, clock, poll_interval=1.0) as f:
            for _ in range(looks):
                assert f.next_checkpoint(timeout=0) is None
                clock.advance(1.0)
            stats = f.statistics()
            assert storage.calls["listdir"] == looks
            assert stats.errors == looks
            assert len(f.errors) == DEFAULT_KEEP
            assert all(isinstance(e, OSError) for e in f.errors)
        lines = [r for r in caplog.records if r.name == "tickwork._checkpoints._watching"]
        full = [r for r in lines if r.exc_info is not None]
        summaries = [r.getMessage() for r in lines if r.exc_info is None]
        assert len(full) == FULL_LOGS
        assert "the directory listing raised OSError (error 1); will retry" in full[0].getMessage()
        # At 10 and 100 (powers of ten), 60 s after the last line, and the last one at close.
        counts = [int(n) for m in summaries for n in re.findall(r"has failed (\d+) times", m)]
        assert counts == [10, 70, 100, 160, 220, 280, looks]
        assert "Input/output error" in summaries[0]
        assert f"has failed {looks} times" in summaries[-1]
        assert summaries[-1].endswith("no longer followed")

    def test_a_checkpoint_failing_to_be_read_at_every_look_is_summarised(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A checkpoint whose files cannot be read (permission denied) is looked at again at
        every poll: logged in full FULL_LOGS times, then summarised; counted each time, pending,
        and handed out once it can be read."""
        storage, clock = UnreadableFiles(), FakeClock()
        torch_files(storage, 3)
        looks = 120
        caplog.set_level(logging.WARNING, logger="tickwork._checkpoints._completeness")
        with follower(storage, clock, poll_interval=1.0) as f:
            for _ in range(looks):
                assert f.next_checkpoint(timeout=0) is None
                clock.advance(1.0)
            assert f.statistics().errors == storage.calls["read_at"] == looks  # one per poll
            assert f.pending == 1
            storage.readable = True
            found = f.next_checkpoint(timeout=0)
            assert found is not None
            assert found.step == 3
        lines = [r for r in caplog.records if r.name == "tickwork._checkpoints._completeness"]
        assert len([r for r in lines if r.exc_info is not None]) == FULL_LOGS
        assert "/mem/run/model_step_3.pt': examining a checkpoint raised PermissionError" in (
            lines[0].getMessage()
        )
        summaries = [r.getMessage() for r in lines if r.exc_info is None]
        counts = [int(n) for m in summaries for n in re.findall(r"has failed (\d+) times", m)]
        assert counts == [10, 70, 100, looks]  # powers of ten, 60 s after a line, at close
        assert summaries[-1].endswith("no longer followed")


class UnreadableFiles(MemoryStorage):
    """Files that cannot be read until ``readable`` is set."""

    readable = False

    def read_at(self, relpath: str, offset: int, size: int) -> bytes:
        if not self.readable:
            self.calls["read_at"] += 1
            raise PermissionError(13, "Permission denied", relpath)
        return super().read_at(relpath, offset, size)
