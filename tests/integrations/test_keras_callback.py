"""The Keras 3 TickworkCallback against real Keras (torch backend, in a fresh interpreter: Keras
picks its backend at import): fit() saving checkpoints with its ModelCheckpoint while `tickwork
follow` evaluates them in another process; the error path; a real SIGTERM as model.stop_training
with a final model.save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .follow_helpers import (
    drive_worker,
    evaluated_steps,
    finish,
    following,
    marker_payload,
    worker_result,
)

pytest.importorskip("keras")
pytest.importorskip("torch")

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.slow]  # a Keras process each

WORKER = Path(__file__).with_name("_keras_fit_worker.py")


def run_worker(*args: str, ready: Path | None = None) -> tuple[int, str, str]:
    """The worker in its own process; with ``ready``, SIGTERM it once it waits at batch 5."""
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, KERAS_BACKEND="torch"),
    )
    return drive_worker(worker, ready, "batch 5")


def test_completed_fit_is_followed_to_the_end(tmp_path: Path) -> None:
    """Each .keras file the ModelCheckpoint saves is evaluated once, in order, by `tickwork
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


def test_an_uncaught_error_ends_the_evaluator_and_says_failed(tmp_path: Path) -> None:
    """fit() raising out of the script: the marker says failed with the error; the evaluator
    evaluates what was saved and ends."""
    run, log = tmp_path / "run", tmp_path / "log"
    with following(run, log) as follower:
        code, out, err = run_worker("raise", str(run))
        fcode, fout, ferr = finish(follower)
    assert code == 1, out + err
    assert "ValueError: loss is nan" in err
    assert fcode == 0, fout + ferr
    assert evaluated_steps(log) == [2, 4]
    payload = marker_payload(run)
    assert (payload["status"], payload["step"]) == ("failed", 4)
    assert (payload["error_type"], payload["error_message"]) == ("ValueError", "loss is nan")


def test_sigterm_stops_fit_and_saves_a_final_checkpoint(tmp_path: Path) -> None:
    """A real SIGTERM: the handler there before still runs; model.stop_training ends fit()
    after batch 5, the final checkpoint is saved under the ModelCheckpoint's file name, the
    marker says stopped and the handlers are put back."""
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
        "stop_training": True,
    }
    assert (run / "model-5.keras").exists()
    assert fcode == 0, fout + ferr
    assert evaluated_steps(log) == [2, 4, 5]
    payload = marker_payload(run)
    assert (payload["status"], payload["step"]) == ("stopped", 5)
    assert payload["details"] == {"final_checkpoint": "saved", "signals": ["SIGTERM"]}
