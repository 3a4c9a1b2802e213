"""The Hugging Face callback against the real Trainer: checkpoint-<step> directories saved by the
Trainer while `tickwork follow` evaluates them in another process; the error path through
sys.excepthook; stops (a real SIGTERM, a Coordinator from another thread) becoming
control.should_training_stop with the Trainer's own final save; periodic work over train()."""

from __future__ import annotations

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
    worker_result,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tickwork.integrations.transformers import TickworkCallback  # noqa: E402

from ._hf_worker import Tiny, arguments, dataset  # noqa: E402

pytestmark = [
    pytest.mark.transformers,
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning:transformers.*"),
]

WORKER = Path(__file__).with_name("_hf_worker.py")


def run_worker(*args: str, ready: Path | None = None) -> tuple[int, str, str]:
    """The worker in its own process; with ``ready``, SIGTERM it once it waits at step 7."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return drive_worker(worker, ready, "step 7")


@pytest.mark.slow  # a Trainer process each
class TestEndToEnd:
    def test_completed_training_is_followed_to_the_end(self, tmp_path: Path) -> None:
        """Each checkpoint-<step> the Trainer saves is evaluated once, in order, by `tickwork
        follow` in another process, which exits 0 when the marker says completed."""
        run, log = tmp_path / "run", tmp_path / "log"
        with following(run, log) as follower:
            code, out, err = run_worker("complete", str(run))
            fcode, fout, ferr = finish(follower)
        assert code == 0, out + err
        assert worker_result(out)["excepthook_restored"] is True
        assert fcode == 0, fout + ferr
        assert evaluated_steps(log) == [2, 4, 6, 8]
        payload = marker_payload(run)
        assert (payload["status"], payload["step"]) == ("completed", 8)
        assert "training completed at step 8" in fout

    def test_an_uncaught_error_ends_the_evaluator_and_says_failed(self, tmp_path: Path) -> None:
        """train() raising out of the script: the marker says failed with the error (written
        through sys.excepthook, the Trainer having no error hook); the evaluator ends."""
        run, log = tmp_path / "run", tmp_path / "log"
        with following(run, log) as follower:
            code, out, err = run_worker("raise", str(run))
            fcode, fout, ferr = finish(follower)
        assert code == 1, out + err
        assert "ValueError: loss is nan" in err  # the previous excepthook still printed it
        assert fcode == 0, fout + ferr
        assert evaluated_steps(log) == [2, 4]
        payload = marker_payload(run)
        assert (payload["status"], payload["step"]) == ("failed", 4)
        assert (payload["error_type"], payload["error_message"]) == ("ValueError", "loss is nan")
        assert "training failed at step 4" in fout

    def test_sigterm_stops_with_the_trainers_own_final_save(self, tmp_path: Path) -> None:
        """A real SIGTERM: the handler there before still runs, training stops at the next step
        with control.should_training_stop, the Trainer saves checkpoint-7 itself, the marker
        says stopped and the handlers are put back."""
        run, log, ready = tmp_path / "run", tmp_path / "log", tmp_path / "ready"
        with following(run, log) as follower:
            code, out, err = run_worker("sigterm", str(run), str(ready), ready=ready)
            fcode, fout, ferr = finish(follower)
        assert code == 0, out + err
        assert worker_result(out) == {
            "before_calls": [int(signal.SIGTERM)],
            "handler_restored": True,
            "excepthook_restored": True,
            "final_checkpoint": "saved",
            "stopped": True,
            "global_step": 7,
        }
        assert fcode == 0, fout + ferr
        assert evaluated_steps(log) == [2, 4, 6, 7]
        payload = marker_payload(run)
        assert (payload["status"], payload["step"]) == ("stopped", 7)
        assert payload["details"] == {"final_checkpoint": "saved", "signals": ["SIGTERM"]}


class StopFromAThread(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
    """At ``step``, another thread calls ``coord.request_stop()``."""

    def __init__(self, coord: tickwork.Coordinator, step: int) -> None:
        self.coord = coord
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            thread = threading.Thread(target=self.coord.request_stop)
            thread.start()
            thread.join(LIMIT)


def train(run: Path, *callbacks: Any, max_steps: int = 8) -> Any:
    trainer = transformers.Trainer(
        model=Tiny(),
        args=arguments(str(run), max_steps),
        train_dataset=dataset(),
        callbacks=list(callbacks),
    )
    trainer.train()
    return trainer


class TestInProcess:
    def test_a_coordinator_stop_from_another_thread(self, tmp_path: Path) -> None:
        """request_stop() from another thread: the Trainer stops at that step and saves it
        (already a save step: one save); the marker says stopped."""
        coord = tickwork.Coordinator()
        callback = TickworkCallback(stop=coord)
        trainer = train(tmp_path, StopFromAThread(coord, 3), callback)
        assert trainer.state.global_step == 3
        assert callback.stopped
        assert callback.final_checkpoint == "saved"
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "DONE", "checkpoint-2", "checkpoint-3",
        ]  # fmt: skip
        end = tickwork.read_training_end(tmp_path)
        assert end is not None
        assert (end.status, end.step) == (TrainingStatus.STOPPED, 3)

    def test_a_passed_deadline_requests_no_save(self, tmp_path: Path) -> None:
        """save_deadline=0: the stop is obeyed but no final checkpoint is requested."""
        event = threading.Event()
        event.set()
        callback = TickworkCallback(stop=event, save_deadline=0)
        trainer = train(tmp_path, callback)
        assert trainer.state.global_step == 1
        assert callback.final_checkpoint == "skipped: the deadline had passed"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["DONE"]

    def test_periodic_work_runs_over_train_and_its_error_is_raised_at_the_end(
        self, tmp_path: Path
    ) -> None:
        """A TimedThread runs during train(); what it raised is raised from train() at its end,
        and the marker says failed with it; the thread is stopped."""
        calls: list[int] = []
        seen = threading.Event()

        def tick() -> None:
            calls.append(1)
            seen.set()
            if len(calls) == 1:
                raise OSError("disk full")

        thread = tickwork.every(0.001, tick)
        with pytest.raises(OSError, match="disk full"):
            train(tmp_path, TickworkCallback(background=[thread]), Wait(seen))
        assert not thread.is_alive()
        payload = marker_payload(tmp_path)
        assert (payload["status"], payload["error_type"]) == ("failed", "OSError")

    def test_no_marker_where_the_process_does_not_save(self, tmp_path: Path) -> None:
        """args.should_save False (not the main process): no marker, no stale-marker removal."""
        tickwork.mark_training_done(tmp_path, step=99)
        callback = TickworkCallback()
        args = SimpleArgs(output_dir=str(tmp_path), should_save=False)
        state = SimpleState(global_step=0)
        control = transformers.TrainerControl()
        callback.on_train_begin(args, state, control)
        state.global_step = 4
        callback.on_train_end(args, state, control)
        end = tickwork.read_training_end(tmp_path)
        assert end is not None
        assert end.step == 99  # untouched
        assert callback.training_end is None


class SimpleArgs:
    def __init__(self, output_dir: str, should_save: bool) -> None:
        self.output_dir = output_dir
        self.should_save = should_save


class SimpleState:
    def __init__(self, global_step: int) -> None:
        self.global_step = global_step


class Wait(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
    """Holds train end until ``event`` is set (the periodic work has run), bounded."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 1:
            assert self.event.wait(LIMIT)
