"""A stalled job named, with every rank's stacks, and then ended so a launcher can restart it.

Detection costs nothing on the hot path: ``should_stop_at(step)`` already writes the step, every
heartbeat carries it, and every rank reads every rank's beat once per interval. The sender feeds
those steps to a :class:`~._stall_policy.StallWatch`; on a verdict it posts a ``stall`` entry to
the event log. Each rank, reading the first such entry (on its log reader, which is free even
while the main thread is stuck):

1. answers with its step and its main thread's innermost frames (``stall/<n>/<rank>``), waits
   (at most :data:`GATHER_SECONDS`) for the other live ranks' answers, and names the suspect
   (:func:`~._stall_policy.suspect`);
2. writes ``<stall_dir>/stall-rank<r>.txt`` (the verdict line ``suspect: rank N``, every rank's
   step and frames, and the stacks of all its own threads) and logs the same;
3. stops with :class:`StallError` (``join()`` and ``should_stop_at()`` raise it), and, if the
   process is still alive :data:`EXIT_GRACE_SECONDS` later (its main thread blocked in a
   collective, or one that caught the error), ends it with exit status :data:`STALL_EXIT_CODE`.

None of that runs when the main thread holds the GIL in C code (a call that never returns): no
Python thread of the rank runs, its heartbeats stop, and its peers declare it dead. The
*backstop* ends such a process: each heartbeat re-arms :func:`faulthandler.dump_traceback_later`
(its watchdog is a C thread, which runs without the GIL) for ``heartbeat_timeout +
EXIT_GRACE_SECONDS``; when no heartbeat comes that long, it writes every thread's stack to
standard error and exits with status 1. It is disarmed when the job fails (Python threads run
then) and when the Coordinator closes. faulthandler has one such timer per process: a
``dump_traceback_later`` of the user's own is replaced while stall detection runs.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from .._clock import MonotonicClock
from .._naming import start_daemon
from ._errors import StallError, StoreRecordError
from ._records import StallAnswer, Stalled, encode, parse_stall_answer
from ._stall_policy import Stall, StallWatch, suspect, waits_for_peers
from ._tracked import TrackedStore

if TYPE_CHECKING:
    from ._replica import Replica

__all__ = ["EXIT_GRACE_SECONDS", "GATHER_SECONDS", "STALL_EXIT_CODE", "Stalls"]

logger = logging.getLogger(__name__)

GATHER_SECONDS = 5.0
"""How long a rank waits for the other ranks' answers before it writes its report."""
EXIT_GRACE_SECONDS = 10.0
"""How long after its report a stalled job's process may still live before it is ended."""
STALL_EXIT_CODE = 87
"""The exit status of a process ended because its job stalled."""
SIGNATURE_FRAMES = 6

_exit_process = os._exit  # what ends the process (tests patch this module attribute)


def main_thread_frames() -> tuple[str, ...]:
    """The main thread's innermost frames as ``file.py:function``, innermost first."""
    frame = sys._current_frames().get(threading.main_thread().ident or -1)  # noqa: SLF001
    out: list[str] = []
    while frame is not None and len(out) < SIGNATURE_FRAMES:
        out.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}")
        frame = frame.f_back
    return tuple(out)


def all_stacks() -> str:
    """Every Python thread of this process with its stack, the main thread first."""
    names = {t.ident: t.name for t in threading.enumerate()}
    main = threading.main_thread().ident
    frames = sys._current_frames()  # noqa: SLF001
    parts = []
    for ident in sorted(frames, key=lambda i: (i != main, names.get(i, ""))):
        label = names.get(ident, "?") + (" (main)" if ident == main else "")
        stack = "".join(traceback.format_stack(frames[ident]))
        parts.append(f'Thread "{label}", id {ident}:\n{stack}')
    return "\n".join(parts)


