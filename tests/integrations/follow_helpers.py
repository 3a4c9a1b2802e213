"""`tickwork follow` in its own process, for the end-to-end tests of the done marker and the
trainer callbacks: start it on a directory, wait (bounded) for it to end, read what it evaluated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

LIMIT = 120.0  # seconds a follow run may take; reached only when something is wrong

# The command run per checkpoint: records the step and the path it was given, once per call.
RECORD = textwrap.dedent(
    """
    import sys
    path, step, log = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(log, "a") as out:
        out.write(f"{step} {path}\\n")
    """
)


def start_follow(
    directory: str | Path, log: Path, *extra: str, marker: str = "DONE"
) -> subprocess.Popen[str]:
    """`tickwork follow DIRECTORY --done-marker MARKER -- python RECORD {checkpoint} {step} LOG`.

    Polls every 0.1 s (also how often the marker is looked for) and treats files that cannot be
    checked structurally as complete after 0.2 s unchanged, so the runs end quickly.
    """
    env = dict(os.environ)
    env.pop("TICKWORK_CHECKPOINT", None)
    return subprocess.Popen(
        [
            sys.executable, "-c", "import sys, tickwork._cli as c; sys.exit(c.main())",
            "follow", str(directory), "--done-marker", marker, "--poll-interval", "0.1",
            "--settle", "0.2", "--quiet", *extra, "--",
            sys.executable, "-c", RECORD, "{checkpoint}", "{step}", str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip


@contextmanager
def following(
    directory: str | Path, log: Path, *extra: str, marker: str = "DONE"
) -> Iterator[subprocess.Popen[str]]:
    """:func:`start_follow`, killed at the end of the block if it is still running."""
    process = start_follow(directory, log, *extra, marker=marker)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def finish(
    process: subprocess.Popen[str], limit: float = LIMIT, context: str = ""
) -> tuple[int, str, str]:
    """Wait for `tickwork follow` to end (killing it past ``limit``): (status, stdout, stderr).
    ``context`` (what the job printed, say) goes into the failure message."""
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"tickwork follow did not end within {limit} s:\n{out}\n{err}\n{context}")
    return process.returncode, out, err


def evaluated_steps(log: Path) -> list[int]:
    """The steps the follower evaluated, in the order it evaluated them."""
    if not log.exists():
        return []
    return [int(line.split()[0]) for line in log.read_text().splitlines()]


def marker_payload(directory: Path, name: str = "DONE") -> dict[str, object]:
    return dict(json.loads((directory / name).read_text()))


def drive_worker(
    worker: subprocess.Popen[str], ready: Path | None, waiting_at: str
) -> tuple[int, str, str]:
    """Wait for a training worker to end; with ``ready``, SIGTERM it once that file exists (it
    writes it while waiting at ``waiting_at``). Bounded; the worker is killed if still running."""
    try:
        if ready is not None:
            limit = time.monotonic() + LIMIT
            while not ready.exists():
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < limit, f"the worker never reached {waiting_at}"
                time.sleep(0.02)  # waiting for another process's file, bounded
            worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=LIMIT)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    return worker.returncode, out, err


def worker_result(out: str) -> dict[str, Any]:
    """The JSON record a worker prints as its last line."""
    return dict(json.loads(out.strip().splitlines()[-1]))
