"""One rank of the cross-namespace stop-latency run (tests/distributed/test_dist_netns.py and
benchmarks/distributed_netns.py): config JSON in argv[1].

Rank 0 hosts a TCPStore on port 29500 of its namespace; the others reach it through the delay
relay (``relay_host:relay_port``). Each round makes a Coordinator (defaults), a rank > 0 requests
a stop 0.3 s after the rendezvous, and every rank records (monotonic clock, shared by the
namespaces) when it saw the stop. Writes ``rank<r>.json``; every wait is bounded.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


def main(cfg: dict[str, Any]) -> None:
    import torch.distributed as dist

    from tickwork.distributed import Coordinator

    rank, world, out = cfg["rank"], cfg["world"], Path(cfg["out"])
    result: dict[str, Any] = {"rank": rank, "rounds": []}
    try:
        timeout = datetime.timedelta(seconds=60)
        if rank == 0:
            store = dist.TCPStore(  # type: ignore[attr-defined]  # untyped in torch
                "127.0.0.1", 29500, world, True, timeout=timeout, wait_for_workers=False
            )
        else:
            store = dist.TCPStore(  # type: ignore[attr-defined]  # untyped in torch
                cfg["relay_host"], cfg["relay_port"], world, False, timeout=timeout
            )
        for i in range(cfg["rounds"]):
            coord = Coordinator(store, rank=rank, world_size=world, namespace=f"round{i}")
            seen: list[float] = []

            def watch(c: Coordinator = coord, into: list[float] = seen) -> None:
                if c.wait_for_stop(30):
                    into.append(time.monotonic())

            watcher = threading.Thread(target=watch)
            watcher.start()
            stopper = 1 + i % (world - 1)
            began = None
            if rank == stopper:
                threading.Event().wait(0.3)
                began = time.monotonic()
                coord.request_stop()
            watcher.join(40)
            result["rounds"].append(
                {"stopper": stopper, "began": began, "seen": seen[0] if seen else None}
            )
            coord.close(timeout=30)
    except BaseException:
        result["crash"] = traceback.format_exc()
    tmp = out / f"rank{rank}.tmp"
    tmp.write_text(json.dumps(result))
    tmp.replace(out / f"rank{rank}.json")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
