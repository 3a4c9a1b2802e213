"""Shared fixtures: a fake clock, and a check that no test leaves a tickwork thread running."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickwork._naming import is_own
from tickwork.testing import FakeClock

# Every thread tickwork starts is recorded (tickwork._naming.is_own), whatever its name: one check
# catches a TimedThread (named by its user or not), a SidecarEvaluator, a checkpoint watcher or a
# follow reader alike.


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at t=1000 (not 0, so code that confuses 0 with 'unset' shows)."""
    return FakeClock(1000.0)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves one of tickwork's threads running (bounded real wait)."""
    before = set(threading.enumerate())
    yield
    limit = time.monotonic() + 5.0
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and is_own(t)
        ]
        if not leaked or time.monotonic() > limit:
            break
        leaked[0].join(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


# -- no process of the suite's own is left behind ----------------------------------------------
#
# The pytest process makes itself the "child subreaper" (Linux prctl PR_SET_CHILD_SUBREAPER): a
# process the suite started whose parent died (a torchrun worker after its agent was killed)
# becomes pytest's child instead of init's. At the end every descendant still there is a leak:
# it is resumed (a SIGSTOPped rank), killed, reaped, and the run fails naming it.

_PR_SET_CHILD_SUBREAPER = 36
# Helpers that live exactly as long as the pytest process and end with it: not leaks.
_ENDS_WITH_PYTEST = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "torch._inductor.compile_worker",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _descendants(root: int) -> dict[int, str]:
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        command = cmd.decode(errors="replace")
        if fields[0] == "Z" or any(helper in command for helper in _ENDS_WITH_PYTEST):
            continue
        parents[int(entry)] = int(fields[1])
        commands[int(entry)] = command.strip()[:200]
    found: dict[int, str] = {}
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor > 1:
            if ancestor == root:
                found[pid] = commands[pid]
                break
            ancestor = parents.get(ancestor)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    limit = time.monotonic() + 10.0
    left = _descendants(os.getpid())
    while left and time.monotonic() < limit:  # processes on their way out get a moment
        threading.Event().wait(0.2)
        left = _descendants(os.getpid())
    for pid in left:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
    while True:  # reap what was reparented here
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    if left:
        print(f"\nthe test suite left processes behind (now killed): {left}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
