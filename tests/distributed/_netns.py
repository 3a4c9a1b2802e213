"""Machines simulated with network namespaces: one per rank, joined by a bridge (root only).

:class:`Network` makes a hub namespace holding a bridge and one namespace per "machine", each with
a veth link to the bridge and an address ``10.213.<net>.<10 + k>/24`` (addresses inside the
namespaces it made, nothing else). :meth:`Network.popen` starts a process inside one machine (in a
session of its own); :meth:`Network.close` kills every process it started (resumed first) and
deletes the namespaces. Names carry this process's pid, so parallel runs never collide.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["Network", "available", "run_latency_job"]

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def available() -> str | None:
    """None when namespaces can be made here; otherwise why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Network:
    """``machines`` namespaces on one bridge (see module docs)."""

    def __init__(self, machines: int) -> None:
        tag = f"{os.getpid() % 100000}"
        self.net = os.getpid() % 200 + 20
        self.hub = f"twh{tag}"
        self.names = [f"tw{tag}m{k}" for k in range(machines)]
        self._procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def address(self, machine: int) -> str:
        return f"10.213.{self.net}.{10 + machine}"

    def _build(self) -> None:
        _ip("netns", "add", self.hub)
        self._made.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for k, name in enumerate(self.names):
            _ip("netns", "add", name)
            self._made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
            _ip(
                "-n",
                name,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"p{k}",
                "netns",
                self.hub,
            )
            _ip("-n", name, "addr", "add", f"{self.address(k)}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", self.hub, "link", "set", f"p{k}", "master", "br0")
            _ip("-n", self.hub, "link", "set", f"p{k}", "up")

    def popen(self, machine: int, cmd: list[str], log: Path, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside ``machine``'s namespace, output to ``log``."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.names[machine], *cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,
            )
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self._made = []

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_latency_job(
    net: Network, out: Path, world: int, rounds: int, delay: float, src: Path = SRC
) -> dict[int, dict[str, Any]]:
    """Run ``_latency_worker`` on ``world`` machines (rank 0 hosts the store, the others reach
    it through ``_relay`` with ``delay`` s each way); the ranks' results (bounded wait)."""
    env = {"PYTHONPATH": str(src), "TORCH_CPP_LOG_LEVEL": "ERROR", "PATH": "/usr/bin:/bin"}
    relay = net.popen(
        0,
        [
            sys.executable,
            "-u",
            str(HERE / "_relay.py"),
            net.address(0),
            "29501",
            "127.0.0.1",
            "29500",
            str(delay),
        ],
        out / "relay.log",
        env=env,
    )
    for rank in range(world):
        cfg = {
            "rank": rank,
            "world": world,
            "out": str(out),
            "rounds": rounds,
            "relay_host": net.address(0),
            "relay_port": 29501,
        }
        net.popen(
            rank,
            [sys.executable, str(HERE / "_latency_worker.py"), json.dumps(cfg)],
            out / f"rank{rank}.log",
            env=env,
        )
    limit = time.monotonic() + 180
    names = [out / f"rank{r}.json" for r in range(world)]
    while not all(n.exists() for n in names):
        if time.monotonic() > limit:
            logs = {p.name: p.read_text(errors="replace")[-2000:] for p in out.glob("*.log")}
            raise AssertionError(f"ranks did not finish within 180 s: {logs}")
        assert relay.poll() is None, (out / "relay.log").read_text()
        time.sleep(0.1)
    return {r: json.loads(n.read_text()) for r, n in enumerate(names)}
