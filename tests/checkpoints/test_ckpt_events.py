"""The event-driven path through a scripted event backend: no real filesystem, a fake clock."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from ckpt_helpers import MemoryStorage, ScriptedEvents, fakes, zip_bytes

from tickwork import CheckpointFollower
from tickwork.testing import FakeClock

REAL_WAIT = 10.0  # real seconds a test waits for a thread; reached only on failure


def follower(
    storage: MemoryStorage, clock: FakeClock, events: ScriptedEvents, **options: Any
) -> CheckpointFollower:
    with fakes(storage, events):
        return CheckpointFollower(storage.directory, watch="events", clock=clock, **options)


class TestEvents:
    def test_a_checkpoint_named_in_an_event_is_handed_out_after_one_stat(self) -> None:
        """An event for a new file: the file is stat'ed once, assessed, handed out."""
        storage, clock, events = MemoryStorage(), FakeClock(), ScriptedEvents()
        with follower(storage, clock, events, skip_to_latest=False) as f:
            assert f.start(timeout=REAL_WAIT)
            assert f.mode == "events"
            stats_before, listings_before = storage.calls["stat"], storage.calls["listdir"]
            storage.write("model_step_7.pt", zip_bytes())
            events.push("model_step_7.pt")
            found = f.next_checkpoint(timeout=REAL_WAIT)
            assert found is not None
            assert found.step == 7
            assert storage.calls["stat"] - stats_before == 1
            assert storage.calls["listdir"] == listings_before  # no listing: only what changed
            assert f.statistics().change_batches >= 1

    def test_events_in_one_batch_come_out_in_step_order(self) -> None:
        """Several checkpoints in one batch are handed out by step; other names are ignored."""
        storage, clock, events = MemoryStorage(), FakeClock(), ScriptedEvents()
        with follower(storage, clock, events, skip_to_latest=False) as f:
            assert f.start(timeout=REAL_WAIT)
            for step in (30, 4, 12):
                storage.write(f"model_step_{step}.pt", zip_bytes())
            storage.write("notes.txt", b"not a checkpoint")
            events.push("model_step_30.pt", "notes.txt", "model_step_4.pt", "model_step_12.pt")
            steps: list[int | None] = []
            while len(steps) < 3:
                found = f.next_checkpoint(timeout=REAL_WAIT)
                assert found is not None
                steps.append(found.step)
            assert steps == [4, 12, 30]

    def test_an_incomplete_file_waits_for_its_next_event(self) -> None:
        """A half-written zip is pending; the event after its last write completes it."""
        storage, clock, events = MemoryStorage(), FakeClock(), ScriptedEvents()
        with follower(storage, clock, events) as f:
            assert f.start(timeout=REAL_WAIT)
            whole = zip_bytes()
            storage.write("model_step_1.pt", whole[: len(whole) // 2])
            events.push("model_step_1.pt")
            f.wait()  # the batch has arrived (fake time does not move)
            assert f.next_checkpoint(timeout=0) is None
            assert f.statistics().pending == 1
            storage.write("model_step_1.pt", whole)
            events.push("model_step_1.pt")
            found = f.next_checkpoint(timeout=REAL_WAIT)
            assert found is not None
            assert found.step == 1

    def test_the_directory_removed_is_waited_for_again(self) -> None:
        """An event for the directory itself, which is gone: back to waiting for it."""
        storage, clock, events = MemoryStorage(), FakeClock(), ScriptedEvents()
        with follower(storage, clock, events) as f:
            assert f.start(timeout=REAL_WAIT)
            storage.exists_dir = False
            events.push("")
            f.wait()
            assert f.next_checkpoint(timeout=0) is None
            assert f.mode == "waiting"

    def test_a_failing_backend_falls_back_to_polling(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The backend raising ends event watching: the follower polls, and says so."""
        storage, clock, events = MemoryStorage(), FakeClock(), ScriptedEvents()
        caplog.set_level(logging.WARNING)
        with follower(storage, clock, events) as f:
            assert f.start(timeout=REAL_WAIT)
            events.fail(OSError("inotify watch limit reached"))
            assert events.ended.wait(REAL_WAIT)
            storage.write("model_step_2.pt", zip_bytes())
            found = f.next_checkpoint(timeout=REAL_WAIT)
            assert found is not None
            assert found.step == 2
            assert f.mode == "poll"
            assert "falls back to polling" in caplog.text
            assert any("inotify watch limit" in str(e) for e in f.errors)

    def test_a_stop_ends_the_wait_and_the_watcher(self) -> None:
        """Setting stop ends a wait for events, and the backend's watch ends too."""
        storage, clock, events = MemoryStorage(), FakeClock(), ScriptedEvents()
        stop = threading.Event()
        with follower(storage, clock, events, stop=stop) as f:
            assert f.start(timeout=REAL_WAIT)
            timer = threading.Timer(0.05, stop.set)
            timer.start()
            try:
                assert f.next_checkpoint() is None
            finally:
                timer.cancel()
            assert events.ended.wait(REAL_WAIT)
