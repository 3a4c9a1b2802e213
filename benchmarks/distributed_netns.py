"""Stop latency across simulated machines: ranks in network namespaces, the store behind a relay.

Run from the repository root, as root (it makes network namespaces), in the test venv:

    python -m benchmarks.distributed_netns [--world 3] [--rounds 40] [--delays 0,5,20] [--src DIR]

``--src`` runs another checkout's ``src/`` instead (the baseline: ``git worktree add``).

For each one-way delay (ms), ``--world`` ranks run in namespaces of their own joined by a bridge
(tests/distributed/_netns.py); rank 0 hosts a TCPStore, the others reach it through a userspace
relay that holds every chunk ``delay`` ms in each direction (this kernel has no netem). Each round
a rank > 0 calls ``request_stop()``; latency = until ``should_stop()`` is True on every rank
(the monotonic clock is shared by the namespaces), p50/p99 over ``--rounds`` rounds, in ms and in
one-way delays. A fresh Coordinator (defaults) per round.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from tests.distributed._netns import Network, available, run_latency_job


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(world: int, rounds: int, delay_ms: float, src: Path | None) -> dict[str, float]:
    with Network(world) as net, tempfile.TemporaryDirectory() as tmp:
        extra = {} if src is None else {"src": src}
        results = run_latency_job(net, Path(tmp), world, rounds, delay_ms / 1000, **extra)
    for r in results.values():
        if "crash" in r:
            raise RuntimeError(r["crash"])
    reach = []
    for i in range(rounds):
        stopper = results[0]["rounds"][i]["stopper"]
        began = results[stopper]["rounds"][i]["began"]
        reach.append(max(results[r]["rounds"][i]["seen"] for r in range(world)) - began)
    p50, p99 = _pct(reach, 0.5) * 1000, _pct(reach, 0.99) * 1000
    out = {"delay_ms": delay_ms, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}
    if delay_ms:
        out["p50_delays"] = round(p50 / delay_ms, 2)
        out["p99_delays"] = round(p99 / delay_ms, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--delays", default="0,5,20", help="one-way delays in ms, comma-separated")
    parser.add_argument(
        "--src", type=Path, default=None, help="another tickwork's src/ (a baseline checkout)"
    )
    args = parser.parse_args()
    reason = available()
    if reason is not None:
        raise SystemExit(f"cannot run: {reason}")
    print(json.dumps({"machine": platform.platform(), "python": platform.python_version()}))
    for delay in (float(d) for d in args.delays.split(",")):
        print(
            json.dumps({"world": args.world, **measure(args.world, args.rounds, delay, args.src)})
        )


if __name__ == "__main__":
    main()
