"""The Lightning callback against real Lightning: a real Trainer saving checkpoints with its
ModelCheckpoint while `tickwork follow` evaluates them in another process; stops (a Coordinator
from another thread, a real SIGTERM from outside) becoming the Trainer's own stop with a final
checkpoint; periodic work over the fit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import tickwork
from tickwork import TrainingStatus

from .follow_helpers import (
    LIMIT,
    drive_worker,
    evaluated_steps,
    finish,
    following,
    marker_payload,
)

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")

from tickwork.integrations.lightning import TickworkCallback  # noqa: E402

pytestmark = [
    pytest.mark.lightning,
    pytest.mark.torch,
    # Lightning's advice (num_workers, no logger, ...) is not what these tests are about.
    pytest.mark.filterwarnings("ignore::UserWarning"),
    # Lightning 2.6 still uses torch's deprecated pytree LeafSpec.
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]

WORKER = Path(__file__).with_name("_lightning_worker.py")


class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
    """A linear layer; raises at ``fail_at`` to test the error path."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.fail_at = fail_at

    def training_step(self, batch: Any, index: int) -> Any:
        if self.fail_at is not None and self.global_step == self.fail_at:
            raise ValueError("loss is nan")
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data() -> Any:
    """8 batches per epoch."""
    generator = torch.Generator().manual_seed(0)
    dataset = torch.utils.data.TensorDataset(
        torch.randn(32, 4, generator=generator), torch.randn(32, 1, generator=generator)
    )
    return torch.utils.data.DataLoader(dataset, batch_size=4)


