"""The public surface: exports and argument checks of TensorFlow's three functions."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ckpt_helpers import MemoryStorage, ScriptedEvents, fakes, zip_bytes

import tickwork
from tickwork.testing import FakeClock

CHECKPOINT_NAMES = [
    "Checkpoint",
    "CheckpointFollower",
    "CheckpointIterator",
    "CheckpointPattern",
    "FollowerStats",
    "Layout",
    "checkpoints_iterator",
    "latest_checkpoint",
    "wait_for_new_checkpoint",
]


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_exported(name: str) -> None:
    """Each checkpoint-following name is listed in tickwork.__all__ and is a real object."""
    assert name in tickwork.__all__
    assert getattr(tickwork, name).__module__ == "tickwork"  # the public home, never a private path


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: tickwork.checkpoints_iterator(d, timeout=math.nan), "'timeout' must be"),
        (lambda d: tickwork.checkpoints_iterator(d, math.nan), "'min_interval_secs' must be"),
        (lambda d: tickwork.wait_for_new_checkpoint(d, None, math.nan), "'seconds_to_sleep'"),
        (lambda d: tickwork.wait_for_new_checkpoint(d, None, -1), "'seconds_to_sleep'"),
        (lambda d: tickwork.wait_for_new_checkpoint(d, None, math.inf), "'seconds_to_sleep'"),
        (lambda d: tickwork.wait_for_new_checkpoint(d, timeout=math.nan), "'timeout' must be"),
        (lambda d: tickwork.checkpoints_iterator(d, poll_interval=-1), "'poll_interval'"),
        (lambda d: tickwork.checkpoints_iterator(d, settle_secs=math.nan), "'settle_secs'"),
    ],
)
def test_bad_durations_name_the_argument(tmp_path: Path, call: Any, message: str) -> None:
    """NaN durations (and a negative sleep, as time.sleep in TensorFlow) are refused at the
    call, naming the argument; what TensorFlow accepts is in TestTensorFlowDurations."""
    with pytest.raises(ValueError, match=message):
        call(tmp_path)


def test_bad_timeout_fn_and_storage_options(tmp_path: Path) -> None:
    """A timeout_fn that cannot be called, and storage_options for a local path, are refused."""
    with pytest.raises(TypeError, match="'timeout_fn' must be callable"):
        tickwork.checkpoints_iterator(tmp_path, timeout_fn=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'storage_options' applies to remote"):
        tickwork.latest_checkpoint(tmp_path, storage_options={"key": "x"})
    with pytest.raises(TypeError, match="'checkpoint_dir' must be a str"):
        tickwork.latest_checkpoint(5)  # type: ignore[arg-type]


def test_wait_for_new_checkpoint_on_memory_filesystem() -> None:
    """Any fsspec filesystem works; a missing directory times out with None."""
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/ckpt-api/run/model_step_3.safetensors", b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    found = tickwork.wait_for_new_checkpoint("memory://ckpt-api/run", timeout=5)
    assert found == "memory://ckpt-api/run/model_step_3.safetensors"
    assert tickwork.wait_for_new_checkpoint("memory://ckpt-api/none", timeout=0.05) is None


# -- what TensorFlow accepts, with its meaning (tensorflow/python/training/checkpoint_utils.py) ---

REAL_WAIT = 10.0  # real seconds a test waits for a thread; reached only on failure


def bounded(call: Callable[[], object]) -> object:
    """``call()`` in a thread, which must end within REAL_WAIT real seconds: on a FakeClock that
    nobody advances, a call that waits at all never ends."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(REAL_WAIT)
    assert not thread.is_alive(), "the call waited on a clock that does not move"
    assert result, "the call raised (see the thread's exception above)"
    return result[0]


def write_checkpoint(directory: Path, step: int) -> None:
    """A complete torch.save-style zip, renamed into place."""
    temporary = directory / f".model_step_{step}.pt.tmp"
    temporary.write_bytes(zip_bytes())
    os.replace(temporary, directory / f"model_step_{step}.pt")


