"""Starting, watching and killing the ranks of a real multi-process test (every wait bounded)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed import _dist_worker
else:  # the tests run with this folder on sys.path
    import _dist_worker

import tickwork

WORKER = Path(_dist_worker.__file__).resolve()
SRC = Path(tickwork.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


class Job:
    """``world`` ranks of ``_dist_worker`` started by ``launcher`` ("spawn" or "torchrun")."""

    def __init__(self, launcher: str, world: int, out: Path, **cfg: Any) -> None:
        self.launcher = launcher
        self.world = world
        self.out = out
        self.cfg = {"launcher": launcher, "out": str(out), **cfg}
        self._procs: list[Any] = []
        self._popen: subprocess.Popen[bytes] | None = None
        self._log = out / "torchrun.log"

    def start(self) -> Job:
        if self.launcher == "spawn":
            os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
            ctx = multiprocessing.get_context("spawn")
            self._procs = [
                ctx.Process(target=_dist_worker.spawn_entry, args=(r, self.world, self.cfg))
                for r in range(self.world)
            ]
            for p in self._procs:
                p.start()
        else:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={self.world}",
                "--monitor-interval=0.1",
                str(WORKER),
                json.dumps(self.cfg),
            ]
            with self._log.open("wb") as log:
                self._popen = subprocess.Popen(
                    cmd,
                    env=_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        self._wait_files([f"ready{r}" for r in range(self.world)], timeout)

    def pid(self, rank: int) -> int:
        if self.launcher == "spawn":
            pid = self._procs[rank].pid
            assert pid is not None
            return int(pid)
        return int((self.out / f"pid{rank}").read_text())

    def results(self, ranks: list[int] | None = None, timeout: float = 90.0) -> dict[int, Any]:
        ranks = list(range(self.world)) if ranks is None else ranks
        self._wait_files([f"rank{r}.json" for r in ranks], timeout)
        return {r: json.loads((self.out / f"rank{r}.json").read_text()) for r in ranks}

    def wait_exit(self, timeout: float = 60.0) -> int | None:
        """The launcher's exit status (torchrun), or None for spawn once all ended."""
        limit = time.monotonic() + timeout
        if self._popen is not None:
            return self._popen.wait(timeout)
        for p in self._procs:
            p.join(max(0.1, limit - time.monotonic()))
            assert not p.is_alive(), f"rank process {p.pid} did not end within {timeout} s"
        return None

    def exit_codes(self, timeout: float, ranks: list[int] | None = None) -> dict[int, int | None]:
        """Each spawned rank's (of ``ranks``: all by default) exit status once they ended
        (bounded; None: still running)."""
        limit = time.monotonic() + timeout
        chosen = range(self.world) if ranks is None else ranks
        for rank in chosen:
            self._procs[rank].join(max(0.1, limit - time.monotonic()))
        return {rank: self._procs[rank].exitcode for rank in chosen}

    def _wait_files(self, names: list[str], timeout: float) -> None:
        limit = time.monotonic() + timeout
        while True:
            missing = [n for n in names if not (self.out / n).exists()]
            if not missing:
                return
            if time.monotonic() > limit:
                raise AssertionError(f"missing after {timeout} s: {missing}; {self.diagnostics()}")
            if self._popen is not None and self._popen.poll() is not None:
                time.sleep(0.2)  # the last files may still be landing
                missing = [n for n in names if not (self.out / n).exists()]
                if missing:
                    raise AssertionError(
                        f"torchrun exited ({self._popen.returncode}) before {missing}; "
                        f"{self.diagnostics()}"
                    )
                return
            time.sleep(0.05)

    def diagnostics(self) -> str:
        parts = [
            f"{path.name}: {path.read_text()[:2000]}"
            for path in sorted(self.out.glob("rank*.json"))
        ]
        if self._log.exists():
            parts.append("torchrun log tail:\n" + self._log.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def kill(self) -> None:
        """Kill everything this job started, stopped processes too: torchrun's workers live in
        sessions of their own, so each rank is resumed and killed by its pid as well."""
        for rank in range(self.world):
            path = self.out / f"pid{rank}"
            try:
                pid = int(path.read_text())
                if str(WORKER) not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    continue  # ended (a spawned rank, or a pid since reused)
            except (OSError, ValueError):
                continue
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
        if self._popen is not None:
            try:
                os.killpg(self._popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self._popen.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for p in self._procs:
            if p.is_alive():
                p.kill()
            p.join(10)
