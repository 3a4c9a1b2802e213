"""The public surface: exports and argument checks of TensorFlow's three functions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import tickwork

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
        (lambda d: tickwork.checkpoints_iterator(d, timeout=-1), "'timeout' must be"),
        (lambda d: tickwork.checkpoints_iterator(d, timeout=math.inf), "'timeout' must be"),
        (lambda d: tickwork.checkpoints_iterator(d, -0.5), "'min_interval_secs' must be"),
        (lambda d: tickwork.checkpoints_iterator(d, math.nan), "'min_interval_secs' must be"),
        (lambda d: tickwork.wait_for_new_checkpoint(d, None, math.nan), "'seconds_to_sleep'"),
        (lambda d: tickwork.wait_for_new_checkpoint(d, None, 0), "'seconds_to_sleep'"),
        (lambda d: tickwork.wait_for_new_checkpoint(d, timeout=-2), "'timeout' must be"),
        (lambda d: tickwork.checkpoints_iterator(d, poll_interval=-1), "'poll_interval'"),
        (lambda d: tickwork.checkpoints_iterator(d, settle_secs=math.nan), "'settle_secs'"),
    ],
)
def test_bad_durations_name_the_argument(tmp_path: Path, call: Any, message: str) -> None:
    """Negative, NaN and infinite durations are refused at the call, naming the argument."""
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
