"""tickwork.distributed on real ranks (torch.distributed, gloo, TCPStore on localhost).

Run from the repository root:

    python -m benchmarks.distributed [--requests 100] [--quick]

Each measurement spawns fresh ranks (multiprocessing spawn; rank 0 hosts a TCPStore on port 0
and a gloo process group is built on it, as in a plain ``env://`` job). Measured:

* stop propagation: one rank calls ``request_stop()`` (rank ``i % world`` for request ``i``),
  latency = until ``should_stop()`` is True on the last other rank (``time.time()`` on one
  machine), p50/p99 over ``--requests`` requests; a fresh Coordinator (its own namespace) per
  request. *Idle*: the receivers wait in ``wait_for_stop()`` and the requester sleeps; *busy*:
  every main thread runs Python arithmetic (holding the GIL) and polls ``should_stop()`` every
  ~20 us.
* per-step cost: ns per call of ``threading.Event.is_set()``, ``should_stop()``,
  ``should_stop_at(step)``, and of an ``all_reduce`` of a one-element stop flag on the same gloo
  group (what Lightning does every step), no stop pending.
* dead-rank detection: rank 1 SIGKILLed; time until rank 0's ``should_stop()``, for several
  ``heartbeat_timeout`` values.
* idle store load: store requests per second per rank over 10 s with nothing happening.
* store host detection: rank 0 (the TCPStore host) SIGKILLed or SIGSTOPped; time until the
  other ranks' ``should_stop()``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _setup(rank: int, world: int, out: Path) -> Any:
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=60)
    port_file = out / "port"
    if rank == 0:
        store = dist.TCPStore(  # type: ignore[attr-defined]  # torch does not re-export it typed
            "127.0.0.1", 0, world, True, timeout=timeout, wait_for_workers=False
        )
        (out / "port.tmp").write_text(str(store.port))
        (out / "port.tmp").replace(port_file)
    else:
        while not port_file.exists():
            time.sleep(0.01)
        store = dist.TCPStore(  # type: ignore[attr-defined]  # torch does not re-export it typed
            "127.0.0.1", int(port_file.read_text()), world, False, timeout=timeout
        )
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)
    return dist


def _busy(stop: Any, limit: float) -> float:
    """Python arithmetic until stop.should_stop(); returns the time it saw the stop."""
    x = 0
    while time.time() < limit:
        for i in range(200):  # ~20 us of bytecode between polls
            x += i * i
        if stop.should_stop():
            return time.time()
    return float("nan")


def _propagation(rank: int, world: int, out: Path, requests: int, busy: bool) -> None:
    from tickwork.distributed import Coordinator

    dist = _setup(rank, world, out)
    latencies: list[float] = []
    for i in range(requests):
        coord = Coordinator(namespace=f"p{i}", heartbeat_timeout=30.0)
        dist.barrier()
        requester = i % world
        if rank == requester:
            time.sleep(0.005)
            if busy:
                spin_until = time.time() + 0.002
                x = 0
                while time.time() < spin_until:
                    x += 1
            sent = time.time()
            coord.request_stop()
            if busy:
                _busy(coord, sent + 0.05)
            seen = sent
        elif busy:
            seen = _busy(coord, time.time() + 10)
        else:
            coord.wait_for_stop(10)
            seen = time.time()
        times: list[Any] = [None] * world  # (is_requester, seen) per rank, once gathered
        dist.all_gather_object(times, (rank == requester, seen))
        if rank == 0:
            sent_at = next(t for is_req, t in times if is_req)
            latencies.append(max(t for is_req, t in times if not is_req) - sent_at)
        coord.close(timeout=30)
    if rank == 0:
        (out / "result.json").write_text(json.dumps(latencies))
    dist.barrier()
    dist.destroy_process_group()


def _costs(rank: int, world: int, out: Path, watch: bool = False) -> None:
    import timeit

    import torch

    from tickwork.distributed import Coordinator

    dist = _setup(rank, world, out)
    # watch: stall detection and the slow-rank report on (their sampler thread running)
    extra: dict[str, Any] = {"stall_timeout": 600.0, "stall_dir": str(out)} if watch else {}
    coord = Coordinator(heartbeat_timeout=30.0, **extra)
    event = threading.Event()
    n = 1_000_000
    result: dict[str, float] = {}
    if rank == 0:
        result["Event.is_set"] = timeit.timeit(event.is_set, number=n) / n * 1e9
        result["should_stop"] = timeit.timeit(coord.should_stop, number=n) / n * 1e9
        stop_at = coord.should_stop_at
        t0 = time.perf_counter()
        for step in range(n):
            stop_at(step)
        result["should_stop_at"] = (time.perf_counter() - t0) / n * 1e9
        loop_only = time.perf_counter()
        for _step in range(n):
            pass
        result["loop overhead"] = (time.perf_counter() - loop_only) / n * 1e9
    dist.barrier()
    flag = torch.zeros(1)
    steps = 2000
    samples = []
    for _ in range(steps):
        t0 = time.perf_counter()
        flag.zero_()
        dist.all_reduce(flag)
        samples.append(time.perf_counter() - t0)
    if rank == 0:
        result["all_reduce stop flag p50"] = _pct(samples, 0.5) * 1e9
        result["all_reduce stop flag p99"] = _pct(samples, 0.99) * 1e9
        (out / "result.json").write_text(json.dumps(result))
    dist.barrier()
    coord.close(timeout=30)
    dist.destroy_process_group()


def _idle(
    rank: int, world: int, out: Path, timeout: float, interval: float, seconds: float
) -> None:
    from tickwork.distributed import Coordinator

    dist = _setup(rank, world, out)
    coord = Coordinator(heartbeat_timeout=timeout, heartbeat_interval=interval)
    (out / f"ready{rank}").write_text(str(os.getpid()))
    before = coord.store_requests
    stopped = coord.wait_for_stop(seconds)
    seen = time.time()
    rate = (coord.store_requests - before) / seconds
    # Written beside its name and renamed: the parent reads it as soon as the name exists.
    (out / f"rank{rank}.tmp").write_text(
        json.dumps({"seen": seen if stopped else None, "rate": rate})
    )
    os.replace(out / f"rank{rank}.tmp", out / f"rank{rank}.json")
    if stopped:
        os._exit(0)
    dist.barrier()
    coord.close(timeout=30)
    dist.destroy_process_group()


def _spawn(target: Any, world: int, *args: Any) -> tuple[list[Any], Path]:
    out = Path(tempfile.mkdtemp(prefix="tickwork-bench-"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, world, out, *args)) for r in range(world)]
    for p in procs:
        p.start()
    return procs, out


def _finish(procs: list[Any], timeout: float = 300) -> None:
    limit = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, limit - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(10)


def _wait_files(out: Path, names: list[str], timeout: float = 120) -> None:
    limit = time.monotonic() + timeout
    while not all((out / n).exists() for n in names):
        if time.monotonic() > limit:
            raise TimeoutError(f"missing {names} in {out}")
        time.sleep(0.02)


def propagation(world: int, requests: int, busy: bool) -> dict[str, float]:
    procs, out = _spawn(_propagation, world, requests, busy)
    _finish(procs)
    latencies = json.loads((out / "result.json").read_text())
    return {
        "p50_ms": _pct(latencies, 0.5) * 1e3,
        "p99_ms": _pct(latencies, 0.99) * 1e3,
        "max_ms": max(latencies) * 1e3,
    }


def costs(world: int, watch: bool = False) -> dict[str, float]:
    procs, out = _spawn(_costs, world, watch)
    _finish(procs)
    return dict(json.loads((out / "result.json").read_text()))


def kill_detection(
    timeout: float, interval: float, victim: int, sig: int, world: int
) -> dict[str, Any]:
    procs, out = _spawn(_idle, world, timeout, interval, timeout * 4 + 10)
    try:
        _wait_files(out, [f"ready{r}" for r in range(world)])
        time.sleep(1.5)
        killed = time.time()
        os.kill(procs[victim].pid, sig)
        others = [r for r in range(world) if r != victim]
        _wait_files(out, [f"rank{r}.json" for r in others], timeout * 4 + 30)
        seen = [json.loads((out / f"rank{r}.json").read_text())["seen"] for r in others]
        return {"detect_s": [None if s is None else s - killed for s in seen]}
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        _finish(procs, 10)


def idle_rate(world: int, seconds: float) -> list[float]:
    procs, out = _spawn(_idle, world, 5.0, 1.0, seconds)
    _finish(procs, seconds + 120)
    return [json.loads((out / f"rank{r}.json").read_text())["rate"] for r in range(world)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="fewer cases (smoke run)")
    parser.add_argument(
        "--costs-only",
        action="store_true",
        help="only the per-step costs, 2 ranks, without and with stall detection and the "
        "slow-rank report",
    )
    args = parser.parse_args()
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    import torch

    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, load {os.getloadavg()[0]:.2f}"
    )
    if args.costs_only:
        for watch in (False, True, False, True):
            c = costs(2, watch)
            print(
                f"per-step cost, 2 ranks, stall detection + slow-rank report "
                f"{'on' if watch else 'off'} (ns): "
                + ", ".join(f"{k} {v:.0f}" for k, v in c.items()),
                flush=True,
            )
        print(f"# load after: {os.getloadavg()[0]:.2f}")
        return
    worlds = [2] if args.quick else [2, 4]
    for world in worlds:
        for busy in (False, True):
            r = propagation(world, args.requests, busy)
            kind = "busy" if busy else "idle"
            print(
                f"propagation {world} ranks {kind}: p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms",
                flush=True,
            )
    for world in worlds:
        c = costs(world)
        print(
            f"per-step cost, {world} ranks (ns): "
            + ", ".join(f"{k} {v:.0f}" for k, v in c.items()),
            flush=True,
        )
    rates = idle_rate(2, 10.0)
    print(f"idle store requests/s per rank (2 ranks, interval 1 s): {rates}", flush=True)
    for timeout, interval in ((1.0, 0.25), (2.0, 0.5), (5.0, 1.0)):
        r = kill_detection(timeout, interval, 1, signal.SIGKILL, 2)
        print(
            f"dead rank (SIGKILL), heartbeat_timeout {timeout} s, interval {interval} s: "
            f"detected after {r['detect_s']} s",
            flush=True,
        )
    for name, sig in (("SIGKILL", signal.SIGKILL), ("SIGSTOP", signal.SIGSTOP)):
        r = kill_detection(5.0, 1.0, 0, sig, 3)
        print(
            f"store host (rank 0) {name}, heartbeat_timeout 5 s: ranks 1, 2 stopped after "
            f"{r['detect_s']} s",
            flush=True,
        )
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
