"""The trainer callbacks under DDP, as people run them: Lightning's ``strategy="ddp"`` (a script
run with python; Lightning starts rank 1) and the Hugging Face Trainer under torchrun, 2 processes
on CPU with gloo, each with ``tickwork follow`` evaluating in another process.

Cases: training completes; SIGTERM to the rank that does not save, to the saving rank, to the
launcher (torchrun; for Lightning, rank 0 is the launcher); rank 1 raises. With the Coordinator
the callback makes itself, and with one the user made (the signal and error cases). Every rank
stops at the same step, the final checkpoint is saved once by the trainer's own collective
save, the marker says ``stopped`` (or ``failed`` with rank 1's own error), the follower exits 0.
Every wait is bounded; each job runs in its own process group, killed at the end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .follow_helpers import evaluated_steps, finish, following, marker_payload

pytest.importorskip("torch.distributed")

pytestmark = [pytest.mark.torch, pytest.mark.distributed, pytest.mark.timeout(300)]

HERE = Path(__file__).parent
JOB_LIMIT = 180.0  # seconds a 2-rank job may take here; reached only when something is wrong
STOPPED_AT = 7  # every rank waits in its 7th step until it knows of the stop


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(strategy: str) -> dict[str, str]:
    """This process's environment without what would make the job join another one."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TORCHELASTIC_", "MASTER_", "PL_", "LOCAL_", "GROUP_", "ROLE_"))
        and k not in {"RANK", "WORLD_SIZE", "NODE_RANK", "TICKWORK_CHECKPOINT"}
    }
    env["OMP_NUM_THREADS"] = "1"
    env["TICKWORK_TEST_STRATEGY"] = strategy  # Lightning's: ddp or ddp_spawn
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _command(trainer: str, mode: str, run: Path, sync: Path, coord: str) -> list[str]:
    if trainer == "lightning":
        script = HERE / "_lightning_ddp_worker.py"
        return [sys.executable, str(script), mode, str(run), str(sync), coord]
    script = HERE / "_hf_ddp_worker.py"
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        str(script), mode, str(run), str(sync), coord,
    ]  # fmt: skip


def _kill_group(job: subprocess.Popen[str]) -> None:
    try:
        os.killpg(job.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_job(
    trainer: str,
    mode: str,
    run: Path,
    sync: Path,
    coord: str,
    target: str | None,
    *,
    strategy: str = "ddp",
    signum: int = signal.SIGTERM,
) -> tuple[int, str, list[dict[str, Any]]]:
    """Run a 2-rank job; with ``target`` (``"0"``, ``"1"`` or ``"launcher"``), send ``signum``
    there once both ranks wait in their 7th step. Returns (exit status, output, each rank's
    record, from SYNC_DIR/record-rank<r>.json)."""
    sync.mkdir(parents=True)
    job = subprocess.Popen(
        _command(trainer, mode, run, sync, coord),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(strategy),
        start_new_session=True,  # the job's ranks form a group, killed as one at the end
    )
    try:
        if target is not None:
            ready = [sync / "ready-rank0", sync / "ready-rank1"]
            limit = time.monotonic() + JOB_LIMIT
            while not all(path.exists() for path in ready):
                if job.poll() is not None or time.monotonic() > limit:
                    out = job.communicate()[0] if job.poll() is not None else ""
                    pytest.fail(f"the ranks never reached step {STOPPED_AT}:\n{out}")
                time.sleep(0.05)  # waiting for other processes' files, bounded
            pid = (
                job.pid if target == "launcher" else int((sync / f"ready-rank{target}").read_text())
            )
            os.kill(pid, signum)
        try:
            out = job.communicate(timeout=JOB_LIMIT)[0]
        except subprocess.TimeoutExpired:
            _kill_group(job)
            out = job.communicate()[0]
            pytest.fail(f"the job did not end within {JOB_LIMIT} s (a hang):\n{out}")
    finally:
        _kill_group(job)  # whatever is left of it (nothing, when it ended)
        if job.poll() is None:
            job.communicate()
    records = [json.loads(path.read_text()) for path in sync.glob("record-rank*.json")]
    return job.returncode, out, sorted(records, key=lambda r: r["rank"])


def _checkpoints(trainer: str, run: Path) -> list[int]:
    if trainer == "lightning":
        names = [p.name for p in run.glob("*.ckpt")]
        return sorted(int(n.rsplit("step=", 1)[1].split(".")[0]) for n in names)
    return sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))


TRAINERS = [
    pytest.param("lightning", marks=[pytest.mark.lightning]),
    pytest.param("transformers", marks=[pytest.mark.transformers]),
]


