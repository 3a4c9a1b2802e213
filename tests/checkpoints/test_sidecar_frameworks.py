"""SidecarEvaluator end to end with real frameworks: a training process (a subprocess) saves
checkpoints with real TensorFlow or PyTorch while the evaluator, in this process, loads each one
with the same framework and computes a loss on held-out data."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tickwork import Checkpoint, EndReason, SidecarEvaluator

LIMIT = 100.0  # seconds; only reached when something is wrong
STEPS = 8


def start_training(script: str, directory: Path) -> subprocess.Popen[str]:
    """Runs ``script`` (which saves STEPS checkpoints, then writes DONE) in a subprocess."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(directory), str(STEPS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait(process: subprocess.Popen[str]) -> None:
    try:
        out, _ = process.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    assert process.returncode == 0, out


@pytest.mark.tensorflow
def test_tensorflow_checkpoint_manager(tmp_path: Path) -> None:
    """Checkpoints saved by tf.train.CheckpointManager while the evaluator follows: every one
    is restored by TensorFlow, in order, and its loss is the one its weights give; the done
    marker ends the evaluator."""
    tf = pytest.importorskip("tensorflow")
    training = start_training(
        """
        import pathlib, sys, time
        import tensorflow as tf
        directory, steps = sys.argv[1], int(sys.argv[2])
        weight = tf.Variable(0.0)
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(weight=weight), directory, max_to_keep=None
        )
        for step in range(1, steps + 1):
            weight.assign(float(step))  # "training": the weight after step k is k
            manager.save(checkpoint_number=step)
            time.sleep(0.05)
        pathlib.Path(directory, "DONE").touch()
        """,
        tmp_path,
    )
    inputs = tf.constant([1.0, 2.0, 3.0])
    targets = tf.constant([4.0, 8.0, 12.0])  # the best weight is 4

    def evaluate(checkpoint: Checkpoint) -> float:
        weight = tf.Variable(-1.0)
        tf.train.Checkpoint(weight=weight).restore(checkpoint).assert_consumed()
        return float(tf.reduce_mean(tf.square(weight * inputs - targets)))

    evaluator: SidecarEvaluator[float] = SidecarEvaluator(
        tmp_path, evaluate, done_marker="DONE", stall_timeout=LIMIT
    )
    with evaluator:
        wait(training)
        assert evaluator.join(LIMIT)
    results = evaluator.results()
    assert [r.step for r in results] == list(range(1, STEPS + 1))
    expected = [(step - 4.0) ** 2 * (1 + 4 + 9) / 3 for step in range(1, STEPS + 1)]
    assert [r.value for r in results] == pytest.approx(expected)
    stats = evaluator.statistics()
    assert (stats.end_reason, stats.failed, stats.skipped) == (EndReason.DONE, 0, 0)
    assert stats.follower.layout == "tensorflow"


@pytest.mark.torch
def test_torch_save_in_place(tmp_path: Path) -> None:
    """torch.save writing straight into its final name (no rename) while the evaluator
    follows: each file is loaded only once complete, by torch.load, and the loss of the
    nn.Linear it holds is computed; the done marker ends the evaluator."""
    torch = pytest.importorskip("torch")
    training = start_training(
        """
        import pathlib, sys, time
        import torch
        directory, steps = sys.argv[1], int(sys.argv[2])
        model = torch.nn.Linear(64, 1, bias=False)
        for step in range(1, steps + 1):
            with torch.no_grad():
                model.weight.fill_(float(step))
            state = {"model": model.state_dict(), "padding": torch.zeros(256, 1024)}
            torch.save(state, f"{directory}/epoch=0-step={step}.ckpt")  # about 1 MB, in place
            time.sleep(0.05)
        pathlib.Path(directory, "DONE").touch()
        """,
        tmp_path,
    )
    inputs = torch.ones(16, 64) / 64
    targets = torch.full((16, 1), 3.0)

    def evaluate(checkpoint: Checkpoint) -> float:
        model = torch.nn.Linear(64, 1, bias=False)
        model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(inputs), targets))

    loads: list[Any] = []
    evaluator: SidecarEvaluator[float] = SidecarEvaluator(
        tmp_path, evaluate, done_marker="DONE", on_result=loads.append, stall_timeout=LIMIT
    )
    with evaluator:
        wait(training)
        assert evaluator.join(LIMIT)
    assert [e.step for e in loads] == list(range(1, STEPS + 1))
    assert all(e.attempts == 1 for e in loads)  # never handed out half-written
    expected = [(step - 3.0) ** 2 for step in range(1, STEPS + 1)]
    assert [e.value for e in loads] == pytest.approx(expected)
    assert evaluator.end_reason is EndReason.DONE
