"""A stuck rank named with every rank's stacks, and the job ended: real processes, gloo, a real
all-reduce per step, 3 ranks, stall_timeout 3 s (heartbeats every 0.25 s).

Margins are generous (a loaded 2-core machine); the times from the stall to the reports and to
the exit are measured by benchmarks, not asserted tightly here.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed._dist_harness import Job

    StartJob = Callable[..., Job]

pytest.importorskip("torch.distributed")

pytestmark = [pytest.mark.distributed, pytest.mark.torch, pytest.mark.timeout(240)]

STALL = 3.0
EXIT_CODE = 87  # tickwork.distributed._stall.STALL_EXIT_CODE


class TestStuckRank:
    @pytest.mark.parametrize("mode", ["sleep", "spin", "queue"])
    def test_every_rank_names_the_stuck_one_and_the_job_ends(
        self, job: StartJob, mode: str
    ) -> None:
        """Rank 1 stuck at step 5 (asleep with the GIL released, spinning in Python, or blocked
        on a queue) while the others wait in the all-reduce: every rank writes its report with
        its threads' stacks and ``suspect: rank 1`` (told from the stacks: all are at step 5),
        and every process ends with a non-zero status, those in the collective included."""
        j = job("spawn", 3, scenario="stall", mode=mode, target=1, stall_timeout=STALL)
        codes = j.exit_codes(timeout=90)
        assert all(code not in (None, 0) for code in codes.values()), codes
        began = json.loads((j.out / "stuck1").read_text())
        for rank in range(3):
            report = j.out / "stalls" / f"stall-rank{rank}.txt"
            assert report.exists(), f"rank {rank} wrote no report; exit codes {codes}"
            text = report.read_text()
            assert "suspect: rank 1" in text, text
            assert "(main)" in text
            assert "step 5" in text
            # Written within the timeout plus 5 s of the stall, plus a generous margin for load.
            assert report.stat().st_mtime - began < STALL + 5 + 20
        stuck_frames = {"sleep": "_stall", "spin": "_stall", "queue": "get"}[mode]
        rank1 = (j.out / "stalls" / "stall-rank1.txt").read_text()
        assert stuck_frames in rank1
        assert "all_reduce" in (j.out / "stalls" / "stall-rank0.txt").read_text()
        # Processes blocked in the collective are ended by tickwork (87), unless a peer ended
        # first and their collective failed (status 1, the script's own error).
        assert EXIT_CODE in codes.values(), codes
        assert set(codes.values()) <= {EXIT_CODE, 1}, codes


class TestGilHeld:
    def test_a_rank_holding_the_gil_is_ended_with_its_stacks_and_so_are_its_peers(
        self, job: StartJob
    ) -> None:
        """Rank 1 at step 5 in C code that holds the GIL (none of its Python threads runs):
        its peers declare it dead (its heartbeats stop) and, blocked in the all-reduce, are
        ended 10 s later; rank 1 itself is ended by the faulthandler backstop (a C thread)
        heartbeat_timeout + 10 s after its last heartbeat, every thread's stack on its stderr."""
        j = job(
            "spawn", 3, scenario="stall", mode="gil", target=1, stall_timeout=STALL, stderr_files=1
        )
        codes = j.exit_codes(timeout=90)
        assert codes[1] == 1, codes
        assert codes[0] not in (None, 0), codes
        assert codes[2] not in (None, 0), codes
        stderr1 = (j.out / "stderr1.txt").read_text()
        assert "Timeout (0:00:12)!" in stderr1, stderr1  # heartbeat_timeout 2 s + 10 s
        assert "most recent call first" in stderr1
        assert "in _stall" in stderr1  # the main thread's frame, where it holds the GIL
        for rank in (0, 2):
            text = (j.out / f"stderr{rank}.txt").read_text()
            assert "rank 1 (host" in text, text  # RankDiedError, logged
            assert "still waits for its peers" in text or codes[rank] == 1, text


class TestBlockedPeers:
    def test_peers_blocked_in_a_collective_with_a_dead_rank_are_ended(self, job: StartJob) -> None:
        """Stall detection on, rank 1 frozen (SIGSTOP: its sockets stay open, so the others'
        all-reduce never fails): they declare it dead and, their main threads still blocked
        in the all-reduce 10 s later, are ended with status 87 so a launcher can restart."""
        j = job(
            "spawn",
            3,
            scenario="stall",
            mode="sleep",
            target=99,
            stall_timeout=STALL,
            stderr_files=1,
        )
        j.wait_ready()
        time.sleep(1.0)  # a few steps
        os.kill(j.pid(1), signal.SIGSTOP)  # resumed and killed by the fixture
        began = time.monotonic()
        codes = j.exit_codes(timeout=60, ranks=[0, 2])
        assert time.monotonic() - began < 60
        assert codes == {0: EXIT_CODE, 2: EXIT_CODE}, codes
        for rank in (0, 2):
            text = (j.out / f"stderr{rank}.txt").read_text()
            # Ended as blocked after the dead-rank verdict, or as stalled if that came first.
            assert "still waits for its peers" in text or "stall report" in text, text


class TestNoFalseAlarm:
    def test_varying_steps_a_long_step_and_a_late_rank(self, job: StartJob) -> None:
        """Steps of 0-0.3 s, one of 0.8 x stall_timeout, and a rank that starts 5 s late (longer
        than the timeout): no report, and the job ends normally at the requested stop."""
        j = job(
            "spawn",
            3,
            scenario="stall",
            mode="steady",
            stall_timeout=STALL,
            long=0.8 * STALL,
            late=5.0,
        )
        results = j.results(timeout=150)
        for r in results.values():
            assert "crash" not in r, r
            assert r["join"] is None, r
        assert len({r["steps"] for r in results.values()}) == 1
        assert not (j.out / "stalls").exists()


class TestSlowRank:
    def test_a_slow_rank_is_named_with_no_collective_and_a_pause_is_not(
        self, job: StartJob
    ) -> None:
        """3 ranks in lockstep (an all-reduce per step, so every rank's step takes as long):
        rank 2 working 1.5x as long from 4 s on is named from the busy time the heartbeats
        carry; rank 1's one 0.5 s pause is not. Nothing but the heartbeats is sent."""
        j = job("spawn", 3, scenario="pace", slow=1.5, report_slow_ranks=True, limit=60)
        results = j.results(timeout=150)
        for r in results.values():
            assert "crash" not in r, r
            assert r["join"] is None, r
        rank0 = results[0]
        assert rank0["named_after_onset"] is not None, rank0
        # Named within 5 s of the onset on a quiet machine (benchmarks/RESULTS.md); a margin
        # for a loaded one.
        assert rank0["named_after_onset"] < 5 + 15, rank0
        (slow,) = rank0["slow"]
        assert slow["rank"] == 2
        assert slow["slower_by"] > 0.15
        assert slow["until"] is None
        for r in results.values():
            assert all(e["rank"] != 1 for e in r["history"]), r["history"]