def trainer(run: Path, callback: TickworkCallback, *extra: Any, epochs: int = 2) -> Any:
    return pl.Trainer(
        max_epochs=epochs,
        callbacks=[
            pl.callbacks.ModelCheckpoint(dirpath=run, every_n_train_steps=2, save_top_k=-1),
            *extra,
            callback,
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=True,
        accelerator="cpu",
        devices=1,
        default_root_dir=run,
    )


class StopFromAThread(pl.Callback):  # type: ignore[misc,name-defined]
    """At ``step``, another thread calls ``coord.request_stop()``."""

    def __init__(self, coord: tickwork.Coordinator, step: int) -> None:
        self.coord = coord
        self.step = step

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            thread = threading.Thread(target=self.coord.request_stop)
            thread.start()
            thread.join(LIMIT)


class TestEndToEnd:
    def test_completed_training_is_followed_to_the_end(self, tmp_path: Path) -> None:
        """Every checkpoint Lightning saves is evaluated once, in order, by `tickwork follow`
        in another process, which exits 0 when the marker says training completed."""
        run, log = tmp_path / "run", tmp_path / "log"
        with following(run, log) as process:
            callback = TickworkCallback()
            trainer(run, callback).fit(Tiny(), data())
            code, out, err = finish(process)
        assert code == 0, out + err
        assert evaluated_steps(log) == list(range(2, 17, 2))
        payload = marker_payload(run)
        assert (payload["status"], payload["step"]) == ("completed", 16)
        assert callback.training_end is not None
        assert callback.training_end.status is TrainingStatus.COMPLETED
        assert "training completed at step 16" in out

    def test_training_that_raises_ends_the_evaluator_and_says_failed(self, tmp_path: Path) -> None:
        """fit() raising: the marker is written on the error path, saying failed with the error;
        the evaluator evaluates what was saved and ends."""
        run, log = tmp_path / "run", tmp_path / "log"
        with following(run, log) as process:
            with pytest.raises(ValueError, match="loss is nan"):
                trainer(run, TickworkCallback()).fit(Tiny(fail_at=5), data())
            code, out, err = finish(process)
        assert code == 0, out + err
        assert evaluated_steps(log) == [2, 4]
        payload = marker_payload(run)
        assert payload["status"] == "failed"
        assert (payload["error_type"], payload["error_message"]) == ("ValueError", "loss is nan")
        assert "training failed at step 5" in out

    def test_a_coordinator_stop_from_another_thread_stops_and_saves(self, tmp_path: Path) -> None:
        """request_stop() from another thread sets trainer.should_stop at the next step
        boundary; the final checkpoint is saved through trainer.save_checkpoint under the
        ModelCheckpoint's name and evaluated last; the marker says stopped."""
        run, log = tmp_path / "run", tmp_path / "log"
        coord = tickwork.Coordinator()
        callback = TickworkCallback(stop=coord, save_deadline=60.0)
        fit = trainer(run, callback, StopFromAThread(coord, 5))
        with following(run, log) as process:
            fit.fit(Tiny(), data())
            code, out, err = finish(process)
        assert code == 0, out + err
        assert fit.global_step == 5
        assert callback.stopped
        assert callback.final_checkpoint == "saved"
        assert (run / "epoch=0-step=5.ckpt").exists()
        assert evaluated_steps(log) == [2, 4, 5]
        payload = marker_payload(run)
        assert (payload["status"], payload["step"]) == ("stopped", 5)
        assert payload["details"] == {"final_checkpoint": "saved"}

    def test_a_stop_on_a_saved_step_does_not_save_twice(self, tmp_path: Path) -> None:
        """A stop at a step the ModelCheckpoint saves: one save; an existing file is kept."""
        run = tmp_path / "run"
        callback = TickworkCallback(stop=(event := threading.Event()))
        event.set()
        fit = trainer(run, callback)
        fit.fit(Tiny(), data())
        assert fit.global_step == 1  # stopped at the first boundary
        assert callback.final_checkpoint == "saved"
        event.clear()
        run2 = tmp_path / "run2"
        again = TickworkCallback(stop=(stop_at_2 := StopAt(2)))
        fit2 = trainer(run2, again)
        fit2.fit(Tiny(), data())
        assert stop_at_2.asked == [1, 2]
        assert again.final_checkpoint == "saved"
        assert sorted(os.listdir(run2)) == ["DONE", "epoch=0-step=2.ckpt"]
        # it skipped step 2 (Lightning's own attribute)
        assert fit2.checkpoint_callback._last_global_step_saved == 2  # noqa: SLF001
        run3 = tmp_path / "run3"  # a restart that reaches a step whose file exists
        run3.mkdir()
        (run3 / "epoch=0-step=2.ckpt").write_bytes(b"kept")
        third = TickworkCallback(stop=StopAt(2))
        trainer(run3, third).fit(Tiny(), data())
        assert third.final_checkpoint == "already saved"
        assert (run3 / "epoch=0-step=2.ckpt").read_bytes() == b"kept"


class StopAt:
    """A distributed-style stop: should_stop_at(step) is True from ``step`` on."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.asked: list[int] = []

    def should_stop(self) -> bool:
        return False

    def should_stop_at(self, step: int) -> bool:
        self.asked.append(step)
        return step >= self.step


@pytest.mark.slow  # a Lightning process of its own
def test_sigterm_from_outside_stops_saves_and_keeps_lightnings_handler(tmp_path: Path) -> None:
    """A real SIGTERM: Lightning's own handler still runs (received_sigterm), so does the
    handler installed before fit(); the callback stops at the next step, saves the final
    checkpoint, the marker says stopped, and the handlers are put back."""
    run, ready, log = tmp_path / "run", tmp_path / "ready", tmp_path / "log"
    with following(run, log) as follower:
        code, fout, ferr, out, err, returncode = _sigterm_run(run, ready, follower)
    assert returncode == 0, out + err
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {
        "raised": "SIGTERMException",
        "received_sigterm": True,
        "before_calls": [int(signal.SIGTERM)],
        "handler_restored": True,
        "final_checkpoint": "saved",
        "stopped": True,
        "global_step": 7,
    }
    assert code == 0, fout + ferr
    assert evaluated_steps(log) == [2, 4, 6, 7]
    payload = marker_payload(run)
    assert payload["status"] == "stopped"
    assert payload["error_type"] == "SIGTERMException"
    assert payload["details"] == {"final_checkpoint": "saved", "signals": ["SIGTERM"]}


def _sigterm_run(
    run: Path, ready: Path, follower: subprocess.Popen[str]
) -> tuple[int, str, str, str, str, int]:
    """Start the worker, SIGTERM it at step 6, wait for it and for the follower."""
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(run), str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _code, out, err = drive_worker(worker, ready, "step 6")
    code, fout, ferr = finish(follower)
    return code, fout, ferr, out, err, worker.returncode


class TestBackground:
    def test_periodic_work_runs_over_the_fit_and_stops_at_its_end(self, tmp_path: Path) -> None:
        """A TimedThread passed as background runs while fit() runs and is stopped at its end."""
        ticks: list[bool] = []
        model = Tiny()
        thread = tickwork.every(0.001, lambda: ticks.append(model.trainer.training))
        callback = TickworkCallback(background=[thread], done_marker=None)
        trainer(tmp_path, callback, epochs=4).fit(model, data())
        assert not thread.is_alive()
        assert ticks  # it ran while training (each tick saw the trainer training)
        assert all(ticks)
        assert not (tmp_path / "DONE").exists()  # done_marker=None

    def test_an_error_of_the_periodic_work_is_raised_at_train_end(self, tmp_path: Path) -> None:
        """What the periodic work raised is raised from fit() at train end; the marker says
        failed with it."""

        calls: list[int] = []

        def broken() -> None:
            calls.append(1)
            if len(calls) == 1:  # once: one error is re-raised as itself
                raise OSError("disk full")

        thread = tickwork.every(0.001, broken)
        started = threading.Event()
        waiter = tickwork.every(0.001, started.set)
        with pytest.raises(OSError, match="disk full"):
            trainer(tmp_path, TickworkCallback(background=[waiter, thread]), Ensure(started)).fit(
                Tiny(), data()
            )
        assert not thread.is_alive()
        assert not waiter.is_alive()
        payload = marker_payload(tmp_path)
        assert (payload["status"], payload["error_type"]) == ("failed", "OSError")


class Ensure(pl.Callback):  # type: ignore[misc,name-defined]
    """Holds the last step until ``event`` is set (the periodic work has run), bounded."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_train_end(self, trainer: Any, *args: Any) -> None:
        assert self.event.wait(LIMIT)


def test_bad_arguments_are_refused() -> None:
    """The callback checks its arguments when made."""
    with pytest.raises(TypeError, match="'stop' must be None, a Coordinator"):
        TickworkCallback(stop=42)
    with pytest.raises(ValueError, match="'done_marker' must be None or a file name"):
        TickworkCallback(done_marker="a/b")
    with pytest.raises(TypeError, match="'background' must hold TimedThreads"):
        TickworkCallback(background=[object()])
    with pytest.raises(ValueError, match="'save_deadline' must be"):
        TickworkCallback(save_deadline=-1)
