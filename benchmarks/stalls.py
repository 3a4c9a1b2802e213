"""Stall detection on real ranks: how long from a stuck rank to the reports and to the exit.

Run from the repository root, in the test venv:

    python -m benchmarks.stalls [--runs 3]

3 spawned ranks (gloo, a real all-reduce per step, rank 0 hosting a TCPStore), stall_timeout 3 s,
heartbeats every 0.25 s (tests/distributed/_dist_worker.py, scenario ``stall``). Rank 1 gets
stuck at step 5 (``sleep``, ``spin`` in pure Python, ``queue``); measured on the wall clock of
this one machine: from the moment it got stuck to each rank's report file (its mtime), and to
the last process's exit (polled every 10 ms). Targets (issue 16): reports within
stall_timeout + 5 s, every process ended within 15 s more.

``--slow``: the slow-rank report instead (scenario ``pace``): 3 ranks in lockstep, 20 ms of
work a step, rank 2 working 1.5x (or ``--factor``) as long from 4 s on; from that onset to rank
0's ``coord.slow_ranks`` naming it (target: 5 s), and what it says. Then the sampler's cost: a
pure-Python loop on the main thread, timed with and without a Coordinator that reports slow
ranks (world 1, MemoryStore), interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# The harness imports its worker as a top-level module, as the tests do.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "distributed"))

from tests.distributed._dist_harness import Job

STALL = 3.0


def one(mode: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        job = Job("spawn", 3, out, scenario="stall", mode=mode, target=1, stall_timeout=STALL)
        job.start()
        try:
            limit = time.monotonic() + 120
            procs = job._procs  # noqa: SLF001 - the benchmark polls the processes it started
            while any(p.is_alive() for p in procs) and time.monotonic() < limit:
                time.sleep(0.01)
            ended = time.time()
            began = json.loads((out / "stuck1").read_text())
            reports = [(out / "stalls" / f"stall-rank{r}.txt").stat().st_mtime for r in range(3)]
            codes = [p.exitcode for p in procs]
        finally:
            job.kill()
    return {
        "report_last_s": round(max(reports) - began, 2),
        "exit_after_report_s": round(ended - max(reports), 2),
        "exit_codes": codes,
    }


def slow(factor: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        job = Job(
            "spawn", 3, Path(tmp), scenario="pace", slow=factor, report_slow_ranks=True, limit=60
        )
        job.start()
        try:
            results = job.results([0, 1, 2], timeout=150)
        finally:
            job.kill()
    rank0 = results[0]
    named = rank0["slow"][0] if rank0["slow"] else None
    return {
        "named_after_onset_s": None
        if rank0["named_after_onset"] is None
        else round(rank0["named_after_onset"], 2),
        "rank": None if named is None else named["rank"],
        "slower_by": None if named is None else round(named["slower_by"], 3),
        "busy_ms_per_step": None if named is None else round(named["busy_per_step"] * 1000, 1),
        "others_ms_per_step": None if named is None else round(named["others_per_step"] * 1000, 1),
        "other_ranks_named": sorted(
            {e["rank"] for r in results.values() for e in r["history"]} - {2}
        ),
    }


def overhead(repeats: int) -> dict[str, object]:
    from tickwork.distributed import Coordinator, MemoryStore

    def loop() -> float:
        began = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i
        return time.perf_counter() - began

    off: list[float] = []
    on: list[float] = []
    for _ in range(repeats):
        off.append(loop())
        with Coordinator(MemoryStore(), rank=0, world_size=1, report_slow_ranks=True):
            on.append(loop())
    off.sort()
    on.sort()
    return {
        "loop_s_without_median": round(off[len(off) // 2], 4),
        "loop_s_with_median": round(on[len(on) // 2], 4),
        "slowdown": f"{on[len(on) // 2] / off[len(off) // 2] - 1:+.2%}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="the slow-rank report instead")
    parser.add_argument("--factor", type=float, default=1.5)
    args = parser.parse_args()
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    print(json.dumps({"machine": platform.platform(), "load": os.getloadavg()[0]}))
    if args.slow:
        for _ in range(args.runs):
            print(json.dumps({"factor": args.factor, **slow(args.factor)}), flush=True)
        print(json.dumps(overhead(11)), flush=True)
        return
    for mode in ("sleep", "spin", "queue"):
        for _ in range(args.runs):
            print(json.dumps({"mode": mode, "stall_timeout": STALL, **one(mode)}), flush=True)


if __name__ == "__main__":
    main()
