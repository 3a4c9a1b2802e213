"""The inotify backend on a real directory, the stop relay, and the polling fallbacks."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from ckpt_helpers import fakes

import tickwork
from tickwork._checkpoints import _follower
from tickwork._checkpoints._events import InotifyBackend, WatchfilesBackend, inotify_available
from tickwork._clock import relayed_stop
from tickwork._sync import SignalSafeEvent

REAL_WAIT = 10.0  # real seconds; reached only on failure

needs_inotify = pytest.mark.skipif(not inotify_available(), reason="Linux inotify only")


class Batches:
    """Runs a backend's watch in a thread and hands its batches over one by one."""

    def __init__(self, batches: Iterator[Collection[str]]) -> None:
        self._items: list[Collection[str]] = []
        self._cond = threading.Condition()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(batches,), daemon=True)
        self._thread.start()

    def _run(self, batches: Iterator[Collection[str]]) -> None:
        try:
            for batch in batches:
                with self._cond:
                    self._items.append(batch)
                    self._cond.notify_all()
        finally:
            self.ended.set()

    def ready(self) -> None:
        """Wait for the first batch: the watch is in place."""
        with self._cond:
            assert self._cond.wait_for(lambda: bool(self._items), REAL_WAIT)

    def until(self, wanted: str) -> set[str]:
        """Every path seen until ``wanted`` is among them."""
        seen: set[str] = set()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: wanted in seen.union(*self._items) or self.ended.is_set(), REAL_WAIT
            )
            seen = seen.union(*self._items)
        assert ok, f"{wanted!r} not seen; got {sorted(seen)}"
        assert wanted in seen
        return seen

    def join(self) -> bool:
        self._thread.join(REAL_WAIT)
        return not self._thread.is_alive()


@needs_inotify
class TestInotifyBackend:
    def test_created_closed_renamed_and_deleted_entries_are_reported(self, tmp_path: Path) -> None:
        """Each change of a top-level entry names it; the first batch says the watch is in."""
        stop = SignalSafeEvent()
        batches = Batches(InotifyBackend().watch(str(tmp_path), stop))
        batches.ready()
        try:
            (tmp_path / "a.pt").write_bytes(b"x")
            assert str(tmp_path / "a.pt") in batches.until(str(tmp_path / "a.pt"))
            os.rename(tmp_path / "a.pt", tmp_path / "b.pt")
            batches.until(str(tmp_path / "b.pt"))
            (tmp_path / "b.pt").unlink()
            (tmp_path / "c").mkdir()
            batches.until(str(tmp_path / "c"))
        finally:
            stop.set()
        assert batches.join()

    def test_a_tickwork_stop_ends_the_watch_at_once(self, tmp_path: Path) -> None:
        """A stop that is a tickwork event wakes select() through the self-pipe."""
        stop = SignalSafeEvent()
        batches = Batches(InotifyBackend().watch(str(tmp_path), stop))
        batches.ready()
        threading.Timer(0.05, stop.set).start()
        assert batches.ended.wait(REAL_WAIT)

    def test_a_removed_directory_ends_the_watch(self, tmp_path: Path) -> None:
        """The directory going away is reported as the directory itself, and the watch ends."""
        directory = tmp_path / "run"
        directory.mkdir()
        stop = SignalSafeEvent()
        batches = Batches(InotifyBackend().watch(str(directory), stop))
        batches.ready()
        try:
            shutil.rmtree(directory)
            assert batches.ended.wait(REAL_WAIT)
            assert str(directory) in batches.until(str(directory))
        finally:
            stop.set()

    def test_a_missing_directory_is_an_error_naming_it(self, tmp_path: Path) -> None:
        """inotify_add_watch failing raises OSError with the path (the follower then polls)."""
        with pytest.raises(OSError, match="inotify_add_watch") as raised:
            next(iter(InotifyBackend().watch(str(tmp_path / "none"), SignalSafeEvent())))
        assert raised.value.filename == str(tmp_path / "none")


class TestRelayedStop:
    def test_a_foreign_event_sets_the_relay_event(self) -> None:
        """A plain threading.Event is relayed by a thread blocked on it: no polling, at once."""
        foreign = threading.Event()
        relay = relayed_stop(foreign, None, name="test")
        try:
            assert not relay.event.is_set()
            threading.Timer(0.05, foreign.set).start()
            assert relay.event.wait(REAL_WAIT)
        finally:
            relay.close()

    def test_own_events_are_subscribed_and_no_thread_starts(self) -> None:
        """tickwork events need no thread; an already-set stop sets the event at once."""
        own, done = SignalSafeEvent(), threading.Event()
        done.set()
        relay = relayed_stop(own, name="test")
        assert relay.running_thread_names() == []
        own.set()
        assert relay.event.is_set()
        assert relayed_stop(done, name="test").event.is_set()

    def test_closing_ends_the_relay_thread(self) -> None:
        """close() ends the thread within one slice."""
        relay = relayed_stop(threading.Event(), name="test")
        [name] = relay.running_thread_names()
        assert name.startswith("tickwork:stop relay")
        relay.close()
        thread = next(t for t in threading.enumerate() if t.name == name)
        thread.join(REAL_WAIT)
        assert not thread.is_alive()


class TestDefaults:
    @needs_inotify
    def test_a_plain_follower_on_linux_uses_inotify_and_stops_at_once(self, tmp_path: Path) -> None:
        """watch='auto' on a local directory is event-driven (inotify) and a stop ends it."""
        stop = threading.Event()
        with tickwork.CheckpointFollower(tmp_path, stop=stop) as f:
            assert f.start(timeout=REAL_WAIT)
            assert f.mode == "events"
            (tmp_path / "model_step_1.pt").write_bytes(b"\x00")  # not a zip: pending
            threading.Timer(0.05, stop.set).start()
            assert f.next_checkpoint(timeout=REAL_WAIT) is None

    def test_no_event_backend_polls_and_says_so(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Where no events exist, watch='auto' polls, with one log line."""
        monkeypatch.setattr(_follower, "default_backend", lambda: None)
        caplog.set_level(logging.INFO, logger="tickwork._checkpoints._watching")
        with tickwork.CheckpointFollower(tmp_path, poll_interval=0.05) as f:
            assert f.start(timeout=REAL_WAIT)
            assert f.mode == "poll"
        assert [r.message for r in caplog.records if "polling" in r.message] == [
            f"no filesystem events on this system (pip install watchfiles): polling "
            f"{str(tmp_path)!r} every 0.05 s"
        ]

    def test_the_watchfiles_backend_still_follows(self, tmp_path: Path) -> None:
        """The backend macOS and Windows use, run here on a real directory."""
        pytest.importorskip("watchfiles")
        with (
            fakes(events=WatchfilesBackend()),
            tickwork.CheckpointFollower(tmp_path, watch="events", settle_secs=0) as f,
        ):
            assert f.start(timeout=REAL_WAIT)
            (tmp_path / "model_step_3.safetensors").write_bytes(b"\x02" + b"\x00" * 7 + b"{}")
            found = f.next_checkpoint(timeout=REAL_WAIT)
            assert found is not None
            assert found.step == 3
