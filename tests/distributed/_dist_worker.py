"""One rank of a real multi-process test: torch.distributed (gloo) or jax.distributed, on localhost.

Run by the tests either through ``python -m torch.distributed.run`` (this file as the script, the
config as JSON in argv[1]) or through a multiprocessing spawn (:func:`spawn_entry`). Each rank
writes ``ready<rank>`` once its Coordinator is built and ``rank<rank>.json`` with what it saw.
Every loop here is bounded by ``cfg["limit"]`` seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _write(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _error(e: BaseException | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "type": type(e).__name__,
        "str": str(e),
        "rank": getattr(e, "rank", None),
        "type_name": getattr(e, "type_name", None),
        "remote_traceback": getattr(e, "remote_traceback", None),
    }


def _join(coord: Any, result: dict[str, Any]) -> None:
    try:
        coord.join(stop_grace_period_secs=10)
        result["join"] = None
    except BaseException as e:
        result["join"] = _error(e)


def _torch_setup(rank: int, world: int, cfg: dict[str, Any]) -> Any:
    import datetime

    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=60)
    if cfg["launcher"] == "spawn":
        port_file = Path(cfg["out"]) / "port"
        if rank == 0:
            store = dist.TCPStore(  # type: ignore[attr-defined]  # torch does not re-export it typed
                "127.0.0.1", 0, world, True, timeout=timeout, wait_for_workers=False
            )
            _write(port_file, store.port)
        else:
            limit = time.monotonic() + 60
            while not port_file.exists():
                if time.monotonic() > limit:
                    raise TimeoutError("rank 0 never wrote the store's port")
                time.sleep(0.01)
            port = json.loads(port_file.read_text())
            store = dist.TCPStore(  # type: ignore[attr-defined]  # torch does not re-export it typed
                "127.0.0.1", port, world, False, timeout=timeout
            )
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return dist


def run(rank: int, world: int, cfg: dict[str, Any]) -> None:
    out = Path(cfg["out"])
    result: dict[str, Any] = {"rank": rank, "pid": os.getpid()}
    scenario = cfg["scenario"]
    limit = time.monotonic() + cfg.get("limit", 60)
    from tickwork.distributed import Coordinator

    if cfg.get("engine", "torch") == "jax":
        import jax

        jax.distributed.initialize(
            coordinator_address=cfg["jax_address"], num_processes=world, process_id=rank
        )
        dist: Any = None  # torch.distributed, when it is the engine
    else:
        dist = _torch_setup(rank, world, cfg)
    if scenario == "churn":
        _churn(rank, cfg, out, result)
        return
    stall: dict[str, Any] = {}
    if "stall_timeout" in cfg:
        stall = {"stall_timeout": cfg["stall_timeout"], "stall_dir": str(out / "stalls")}
    if "report_slow_ranks" in cfg:
        stall["report_slow_ranks"] = cfg["report_slow_ranks"]
    coord = Coordinator(
        heartbeat_timeout=cfg.get("heartbeat_timeout", 2.0),
        heartbeat_interval=cfg.get("heartbeat_interval", 0.25),
        **stall,
    )
    result["world"] = coord.world_size
    result["coord_rank"] = coord.rank
    result["store"] = coord.store_description
    (out / f"pid{rank}").write_text(str(os.getpid()))
    (out / f"ready{rank}").write_text("1")
    target = cfg.get("target", 1)
    try:
        if scenario in ("error", "clean"):
            step = 0
            while not coord.should_stop() and time.monotonic() < limit:
                if rank == target and step == 3:
                    if scenario == "clean":
                        coord.request_stop()
                    else:
                        with coord.stop_on_exception():
                            raise ValueError(f"boom on rank {rank}")
                step += 1
                time.sleep(0.01)
            _join(coord, result)
        elif scenario == "allreduce":
            import torch

            rng = random.Random(cfg["seed"])
            target = rng.randrange(world)
            stop_step = rng.randrange(1, 40)
            result["target"], result["stop_step"] = target, stop_step
            jitter = random.Random(cfg["seed"] * 100 + rank)
            step = 0
            total = torch.zeros(1)
            while time.monotonic() < limit:
                if coord.should_stop_at(step):
                    break
                if rank == target and step == stop_step:
                    coord.request_stop()
                t = torch.ones(1)
                dist.all_reduce(t)
                total += t
                step += 1
                if jitter.random() < 0.3:
                    time.sleep(jitter.random() * 0.004)
            result["steps"] = step
            result["total"] = float(total.item())
            _join(coord, result)
        elif scenario in ("sigterm", "overrun", "torchrun_kill"):
            import torch

            saves: list[dict[str, Any]] = []

            def save(info: Any) -> None:
                saves.append(
                    {
                        "step": info.step,
                        "signal": info.signal,
                        "signalled_rank": info.signalled_rank,
                        "remaining": info.remaining(),
                    }
                )
                if scenario == "overrun":
                    info.cancelled.wait(30)
                    saves[-1]["cancelled"] = info.cancelled.is_set()

            gated = scenario != "torchrun_kill"
            with coord.stop_on_signals(
                final_checkpoint=save, deadline=cfg.get("deadline", 20)
            ) as s:
                step = 0
                while time.monotonic() < limit:
                    if gated:
                        if coord.should_stop_at(step):
                            break
                        t = torch.ones(1)
                        dist.all_reduce(t)
                    elif coord.should_stop():
                        break
                    step += 1
                    time.sleep(0.005)
            result["steps"] = step
            result["saves"] = saves
            report = s.report
            result["report"] = (
                None
                if report is None
                else {
                    "ran": report.ran,
                    "completed": report.completed,
                    "overrun": report.overrun,
                    "skipped": report.skipped,
                    "seconds": report.seconds,
                    "step": report.step,
                }
            )
            result["received"] = [sig.name for sig in s.received]
            _join(coord, result)
        elif scenario == "die":
            while not coord.should_stop() and time.monotonic() < limit:
                time.sleep(0.005)
            result["stopped_at"] = time.time()
            _join(coord, result)
        elif scenario == "tuner":
            import torch

            from tickwork import StepsPerExecutionTuner
            from tickwork.distributed import SharedStepsPerExecution

            spe = SharedStepsPerExecution(coord, 1)
            step = 0
            tuner = None
            if rank == 0:
                tuner = StepsPerExecutionTuner(
                    lambda: step, spe, interval=0.05, change_spe_interval=1, max_spe=64
                )
                tuner.start()
            calls = []
            mismatches = 0
            started = time.monotonic()
            while time.monotonic() < limit:
                if coord.should_stop_at(step):
                    break
                n = spe.value_at(step)
                calls.append((step, n))
                seen = torch.tensor([float(n)])
                dist.all_reduce(seen, op=dist.ReduceOp.MAX)
                if int(seen.item()) != n:
                    mismatches += 1
                # Ranks differ in speed: rank r takes (r + 1) * 0.2 ms per step plus a fixed cost.
                time.sleep(0.002 + n * (rank + 1) * 0.0002)
                step += n
                if rank == 0 and time.monotonic() - started > cfg.get("seconds", 3.0):
                    coord.request_stop()
            if tuner is not None:
                tuner.stop()
            result["calls"] = calls
            result["mismatches"] = mismatches
            result["steps"] = step
            _join(coord, result)
        elif scenario == "stall":
            _stall(rank, cfg, coord, dist, out, limit, result)
        elif scenario == "pace":
            _pace(rank, cfg, coord, dist, limit, result)
        elif scenario == "jax_sigterm":
            steps_saved: list[int | None] = []
            with coord.stop_on_signals(final_checkpoint=lambda i: steps_saved.append(i.step)) as s:
                result["sigterm_handler"] = repr(signal.getsignal(signal.SIGTERM))
                step = 0
                while time.monotonic() < limit and not coord.should_stop_at(step):
                    time.sleep(0.01)
                    step += 1
            result["steps"] = step
            result["saves"] = steps_saved
            _join(coord, result)
        elif scenario == "gated":  # jax: the agreed step without collectives
            step = 0
            rng = random.Random(rank)
            while time.monotonic() < limit:
                if coord.should_stop_at(step):
                    break
                if rank == target and step == 7:
                    coord.request_stop()
                time.sleep(rng.random() * 0.01)
                step += 1
            result["steps"] = step
            _join(coord, result)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
    except BaseException as e:
        result["crash"] = traceback.format_exc()
        result["crash_type"] = type(e).__name__
    _write(out / f"rank{rank}.json", result)
    if result.get("join") is not None or "crash" in result:
        # The job is broken (a dead peer, a dead store): leave without collective teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if scenario == "stall" else 0)  # a stalled job's script fails, as a user's does
    coord.close(timeout=30)
    if dist is not None:
        dist.destroy_process_group()
    elif cfg.get("engine") == "jax":
        import jax

        jax.distributed.shutdown()  # type: ignore[no-untyped-call]  # jax leaves it untyped


def _churn(rank: int, cfg: dict[str, Any], out: Path, result: dict[str, Any]) -> None:
    """Coordinators with the defaults made one after another, 0.1 s apart (a new one per
    phase), each running a few all-reduced steps: any verdict here is a false one."""
    import torch
    import torch.distributed as dist

    from tickwork.distributed import Coordinator

    (out / f"pid{rank}").write_text(str(os.getpid()))
    (out / f"ready{rank}").write_text("1")
    errors: list[dict[str, Any] | None] = []
    seconds: list[float] = []
    try:
        for i in range(cfg["coordinators"]):
            began = time.monotonic()
            with Coordinator(namespace=f"churn{i}") as coord:
                seconds.append(time.monotonic() - began)
                step = 0
                while not coord.should_stop_at(step) and step < 5:
                    t = torch.ones(1)
                    dist.all_reduce(t)
                    step += 1
                try:
                    coord.raise_requested_exception()
                    errors.append(None)
                except BaseException as e:
                    errors.append(_error(e))
            time.sleep(0.1)
    except BaseException as e:
        result["crash"] = traceback.format_exc()
        result["crash_type"] = type(e).__name__
    result["errors"] = errors
    result["construction_seconds"] = seconds
    _write(out / f"rank{rank}.json", result)
    if "crash" in result:
        os._exit(0)
    dist.destroy_process_group()


def _stall(
    rank: int,
    cfg: dict[str, Any],
    coord: Any,
    dist: Any,
    out: Path,
    limit: float,
    result: dict[str, Any],
) -> None:
    """A real all-reduce per step. ``mode``: how rank ``target`` gets stuck at step 5 (``sleep``
    in the step, ``spin`` in pure Python, ``queue``: blocked on an empty queue, ``gil``: in C
    code that holds the GIL), or ``steady``:
    nobody gets stuck, but steps vary, step 10 takes ``long`` s and rank 2 starts ``late`` s
    after the others; rank 0 stops the job at step 40."""
    import queue

    mode, target = cfg["mode"], cfg.get("target", 1)
    rng = random.Random(rank)
    if mode == "steady" and rank == 2:
        time.sleep(cfg["late"])
    step = 0
    while time.monotonic() < limit:
        if coord.should_stop_at(step):
            break
        if mode == "steady" and rank == 0 and step == 40:
            coord.request_stop()
        if rank == target and step == 5 and mode != "steady":
            (out / f"stuck{rank}").write_text(json.dumps(time.time()))
            if mode == "sleep":
                time.sleep(60)
            elif mode == "spin":
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    sum(range(1000))
            elif mode == "gil":  # C code that holds the GIL: no Python thread of this rank runs
                import ctypes

                ctypes.PyDLL(None).sleep(60)
            else:
                queue.Queue().get(timeout=60)
        if dist is not None:  # torch: a real all-reduce; JAX: no collective, steps drift apart
            import torch

            t = torch.ones(1)
            dist.all_reduce(t)
        if mode == "steady":
            time.sleep(cfg["long"] if step == 10 else rng.random() * 0.3)
        else:  # steps the heartbeats can see (the clock starts at a step seen to complete)
            time.sleep(0.1)
        step += 1
    result["steps"] = step
    _join(coord, result)


def _pace(
    rank: int, cfg: dict[str, Any], coord: Any, dist: Any, limit: float, result: dict[str, Any]
) -> None:
    """A real all-reduce per step (torch; JAX: none, the ranks drift apart), 20 ms of work a
    step on every rank (asleep: the CPU is not what is measured), rank ``pause_rank`` (1)
    pausing 0.5 s once (at 1.5 s), then from 4 s on rank ``slow_rank`` (2) working ``slow`` x
    as long; rank 0 stops the job once it names a slow rank (or after ``limit``)."""
    import dataclasses

    slow_rank, pause_rank = cfg.get("slow_rank", 2), cfg.get("pause_rank", 1)
    began = time.monotonic()
    onset = began + 4.0
    paused = False
    step = 0
    named_at = None
    while time.monotonic() < limit:
        if coord.should_stop_at(step):
            break
        now = time.monotonic()
        if rank == pause_rank and not paused and now > began + 1.5:
            paused = True
            time.sleep(0.5)
        work = 0.02 * (cfg["slow"] if rank == slow_rank and now >= onset else 1.0)
        time.sleep(work)
        if dist is not None:
            import torch

            dist.all_reduce(torch.ones(1))
        if rank == 0 and named_at is None and coord.slow_ranks:
            named_at = time.monotonic()
            coord.request_stop()
        step += 1
    result["steps"] = step
    result["named_after_onset"] = None if named_at is None else named_at - onset
    result["slow"] = [dataclasses.asdict(s) for s in coord.slow_ranks]
    result["history"] = [dataclasses.asdict(s) for s in coord.slow_rank_history]
    _join(coord, result)


def spawn_entry(rank: int, world: int, cfg: dict[str, Any]) -> None:
    os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    if cfg.get("stderr_files"):  # what a C thread (faulthandler) writes goes to fd 2
        fd = os.open(Path(cfg["out"]) / f"stderr{rank}.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    run(rank, world, cfg)


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), config)
