"""Fork safety: a child never inherits running tickwork threads silently."""

from __future__ import annotations

import json
import os
import sys
import warnings

import pytest

from tickwork import Coordinator, LooperThread, every
from tickwork.testing import FakeClock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_child(check: object) -> dict[str, object]:
    """Fork; run check() in the child and return what it reported (as JSON through a pipe)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ (DeprecationWarning) and JAX, when an earlier test imported it
        # (RuntimeWarning), warn that forking a threaded process may deadlock: that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_end)
            result = check()  # type: ignore[operator]
            os.write(write_end, json.dumps(result).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks) or b"{}")
    assert os.waitstatus_to_exitcode(status) == 0, result
    return dict(result)


def test_a_timed_thread_does_not_run_in_the_child_and_can_start_again(
    clock: FakeClock, capfd: pytest.CaptureFixture[str]
) -> None:
    """In the child the TimedThread is not alive, says so in a warning, and starts afresh."""
    calls: list[float] = []
    thread = every(5.0, lambda: calls.append(clock.now()), clock=clock, name="metrics")
    thread.start()
    clock.wait_for_sleepers(1)

    def check() -> dict[str, object]:
        alive_after_fork = thread.is_alive()
        thread.start()  # its locks were reset: this must not deadlock
        clock.wait_for_sleepers(1)
        thread.stop(wait=True, timeout=30)
        return {"alive_after_fork": alive_after_fork, "calls": len(calls)}

    import logging

    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("tickwork").addHandler(handler)
    try:
        result = in_child(check)
    finally:
        logging.getLogger("tickwork").removeHandler(handler)
        thread.stop(wait=True, timeout=30)
    assert result == {"alive_after_fork": False, "calls": 2}
    assert "they do not run in the child process" in capfd.readouterr().err


def test_a_coordinator_in_the_child_does_not_wait_for_vanished_threads() -> None:
    """The child's Coordinator drops the parent's threads, so join() does not hang."""
    coord = Coordinator()
    looper = LooperThread.loop(coord, 60.0, lambda: None)

    def check() -> dict[str, object]:
        registered = len(coord._registered_threads)
        coord.request_stop()
        coord.join(stop_grace_period_secs=0)
        return {"registered": registered}

    try:
        assert in_child(check) == {"registered": 0}
    finally:
        coord.request_stop()
        coord.join()
    assert not looper.is_alive()