class TestTensorFlowDurations:
    def test_a_negative_timeout_is_one_look(self, tmp_path: Path) -> None:
        """wait_for_new_checkpoint(timeout=-2): TensorFlow's deadline is already past, so it
        looks once and returns what it found (None when nothing), never waiting."""
        clock = FakeClock()

        def call() -> object:
            return tickwork.wait_for_new_checkpoint(tmp_path, timeout=-2, clock=clock, watch="poll")

        assert bounded(call) is None
        write_checkpoint(tmp_path, 3)
        found = bounded(call)
        assert isinstance(found, tickwork.Checkpoint)
        assert found.step == 3

    def test_an_iterator_with_a_negative_timeout_times_out_at_once(self, tmp_path: Path) -> None:
        """checkpoints_iterator(timeout=-1): each wait is one look; without timeout_fn it ends
        at the first, with one it asks it after each look until it says stop."""
        clock = FakeClock()
        assert (
            bounded(lambda: list(tickwork.checkpoints_iterator(tmp_path, timeout=-1, clock=clock)))
            == []
        )
        asked: list[int] = []

        def timeout_fn() -> bool:
            asked.append(1)
            return len(asked) == 3

        iterator = tickwork.checkpoints_iterator(
            tmp_path, timeout=-1, timeout_fn=timeout_fn, clock=clock
        )
        assert bounded(lambda: list(iterator)) == []
        assert len(asked) == 3

    def test_an_infinite_timeout_never_times_out(self, tmp_path: Path) -> None:
        """timeout=inf (TensorFlow: never times out): however far time moves, timeout_fn is not
        asked and the iterator goes on waiting, until the stop ends it."""
        clock, stop = FakeClock(), threading.Event()
        asked: list[int] = []
        iterator = tickwork.checkpoints_iterator(
            tmp_path,
            timeout=math.inf,
            timeout_fn=lambda: asked.append(1),
            stop=stop,
            clock=clock,
            watch="poll",
        )
        result: list[list[tickwork.Checkpoint]] = []
        thread = threading.Thread(target=lambda: result.append(list(iterator)), daemon=True)
        thread.start()
        try:
            for _ in range(3):
                clock.wait_for_sleepers(1, timeout=REAL_WAIT)
                clock.advance(1e9)  # past any finite timeout
            clock.wait_for_sleepers(1, timeout=REAL_WAIT)
            assert asked == []
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(REAL_WAIT)
        assert result == [[]]

    def test_a_negative_min_interval_is_no_wait(self, tmp_path: Path) -> None:
        """min_interval_secs=-0.5 (TensorFlow: a negative time to the next one, no sleep): the
        next checkpoint comes without the clock moving."""
        clock = FakeClock()
        write_checkpoint(tmp_path, 1)
        iterator = tickwork.checkpoints_iterator(
            tmp_path, -0.5, clock=clock, watch="poll", settle_secs=0, skip_to_latest=False
        )
        first = bounded(lambda: next(iterator))
        assert isinstance(first, tickwork.Checkpoint)
        assert first.step == 1
        write_checkpoint(tmp_path, 2)
        iterator.follower.rescan()  # known now, so only the min_interval wait could delay it
        second = bounded(lambda: next(iterator))
        assert isinstance(second, tickwork.Checkpoint)
        assert second.step == 2
        iterator.close()

    def test_an_infinite_min_interval_waits_for_the_stop(self, tmp_path: Path) -> None:
        """min_interval_secs=inf: the first checkpoint, then a wait without a limit (not an
        OverflowError) that only the stop ends, even with the next checkpoint there."""
        clock, stop = FakeClock(), threading.Event()
        write_checkpoint(tmp_path, 1)
        iterator = tickwork.checkpoints_iterator(
            tmp_path, math.inf, stop=stop, clock=clock, watch="poll", settle_secs=0
        )
        assert next(iterator).step == 1
        write_checkpoint(tmp_path, 2)
        rest: list[list[tickwork.Checkpoint]] = []
        thread = threading.Thread(target=lambda: rest.append(list(iterator)), daemon=True)
        thread.start()
        try:
            clock.wait_for_sleepers(1, timeout=REAL_WAIT)
            assert clock.next_deadline() == math.inf
            clock.advance(1e9)
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(REAL_WAIT)
        assert rest == [[]]

    def test_seconds_to_sleep_zero_polls_back_to_back(self, tmp_path: Path) -> None:
        """seconds_to_sleep=0 (TensorFlow: time.sleep(0) between looks): the directory is
        listed again and again without the clock moving, so a checkpoint written meanwhile is
        found; a FakeClock nobody advances shows that no look waited."""
        clock = FakeClock()
        result: list[object] = []
        thread = threading.Thread(
            target=lambda: result.append(
                tickwork.wait_for_new_checkpoint(
                    tmp_path, None, 0, clock=clock, watch="poll", settle_secs=0
                )
            ),
            daemon=True,
        )
        thread.start()
        write_checkpoint(tmp_path, 4)
        thread.join(REAL_WAIT)
        assert not thread.is_alive()
        assert result == [str(tmp_path / "model_step_4.pt")]

    def test_seconds_to_sleep_zero_is_interruptible(self, tmp_path: Path) -> None:
        """A back-to-back poll checks the stop at each look: setting it ends the wait (None)."""
        clock, stop = FakeClock(), threading.Event()
        result: list[object] = []
        thread = threading.Thread(
            target=lambda: result.append(
                tickwork.wait_for_new_checkpoint(
                    tmp_path, None, 0, stop=stop, clock=clock, watch="poll"
                )
            ),
            daemon=True,
        )
        thread.start()
        stop.set()
        thread.join(REAL_WAIT)
        assert not thread.is_alive()
        assert result == [None]

    def test_poll_interval_zero_with_events_does_not_busy_wait(self) -> None:
        """With the event watcher, 0 changes nothing: the follower blocks until an event (its
        wait has a deadline ahead, no listing repeats), and a missing directory is looked for
        every 0.1 s rather than in a busy loop."""
        storage, clock, events, stop = (
            MemoryStorage(),
            FakeClock(),
            ScriptedEvents(),
            threading.Event(),
        )
        storage.exists_dir = False
        with (
            fakes(storage, events),
            tickwork.CheckpointFollower(
                storage.directory, watch="events", poll_interval=0, stop=stop, clock=clock
            ) as follower,
        ):
            found: list[object] = []
            thread = threading.Thread(
                target=lambda: found.append(follower.next_checkpoint()), daemon=True
            )
            thread.start()
            try:
                clock.wait_for_sleepers(1, timeout=REAL_WAIT)  # a busy loop never waits
                assert clock.next_deadline() == pytest.approx(clock.now() + 0.1)
                storage.exists_dir = True
                clock.advance(0.1)
                clock.wait_for_sleepers(1, timeout=REAL_WAIT)
                assert follower.mode == "events"
                listings = storage.calls["listdir"]
                deadline = clock.next_deadline()
                assert deadline is not None
                assert deadline > clock.now()
                storage.write("model_step_5.pt", zip_bytes())
                events.push("model_step_5.pt")
                thread.join(REAL_WAIT)
                assert not thread.is_alive()
            finally:
                stop.set()
                thread.join(REAL_WAIT)
            assert [getattr(f, "step", None) for f in found] == [5]
            assert storage.calls["listdir"] == listings  # the event, not a listing, found it
