"""Orbax step directories written by a real orbax.checkpoint.CheckpointManager (with JAX)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import tickwork

ocp = pytest.importorskip("orbax.checkpoint")
jnp = pytest.importorskip("jax.numpy")

pytestmark = pytest.mark.jax

LIMIT = 60.0  # seconds; only reached when something is wrong


@pytest.mark.parametrize("prefix", [None, "ckpt"])
def test_async_saves_followed_and_restorable(tmp_path: Path, prefix: str | None) -> None:
    """Orbax saves asynchronously into temporary directories and renames them: every step is
    handed out once, only after the rename, and restores."""
    options = ocp.CheckpointManagerOptions(step_prefix=prefix)
    saver = ocp.CheckpointManager(tmp_path, options=options)

    def train() -> None:
        for step in range(6):
            saver.save(step, args=ocp.args.StandardSave({"w": jnp.full((256,), step)}))
        saver.wait_until_finished()

    thread = threading.Thread(target=train)
    reader = ocp.StandardCheckpointer()
    seen = []
    with tickwork.checkpoints_iterator(
        tmp_path, timeout=LIMIT, skip_to_latest=False, layout="orbax"
    ) as found:
        thread.start()
        for path in found:
            assert ".orbax-checkpoint-tmp" not in path
            restored = reader.restore(Path(path) / "default")
            assert int(restored["w"][0]) == path.step
            seen.append(path.step)
            if path.step == 5:
                break
    thread.join(LIMIT)
    saver.close()
    assert seen == list(range(6))


def test_auto_detects_orbax(tmp_path: Path) -> None:
    """A directory of Orbax steps is recognised without naming the layout."""
    saver = ocp.CheckpointManager(tmp_path)
    saver.save(3, args=ocp.args.StandardSave({"w": jnp.ones(4)}))
    saver.wait_until_finished()
    saver.close()
    latest = tickwork.latest_checkpoint(tmp_path)
    assert latest == str(tmp_path / "3")
    assert latest is not None
    assert latest.layout == "orbax"
