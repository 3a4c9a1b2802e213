"""Stall detection on real ranks: how long from a stuck rank to the reports and to the exit.

Run from the repository root, in the test venv:

    python -m benchmarks.stalls [--runs 3]

3 spawned ranks (gloo, a real all-reduce per step, rank 0 hosting a TCPStore), stall_timeout 3 s,
heartbeats every 0.25 s (tests/distributed/_dist_worker.py, scenario ``stall``). Rank 1 gets
stuck at step 5 (``sleep``, ``spin`` in pure Python, ``queue``); measured on the wall clock of
this one machine: from the moment it got stuck to each rank's report file (its mtime), and to
the last process's exit (polled every 10 ms). Targets (issue 16): reports within
stall_timeout + 5 s, every process ended within 15 s more.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    print(json.dumps({"machine": platform.platform(), "load": os.getloadavg()[0]}))
    for mode in ("sleep", "spin", "queue"):
        for _ in range(args.runs):
            print(json.dumps({"mode": mode, "stall_timeout": STALL, **one(mode)}), flush=True)


if __name__ == "__main__":
    main()
