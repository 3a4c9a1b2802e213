"""Real writers followed beside training, and the promises checked on each run.

Each ``run_*`` function trains (or saves) with a real library's own saving code while a
:class:`tickwork.CheckpointFollower` in never-miss mode (``skip_to_latest=False``) runs in a thread
beside it and loads every checkpoint it is handed with the library's own loader. It returns an
:class:`Outcome`; :func:`problems` lists the promises broken: order by step, completeness at
yield time (the load failed), and accounting (every checkpoint written is yielded or counted as
deleted before reached, exactly once). Used once per writer by test_ckpt_writers.py and many
times by test_writers_stress.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tickwork
from tickwork import Checkpoint, CheckpointFollower

LIMIT = 120.0  # seconds; only reached when something is wrong
_DRAIN = 1.5  # seconds the consumer keeps asking once training is done


@dataclass
class Outcome:
    written: list[int]
    yielded: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the consumer's loads that failed
    stats: tickwork.FollowerStats | None = None
    layout: str | None = None


def problems(outcome: Outcome, *, deletions: bool = False) -> list[str]:
    """The promises ``outcome`` breaks (empty: all kept)."""
    found = list(outcome.failures)
    if outcome.yielded != sorted(outcome.yielded):
        found.append(f"out of step order: {outcome.yielded}")
    if len(set(outcome.yielded)) != len(outcome.yielded):
        found.append(f"yielded twice: {outcome.yielded}")
    stats = outcome.stats
    assert stats is not None
    if stats.yielded != len(outcome.yielded):
        found.append(f"statistics say {stats.yielded} yielded, the consumer got {outcome.yielded}")
    accounted = stats.yielded + stats.deleted_before_reached
    if accounted != len(outcome.written) or stats.skipped or stats.rejected:
        found.append(
            f"{len(outcome.written)} written, {stats.yielded} yielded + "
            f"{stats.deleted_before_reached} deleted (skipped {stats.skipped}, rejected "
            f"{stats.rejected}): yielded {outcome.yielded}"
        )
    if not deletions and outcome.yielded != outcome.written:
        found.append(f"written {outcome.written}, yielded {outcome.yielded}")
    return found


def follow_beside(
    directory: Path,
    train: Callable[[], list[int]],
    consume: Callable[[Checkpoint], None],
    **settings: Any,
) -> Outcome:
    """Run ``train`` (it returns the steps it saved) with a follower thread beside it handing
    every checkpoint to ``consume``; once training is done, what it wrote is drained."""
    directory.mkdir(parents=True, exist_ok=True)
    follower = CheckpointFollower(directory, skip_to_latest=False, **settings)
    done = threading.Event()
    yielded: list[int] = []
    failures: list[str] = []

    def consumer() -> None:
        while True:
            found = follower.next_checkpoint(timeout=0.1)
            if found is None:
                if not done.is_set():
                    continue
                follower.rescan()  # everything written by now is known
                found = follower.next_checkpoint(timeout=_DRAIN)
                if found is None:
                    return
            assert found.step is not None
            yielded.append(found.step)
            try:
                consume(found)
            except Exception as exc:  # the promise broken: it was not complete when handed out
                failures.append(f"step {found.step} did not load: {exc!r}")

    thread = threading.Thread(target=consumer, name="writers-consumer", daemon=True)
    with follower:
        assert follower.start(LIMIT)
        thread.start()
        try:
            written = train()
        finally:
            done.set()
            thread.join(LIMIT)
        assert not thread.is_alive(), "the consumer did not end"
        return Outcome(written, yielded, failures, follower.statistics(), follower.layout)


# -- Hugging Face Trainer ---------------------------------------------------------------------


def run_huggingface(
    directory: Path,
    *,
    save_steps: int,
    max_steps: int = 20,
    save_total_limit: int | None = None,
    hold: bool = False,
    slow: float = 0.0,
) -> Outcome:
    """A tiny GPT-2 (from a config: no download) trained by transformers' Trainer, saving every
    ``save_steps``; the consumer loads trainer_state.json, the safetensors weights and the
    optimizer state (skipped, when the checkpoint is not held, if rotation deleted it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import safetensors.torch
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]

    class Data(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return 64

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids = torch.tensor([(i + j) % 50 for j in range(8)])
            return {"input_ids": ids, "labels": ids}

    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=16)
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        str(directory),
        max_steps=max_steps,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        logging_steps=10_000,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    saved: list[int] = []

    class Saved(transformers.TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            saved.append(state.global_step)

    def train() -> list[int]:
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=Data(), callbacks=[Saved()]
        )
        trainer.train()
        return saved

    def consume(checkpoint: Checkpoint) -> None:
        path = Path(checkpoint)
        try:
            state = json.loads((path / "trainer_state.json").read_text())
            assert state["global_step"] == checkpoint.step
            safetensors.torch.load_file(path / "model.safetensors")
            torch.load(path / "optimizer.pt", weights_only=True)
        except FileNotFoundError:
            if hold or save_total_limit is None:
                raise
        time.sleep(slow)

    return follow_beside(directory, train, consume, hold=hold)


