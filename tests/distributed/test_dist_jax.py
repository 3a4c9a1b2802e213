"""Real ranks on localhost: two jax.distributed CPU processes, the coordination service's
key-value store as the Coordinator's store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("jax")

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed._dist_harness import SRC, WORKER
else:  # pytest runs them with this folder on sys.path
    from _dist_harness import SRC, WORKER

pytestmark = [pytest.mark.distributed, pytest.mark.jax, pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(
    tmp_path: Path,
    scenario: str,
    world: int = 2,
    term: int | None = None,
    codes: dict[int, int | None] | None = None,
    **extra: Any,
) -> dict[int, Any]:
    cfg = {
        **extra,
        "launcher": "jax",
        "engine": "jax",
        "out": str(tmp_path),
        "scenario": scenario,
        "target": 1,
        "jax_address": f"127.0.0.1:{_free_port()}",
        "limit": 60,
    }
    procs = []
    try:
        for rank in range(world):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), JAX_PLATFORMS="cpu")
            env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
            with (tmp_path / f"log{rank}").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(WORKER), json.dumps(cfg)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        if term is not None:
            limit = time.monotonic() + 90
            while not all((tmp_path / f"ready{r}").exists() for r in range(world)):
                assert time.monotonic() < limit, "the processes never got ready"
                time.sleep(0.05)
            time.sleep(0.5)
            os.kill(procs[term].pid, signal.SIGTERM)
        for p in procs:
            p.wait(120)
        if codes is not None:
            codes.update({rank: p.returncode for rank, p in enumerate(procs)})
            return {}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait(30)
    results = {}
    for rank in range(world):
        path = tmp_path / f"rank{rank}.json"
        logs = (tmp_path / f"log{rank}").read_text(errors="replace")[-3000:]
        assert path.exists(), f"rank {rank} wrote no result; log:\n{logs}"
        results[rank] = json.loads(path.read_text())
    return results


def test_exception_on_one_process_is_raised_everywhere(tmp_path: Path) -> None:
    """An error on process 1 stops process 0 too; join() raises it on both."""
    results = _run(tmp_path, "error")
    assert results[1]["join"]["type"] == "ValueError"
    remote = results[0]["join"]
    assert remote["type"] == "RemoteError"
    assert remote["type_name"] == "ValueError"
    assert remote["rank"] == 1
    assert "jax.distributed" in results[0]["store"]


def test_agreed_step_through_the_coordination_service(tmp_path: Path) -> None:
    """should_stop_at answers True at the same step on both processes."""
    results = _run(tmp_path, "gated")
    assert results[0]["steps"] == results[1]["steps"] > 7
    assert all(r["join"] is None and "crash" not in r for r in results.values())


def test_sigterm_goes_to_jax_preemption_sync_and_saves_once_each(tmp_path: Path) -> None:
    """SIGTERM on process 1 is left to JAX's (C-level) handler: no Python handler is installed,
    both processes stop at the same step through reached_preemption_sync_point, each saves once."""
    results = _run(tmp_path, "jax_sigterm", term=1)
    for r in results.values():
        assert "crash" not in r, r
        assert r["sigterm_handler"] == "<Handlers.SIG_DFL: 0>"
        assert len(r["saves"]) == 1
    assert results[0]["steps"] == results[1]["steps"]
    assert results[0]["saves"] == results[1]["saves"] == [results[0]["steps"]]


def test_a_stuck_process_is_named_and_the_job_ends(tmp_path: Path) -> None:
    """Process 1 asleep at step 5 while process 0 goes on (no collective): both write a report
    naming process 1 (the lowest step), and both end with a non-zero status."""
    codes: dict[int, int | None] = {}
    _run(tmp_path, "stall", codes=codes, mode="sleep", stall_timeout=3.0)
    assert all(code not in (None, 0) for code in codes.values()), codes
    for rank in range(2):
        text = (tmp_path / "stalls" / f"stall-rank{rank}.txt").read_text()
        assert "suspect: rank 1" in text, text
        assert "the lowest step" in text


def test_a_slow_process_is_named(tmp_path: Path) -> None:
    """Two JAX processes with no collective (each at its own pace): process 1 working 1.5x as
    long from 4 s on makes fewer steps for its busy time, and is named from the heartbeats."""
    results = _run(tmp_path, "pace", slow=1.5, slow_rank=1, pause_rank=-1, report_slow_ranks=True)
    for r in results.values():
        assert "crash" not in r, r
        assert r["join"] is None, r
    rank0 = results[0]
    assert rank0["named_after_onset"] is not None, rank0
    assert rank0["named_after_onset"] < 5 + 15, rank0  # a margin for a loaded machine
    (slow,) = rank0["slow"]
    assert slow["rank"] == 1
    assert slow["slower_by"] > 0.15