@pytest.fixture(autouse=True)
def _trainer_installed(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("trainer") if callspec is not None else "lightning"
    pytest.importorskip("lightning.pytorch" if name == "lightning" else "transformers")


@pytest.mark.parametrize("trainer", TRAINERS)
def test_training_completes(trainer: str, tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "log"
    with following(run, log) as follower:
        code, out, records = run_job(trainer, "complete", run, tmp_path / "sync", "auto", None)
        follow_code, follow_out, follow_err = finish(follower)
    assert code == 0, out
    assert [r["stopped"] for r in records] == [False, False], out
    assert follow_code == 0, follow_out + follow_err
    steps = _checkpoints(trainer, run)
    assert steps[:4] == [2, 4, 6, 8], steps
    assert evaluated_steps(log) == steps, follow_out
    payload = marker_payload(run)
    assert payload["status"] == "completed", payload


SIGNALS = [
    pytest.param("lightning", "1", "auto", "ddp", "SIGTERM", id="lightning-rank1"),
    pytest.param("lightning", "0", "auto", "ddp", "SIGTERM", id="lightning-rank0-launcher"),
    pytest.param("lightning", "1", "user", "ddp", "SIGTERM", id="lightning-rank1-user-coord"),
    pytest.param("lightning", "1", "auto", "ddp_spawn", "SIGTERM", id="lightning-spawn-rank1"),
    pytest.param("transformers", "1", "auto", "ddp", "SIGTERM", id="hf-rank1"),
    pytest.param("transformers", "0", "auto", "ddp", "SIGTERM", id="hf-rank0"),
    pytest.param("transformers", "launcher", "auto", "ddp", "SIGTERM", id="hf-torchrun"),
    pytest.param("transformers", "1", "user", "ddp", "SIGTERM", id="hf-rank1-user-coord"),
    pytest.param("transformers", "1", "auto", "ddp", "SIGUSR1", id="hf-rank1-sigusr1"),
]


@pytest.mark.parametrize(("trainer", "target", "coord", "strategy", "signame"), SIGNALS)
def test_a_signal_on_one_rank_stops_every_rank_at_one_step(
    trainer: str, target: str, coord: str, strategy: str, signame: str, tmp_path: Path
) -> None:
    """Every rank stops at the same step, the final checkpoint is saved there once (by the
    trainer's own save, rank 0 writing), the marker says stopped, the follower exits 0."""
    run, log = tmp_path / "run", tmp_path / "log"
    with following(run, log) as follower:
        code, out, records = run_job(
            trainer,
            "sigterm",
            run,
            tmp_path / "sync",
            coord,
            target,
            strategy=strategy,
            signum=signal.Signals[signame],
        )
        follow_code, follow_out, follow_err = finish(follower)
    if strategy == "ddp_spawn":  # the ranks' records stay in the spawned processes
        assert code == 0, out
    else:
        check_records(records, out)
        if target != "launcher":  # torchrun itself exits 1 when it is signalled
            assert code == 0, out
    steps = _checkpoints(trainer, run)
    assert steps == [2, 4, 6, STOPPED_AT], steps
    payload = marker_payload(run)
    assert (payload["status"], payload["step"]) == ("stopped", STOPPED_AT), payload
    expected: dict[str, object] = {"final_checkpoint": "saved"}
    if target in {"0", "launcher"}:  # the saving rank received the signal itself
        expected["signals"] = [signame]
    assert payload["details"] == expected, payload
    assert follow_code == 0, follow_out + follow_err
    assert evaluated_steps(log) == steps
    assert f"training stopped at step {STOPPED_AT}" in follow_out


def check_records(records: list[dict[str, Any]], out: str) -> None:
    """Both ranks stopped at STOPPED_AT; rank 0 saved the final checkpoint."""
    assert len(records) == 2, out
    assert [r["global_step"] for r in records] == [STOPPED_AT, STOPPED_AT], out
    assert [r["stopped"] for r in records] == [True, True], out
    assert records[0]["final_checkpoint"] == "saved", out
    assert records[1]["final_checkpoint"] == "not this process (it does not save)", out


@pytest.mark.parametrize(
    ("trainer", "coord", "strategy"),
    [
        pytest.param("lightning", "auto", "ddp", id="lightning"),
        pytest.param("lightning", "user", "ddp", id="lightning-user-coordinator"),
        pytest.param("lightning", "auto", "ddp_spawn", id="lightning-spawn"),
        pytest.param("transformers", "auto", "ddp", id="hf"),
        pytest.param("transformers", "user", "ddp", id="hf-user-coordinator"),
    ],
)
def test_the_marker_names_the_rank_that_raised(
    trainer: str, coord: str, strategy: str, tmp_path: Path
) -> None:
    """Rank 1 raises; rank 0, the saver, sees gloo's "connection closed" but its marker names
    rank 1's ValueError; the follower reports that training failed and exits 0. (ddp_spawn:
    torch.multiprocessing ends the other rank, and the launching process writes the marker from
    the rank's own traceback.)"""
    run, log = tmp_path / "run", tmp_path / "log"
    with following(run, log) as follower:
        code, out, _ = run_job(
            trainer, "raise", run, tmp_path / "sync", coord, None, strategy=strategy
        )
        job = (
            f"the job (status {code}, marker files {sorted(p.name for p in run.glob('*DONE*'))}):\n"
        )
        follow_code, follow_out, follow_err = finish(follower, context=job + out[-6000:])
    assert code != 0, out
    payload = marker_payload(run)
    assert payload["status"] == "failed", payload
    assert (payload["error_type"], payload["error_message"]) == ("ValueError", "loss is nan")
    assert payload["rank"] == 1, payload
    assert follow_code == 0, follow_out + follow_err
    assert "training failed" in follow_out, follow_out
    assert "on rank 1" in follow_out, follow_out
    assert "ValueError: loss is nan" in follow_out
    assert evaluated_steps(log) == _checkpoints(trainer, run)


@pytest.mark.lightning
def test_a_stuck_rank_is_named_and_the_job_ends(tmp_path: Path) -> None:
    """``TickworkCallback(stall_timeout=3, stall_dir=...)`` under Lightning DDP: rank 1 sleeps
    inside step 5 (GIL released) while rank 0 waits in the gradient all-reduce. Both ranks
    write their report naming rank 1, and the job ends with the stall status (87) instead of
    waiting for the collective's 30-minute timeout."""
    sync = tmp_path / "sync"
    code, out, records = run_job("lightning", "stall", tmp_path / "run", sync, "auto", None)
    assert code == 87, out
    assert records == [], out  # no rank got to its end: both were ended
    for rank in (0, 1):
        report = (sync / "stalls" / f"stall-rank{rank}.txt").read_text()
        assert "suspect: rank 1" in report, report
        assert "_lightning_ddp_worker.py:training_step" in report, report