# -- torch.distributed.checkpoint -------------------------------------------------------------


def dcp_state(step: int) -> dict[str, Any]:
    import torch

    return {"w": torch.full((64, 64), float(step)), "step": torch.tensor(step)}


def dcp_load(checkpoint: Checkpoint) -> None:
    import torch.distributed.checkpoint as dcp

    state = dcp_state(0)
    dcp.load(state, checkpoint_id=str(checkpoint))  # type: ignore[attr-defined]
    assert int(state["step"]) == checkpoint.step
    assert float(state["w"][0, 0]) == checkpoint.step


def run_dcp(directory: Path, *, steps: int = 8, name: str = "step_{}") -> Outcome:
    """torch.distributed.checkpoint.save (single process) of each step into its directory."""
    import torch.distributed.checkpoint as dcp

    def train() -> list[int]:
        for step in range(1, steps + 1):
            dcp.save(dcp_state(step), checkpoint_id=str(directory / name.format(step)))  # type: ignore[attr-defined]
        return list(range(1, steps + 1))

    return follow_beside(directory, train, dcp_load)


DCP_KILLED = """
import os, signal, sys, torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter

class Dies(FileSystemWriter):
    def finish(self, metadata, results):  # the shards are written; .metadata comes next
        os.kill(os.getpid(), signal.SIGKILL)

dcp.save({"w": torch.ones(64, 64)}, storage_writer=Dies(sys.argv[1]))
"""


def kill_dcp_writer(path: Path) -> None:
    """A process saving with DCP, killed between its shards and ``.metadata``."""
    process = subprocess.run(
        [sys.executable, "-c", DCP_KILLED, str(path)],
        capture_output=True,
        timeout=LIMIT,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr


# -- single files killed mid-write --------------------------------------------------------------

KILLED_MID_WRITE = """
import io, os, signal, sys
kind, path, fraction = sys.argv[1], sys.argv[2], float(sys.argv[3])
import torch
tensors = {"w": torch.arange(200_000, dtype=torch.float32)}
if kind == "torch":
    buffer = io.BytesIO(); torch.save(tensors, buffer); data = buffer.getvalue()
else:
    import safetensors.torch
    data = safetensors.torch.save(tensors)
cut = int(len(data) * fraction)
with open(path, "wb") as f:
    f.write(data[:cut]); f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # the kernel closes the file as it would a finished one
"""


def kill_file_writer(kind: str, path: Path, fraction: float) -> None:
    process = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, kind, str(path), str(fraction)],
        capture_output=True,
        timeout=LIMIT,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr


def run_killed_file(directory: Path, kind: str, fraction: float) -> Outcome:
    """Steps 1 and 2 saved, step 3's writer killed mid-write, then the restarted writer (resumed
    from step 2) saves step 3 again, in place, and step 4: the cut step 3 is never handed out,
    and all four come in order. (A restarted writer that goes on to step 4 without saving step 3
    again has moved on: test_ckpt_abandon.py.)"""
    import torch

    suffix = ".pt" if kind == "torch" else ".safetensors"

    def save(step: int) -> None:
        tensors = {"w": torch.full((1000,), float(step))}
        if kind == "torch":
            torch.save(tensors, directory / f"step_{step}{suffix}")
        else:
            import safetensors.torch

            safetensors.torch.save_file(tensors, directory / f"step_{step}{suffix}")

    def load(checkpoint: Checkpoint) -> None:
        if kind == "torch":
            tensors = torch.load(str(checkpoint), weights_only=True)
        else:
            import safetensors.torch

            tensors = safetensors.torch.load_file(str(checkpoint))
        assert float(tensors["w"][0]) == checkpoint.step

    def train() -> list[int]:
        save(1)
        save(2)
        kill_file_writer(kind, directory / f"step_3{suffix}", fraction)
        time.sleep(0.3)  # the restart; the consumer must not get the cut step 3 meanwhile
        save(3)  # the restarted writer saves step 3 again, in place
        save(4)
        return [1, 2, 3, 4]

    return follow_beside(directory, train, load)


# -- Lightning, Keras, TensorFlow, Orbax ----------------------------------------------------------


def run_lightning(directory: Path, *, steps: int = 12) -> Outcome:
    """Lightning's ModelCheckpoint saving every training step (``step=<n>.ckpt``)."""
    import lightning
    import torch

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, _index: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(steps * 2, 4), torch.randn(steps * 2, 1))

    def train() -> list[int]:
        saver = lightning.pytorch.callbacks.ModelCheckpoint(
            dirpath=directory, filename="{step}", every_n_train_steps=1, save_top_k=-1
        )
        trainer = lightning.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[saver],
        )
        trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=2))
        return list(range(1, steps + 1))

    def load(checkpoint: Checkpoint) -> None:
        state = torch.load(str(checkpoint), weights_only=False)
        assert state["global_step"] == checkpoint.step

    return follow_beside(directory, train, load)


def run_keras(directory: Path, *, epochs: int = 6) -> Outcome:
    """Keras's ModelCheckpoint writing a .keras archive every epoch."""
    import zipfile

    import keras
    import numpy as np

    def train() -> list[int]:
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
        net.compile(optimizer="sgd", loss="mse")
        x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
        saver = keras.callbacks.ModelCheckpoint(str(directory / "model_{epoch:02d}.keras"))
        net.fit(x, x[:, :1], epochs=epochs, batch_size=16, verbose=0, callbacks=[saver])
        return list(range(1, epochs + 1))

    def load(checkpoint: Checkpoint) -> None:
        with zipfile.ZipFile(str(checkpoint)) as archive:  # the archive Keras loads from
            assert archive.testzip() is None
            assert "model.weights.h5" in archive.namelist()

    outcome = follow_beside(directory, train, load)
    for path in sorted(directory.glob("*.keras")):  # and Keras itself loads them all
        keras.models.load_model(path)
    return outcome


def run_tensorflow(directory: Path, *, steps: int = 8) -> Outcome:
    """tf.train.CheckpointManager saving every step (keeping all)."""
    import tensorflow as tf

    def train() -> list[int]:
        variable = tf.Variable(0.0)
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(v=variable), str(directory), max_to_keep=None
        )
        for step in range(1, steps + 1):
            variable.assign(float(step))
            manager.save()
        return list(range(1, steps + 1))

    def load(checkpoint: Checkpoint) -> None:
        variable = tf.Variable(-1.0)
        tf.train.Checkpoint(v=variable).restore(str(checkpoint)).assert_consumed()
        assert float(variable.numpy()) == checkpoint.step

    return follow_beside(directory, train, load)


def run_orbax(directory: Path, *, steps: int = 6) -> Outcome:
    """Orbax's async CheckpointManager (temporary directories renamed into place)."""
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    def train() -> list[int]:
        saver = ocp.CheckpointManager(directory)
        for step in range(1, steps + 1):
            saver.save(step, args=ocp.args.StandardSave({"w": jnp.full((256,), step)}))
        saver.wait_until_finished()
        saver.close()
        return list(range(1, steps + 1))

    reader = ocp.StandardCheckpointer()

    def load(checkpoint: Checkpoint) -> None:
        restored = reader.restore(Path(checkpoint) / "default")
        assert int(restored["w"][0]) == checkpoint.step

    return follow_beside(directory, train, load)


def importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
