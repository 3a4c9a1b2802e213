"""The done marker: written atomically through storage (local, fsspec), read back, and ending an
evaluator that runs in its own process (locally and on S3 through the moto server)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from ckpt_helpers import zip_bytes

import tickwork
from tickwork import TrainingEnd, TrainingStatus

# `tickwork follow` in a subprocess and what it recorded (shared with the trainer tests).
sys.path.insert(0, str(Path(__file__).parents[1]))
from integrations.follow_helpers import (  # type: ignore[import-not-found]
    evaluated_steps,
    finish,
    start_follow,
)


def save(directory: Path, step: int) -> None:
    temporary = directory / f".tmp-{step}"
    temporary.write_bytes(zip_bytes())
    os.replace(temporary, directory / f"model_{step}.pt")


class TestWriteAndRead:
    def test_completed_by_default_with_step_host_and_time(self, tmp_path: Path) -> None:
        """Without an error the marker says completed, with the step, host, pid and UTC time."""
        written = tickwork.mark_training_done(tmp_path, step=12)
        payload = json.loads((tmp_path / "DONE").read_text())
        assert payload["status"] == "completed"
        assert payload["step"] == 12
        assert payload["pid"] == os.getpid()
        assert payload["host"]
        assert payload["time"].endswith("+00:00")
        assert payload["error_type"] is None
        assert tickwork.read_training_end(tmp_path) == written

    def test_an_error_makes_it_failed_with_type_and_message(self, tmp_path: Path) -> None:
        """error= sets status failed and records the exception's type and message."""
        tickwork.mark_training_done(tmp_path, error=ValueError("loss is nan"), step=3)
        end = tickwork.read_training_end(tmp_path)
        assert end is not None
        assert end.status is TrainingStatus.FAILED
        assert (end.error_type, end.error_message, end.step) == ("ValueError", "loss is nan", 3)
        assert end.describe().startswith("training failed at step 3 on ")
        assert end.describe().endswith(": ValueError: loss is nan")

    def test_stopped_with_details_under_another_name(self, tmp_path: Path) -> None:
        """status='stopped', a custom name and details round-trip."""
        tickwork.mark_training_done(
            tmp_path, "stopped", name="FINISHED", details={"final_checkpoint": "saved"}
        )
        end = tickwork.read_training_end(tmp_path, "FINISHED")
        assert end is not None
        assert end.status is TrainingStatus.STOPPED
        assert end.details == {"final_checkpoint": "saved"}
        assert tickwork.read_training_end(tmp_path) is None  # no DONE

    def test_replaces_atomically_and_leaves_no_temporary(self, tmp_path: Path) -> None:
        """A second marker replaces the first; no temporary file is left; the directory is
        created when missing."""
        run = tmp_path / "new" / "run"
        tickwork.mark_training_done(run, step=1)
        tickwork.mark_training_done(run, "stopped", step=2)
        assert sorted(os.listdir(run)) == ["DONE"]
        end = tickwork.read_training_end(run)
        assert end is not None
        assert (end.status, end.step) == (TrainingStatus.STOPPED, 2)

    def test_a_foreign_marker_reads_as_unknown(self, tmp_path: Path) -> None:
        """An empty or non-JSON marker (`touch DONE`) still ends evaluators; it reads as
        unknown."""
        (tmp_path / "DONE").touch()
        assert tickwork.read_training_end(tmp_path) == TrainingEnd(TrainingStatus.UNKNOWN)
        assert TrainingEnd(TrainingStatus.UNKNOWN).describe() == (
            "the done marker does not say how training ended"
        )
        (tmp_path / "DONE").write_text('{"status": "exploded", "step": true}')
        assert tickwork.read_training_end(tmp_path) == TrainingEnd(TrainingStatus.UNKNOWN)

    def test_clear_removes_a_stale_marker(self, tmp_path: Path) -> None:
        """clear_done_marker removes the marker; True only when there was one."""
        tickwork.mark_training_done(tmp_path)
        assert tickwork.clear_done_marker(tmp_path) is True
        assert tickwork.clear_done_marker(tmp_path) is False
        assert not (tmp_path / "DONE").exists()

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"status": "exploded"}, ValueError, "'status' must be None, 'completed'"),
            ({"status": "unknown"}, ValueError, "'status' must be None"),
            ({"name": "a/b"}, ValueError, "'done_marker' must be None or a file name"),
            ({"name": None}, ValueError, "'name' must be a file name"),
            ({"step": 1.5}, TypeError, "'step' must be an int or None; got 1.5"),
            ({"step": True}, TypeError, "'step' must be an int or None; got True"),
            ({"error": "boom"}, TypeError, "'error' must be an exception or None; got 'boom'"),
            ({"details": [1]}, TypeError, "'details' must be a mapping or None"),
        ],
    )
    def test_bad_arguments_are_refused(
        self, tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Each argument is checked; the error names it and shows the value."""
        with pytest.raises(error, match=match):
            tickwork.mark_training_done(tmp_path, **kwargs)
        assert not (tmp_path / "DONE").exists()


class TestFsspec:
    def test_memory_filesystem_round_trip(self) -> None:
        """Through fsspec (memory://, one pipe_file call): written, read, cleared."""
        pytest.importorskip("fsspec")
        url = f"memory://done-marker-{os.getpid()}/run"
        tickwork.mark_training_done(url, error=RuntimeError("x"), step=5)
        end = tickwork.read_training_end(url)
        assert end is not None
        assert (end.status, end.step, end.error_type) == (TrainingStatus.FAILED, 5, "RuntimeError")
        assert tickwork.clear_done_marker(url) is True
        assert tickwork.read_training_end(url) is None

    @pytest.mark.s3
    def test_s3_round_trip(self, s3: tuple[Any, dict[str, Any], str]) -> None:
        """On S3 (moto) the marker is one PUT; another client reads it."""
        writer, options, bucket = s3
        tickwork.mark_training_done(f"{bucket}/run", step=7, storage_options=options)
        assert sorted(writer.ls(f"{bucket}/run")) == [f"{bucket[5:]}/run/DONE"]
        end = tickwork.read_training_end(f"{bucket}/run", storage_options=options)
        assert end is not None
        assert (end.status, end.step) == (TrainingStatus.COMPLETED, 7)


class TestEvaluatorInItsOwnProcess:
    def test_local_follow_ends_on_the_marker_and_reports_the_ending(self, tmp_path: Path) -> None:
        """`tickwork follow` in another process evaluates each checkpoint once, in order, ends
        with status 0 on the marker, and says how training ended."""
        run, log = tmp_path / "run", tmp_path / "log"
        run.mkdir()
        process = start_follow(run, log)
        for step in range(1, 6):
            save(run, step)
        tickwork.mark_training_done(run, error=RuntimeError("diverged"), step=5)
        code, out, err = finish(process)
        assert code == 0, out + err
        assert evaluated_steps(log) == [1, 2, 3, 4, 5]
        assert "training failed at step 5 on " in out
        assert "RuntimeError: diverged" in out

    @pytest.mark.s3
    def test_s3_follow_in_another_process_ends_on_the_marker(
        self, s3: tuple[Any, dict[str, Any], str], tmp_path: Path
    ) -> None:
        """The same across processes on S3: checkpoints PUT by this process, the marker last."""
        writer, options, bucket = s3
        run, log = f"{bucket}/run", tmp_path / "log"
        writer.pipe_file(f"{run}/model_1.pt", zip_bytes())
        process = start_follow(run, log, "--storage-options", json.dumps(options))
        for step in range(2, 5):
            writer.pipe_file(f"{run}/model_{step}.pt", zip_bytes())
        tickwork.mark_training_done(run, "stopped", step=4, storage_options=options)
        code, out, err = finish(process)
        assert code == 0, out + err
        assert evaluated_steps(log) == [1, 2, 3, 4]
        assert "training stopped at step 4" in out


def test_a_marker_before_the_evaluator_starts_still_ends_it(tmp_path: Path) -> None:
    """Training that ended before the evaluator started: everything is evaluated, then it ends."""
    for step in (1, 2):
        save(tmp_path, step)
    tickwork.mark_training_done(tmp_path, step=2)
    process = start_follow(tmp_path, tmp_path.parent / f"{tmp_path.name}.log")
    code, out, err = finish(process)
    assert code == 0, out + err
    assert evaluated_steps(tmp_path.parent / f"{tmp_path.name}.log") == [1, 2]
    assert "training completed at step 2" in out