class Stalls:
    """One rank's stall detection and report (see module docs)."""

    def __init__(self, replica: Replica, timeout: float | None, directory: Path) -> None:
        self._r = replica
        self.watch = StallWatch(list(range(replica.world)), timeout)
        self.directory = directory
        self._posted = False
        self._handled = False
        self._backstop = replica.timeout + EXIT_GRACE_SECONDS
        # Real time only: on a test's clock the heartbeats keep fake time.
        self._real = isinstance(replica.clock, MonotonicClock)
        self._armed = False
        self._arm_lock = threading.Lock()

    def arm_backstop(self) -> None:
        """After a heartbeat (sender thread): end this process if none comes for
        ``heartbeat_timeout + EXIT_GRACE_SECONDS`` (see module docs)."""
        with self._arm_lock:
            if not self._real or self._r.fatal is not None or self._r.closed:
                return
            faulthandler.dump_traceback_later(self._backstop, exit=True)
            self._armed = True

    def end_if_blocked_later(self) -> None:
        """The job failed (a dead rank, the store gone): if :data:`EXIT_GRACE_SECONDS` later
        this rank's main thread still waits for its peers in a collective (which a dead peer
        never completes, until the collective's own timeout), end the process with
        :data:`STALL_EXIT_CODE`, as for a stall. A main thread that is free is left alone."""
        start_daemon(self._end_if_blocked, f"distributed blocked-rank exit (rank {self._r.rank})")

    def _end_if_blocked(self) -> None:
        r = self._r
        if r.clock.wait(r.threads_stop, EXIT_GRACE_SECONDS):
            return  # closed: the main thread got out
        frames = main_thread_frames()
        if not waits_for_peers(frames):
            return
        logger.error(
            "rank %d: the job failed (%s) and this rank's main thread still waits for its "
            "peers %g s later (%s): ending the process with status %d",
            r.rank,
            r.fatal,
            EXIT_GRACE_SECONDS,
            " < ".join(frames),
            STALL_EXIT_CODE,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        _exit_process(STALL_EXIT_CODE)

    def after_fork_in_child(self) -> None:
        """faulthandler's watchdog thread did not survive the fork: nothing to cancel here
        (cancelling would wait for a thread that is not there)."""
        self._arm_lock = threading.Lock()
        self._armed = False

    def disarm_backstop(self) -> None:
        """The job failed or this rank leaves: Python threads take it from here."""
        with self._arm_lock:
            if self._armed:
                faulthandler.cancel_dump_traceback_later()
                self._armed = False

    def observe(
        self,
        now: float,
        steps: dict[int, int | None],
        live: list[int],
        firsts: dict[int, int | None] | None = None,
        phases: dict[int, str | None] | None = None,
    ) -> None:
        """The steps (and phases) read at ``now`` (heartbeat thread); posts a ``stall`` entry
        on a verdict."""
        self.watch.observe(now, steps, firsts, phases)
        if self._posted:
            return
        stall = self.watch.verdict(now, live)
        if stall is not None:
            self._posted = True
            self._post(stall)

    def _post(self, stall: Stall) -> None:
        r = self._r
        phase = self.watch.phase_of(stall.rank)
        logger.error(
            "rank %d: rank %d has made no progress for %.1f s (stall_timeout=%g s%s); steps %s",
            r.rank,
            stall.rank,
            stall.seconds,
            stall.timeout,
            "" if phase is None else f", in phase {phase!r}",
            stall.steps,
        )
        r.sender.enqueue(
            Stalled(origin=r.origin, rank=stall.rank, seconds=stall.seconds, timeout=stall.timeout),
            None,
        )

    def handle(self, kv: TrackedStore, index: int, entry: Stalled) -> None:
        """The log's first ``stall`` entry (on the log reader): answer, report, stop, end."""
        if self._handled:
            return
        self._handled = True
        r = self._r
        mine = StallAnswer(step=r.position, stack=main_thread_frames())
        key = f"{r.keys.prefix}stall/{index}/{r.rank}"
        kv.claim(key, encode(mine))
        with r.state:
            live = [x for x in range(r.world) if x not in r.dead and x not in r.log.left]
        names = {x: f"{r.keys.prefix}stall/{index}/{x}" for x in live}
        kv.wait(list(names.values()), GATHER_SECONDS)
        answers: dict[int, StallAnswer] = {r.rank: mine}
        for x, raw in zip(names, kv.get_many(list(names.values())), strict=True):
            if raw is None or x == r.rank:
                continue
            try:
                answers[x] = parse_stall_answer(raw, names[x], r.describe)
            except StoreRecordError as e:
                logger.warning("rank %d: a stall answer is not one: %s", r.rank, e)
        steps = {x: a.step for x, a in answers.items()}
        named, reason = suspect(steps, {x: a.stack for x, a in answers.items()})
        path = self._write(entry, named, reason, answers, live)
        error = StallError(named, reason, entry.seconds, entry.timeout, path)
        logger.error("rank %d: %s", r.rank, error)
        r.fail(error)
        start_daemon(self._end_later, f"distributed stall exit (rank {r.rank})")

    def _write(
        self,
        entry: Stalled,
        named: int | None,
        reason: str,
        answers: dict[int, StallAnswer],
        live: list[int],
    ) -> str | None:
        r = self._r
        lines = [
            f"tickwork stall report of rank {r.rank} ({r.where(r.rank)})",
            f"suspect: {'unknown' if named is None else f'rank {named}'}",
            f"reason: {reason}",
            f"the job made no progress for {entry.seconds:.1f} s "
            f"(stall_timeout={entry.timeout:g} s), seen by rank {entry.origin.rank}",
            "",
        ]
        for x in live:
            answer = answers.get(x)
            if answer is None:
                lines.append(f"rank {x}: no answer within {GATHER_SECONDS:g} s")
            else:
                frames = " < ".join(answer.stack) or "?"
                lines.append(f"rank {x}: step {answer.step}; main thread in {frames}")
        lines += ["", f"stacks of every thread of rank {r.rank}:", "", all_stacks()]
        path = self.directory / f"stall-rank{r.rank}.txt"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(path)
        except OSError:
            logger.exception("rank %d: the stall report could not be written to %s", r.rank, path)
            return None
        logger.error("rank %d: stall report written to %s:\n%s", r.rank, path, "\n".join(lines))
        return str(path)

    def _end_later(self) -> None:
        r = self._r
        r.clock.wait(None, EXIT_GRACE_SECONDS)
        logger.error(
            "rank %d: the job stalled and this process is still running %g s after its report: "
            "ending it with status %d",
            r.rank,
            EXIT_GRACE_SECONDS,
            STALL_EXIT_CODE,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        _exit_process(STALL_EXIT_CODE)
