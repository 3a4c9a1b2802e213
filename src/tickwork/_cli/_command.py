"""Running the user's command for one checkpoint (``tickwork follow``'s ``evaluate``).

The arguments are the user's, with ``{checkpoint}``, ``{step}``, ``{dir}`` and ``{name}``
replaced (plain text replacement, not ``str.format``: other braces, JSON say, are left alone);
when no argument names a placeholder, the checkpoint's path is appended. The command also gets
``TICKWORK_CHECKPOINT``, ``TICKWORK_STEP``, ``TICKWORK_DIR`` and ``TICKWORK_ATTEMPT`` in its
environment (safer than a placeholder inside an ``sh -c`` string). It runs without a shell.

Its output (stdout and stderr together) is read line by line by a helper thread and handed to
``on_line``; the last lines are kept for the failure message. A non-zero exit status, or running
past ``timeout``, raises :class:`CommandFailed` (which the evaluator retries). A stop terminates
the command and what it started (SIGTERM to its process group, then SIGKILL after ``kill_grace``
seconds) and raises :class:`CommandInterrupted`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import Checkpoint
from .._clock import MONOTONIC
from .._naming import thread_name
from .._protocols import Waitable
from .._validate import check_optional_nonnegative

__all__ = [
    "CommandFailed",
    "CommandInterrupted",
    "CommandResult",
    "CommandRunner",
    "check_program",
    "substitute",
]

logger = logging.getLogger(__name__)

PLACEHOLDERS = ("{checkpoint}", "{step}", "{dir}", "{name}")
_POLL = 0.05  # seconds between looks at the command while it runs (on the stop signal's wait)
_TAIL_LINES = 20
_READER_JOIN = 2.0  # seconds to wait for the output after the command exited
_POSIX = os.name == "posix"
_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)


def check_program(program: str) -> None:
    """ValueError unless ``program`` (the command's first word) can be run: a path to an
    executable file, or a name found on PATH. A placeholder (``{checkpoint}``) is not checked."""
    if "{" in program:
        return
    if os.sep in program or (os.altsep is not None and os.altsep in program):
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise ValueError(f"the command {program!r} is not an executable file")
        return
    if shutil.which(program) is None:
        raise ValueError(f"the command {program!r} was not found on PATH")


@dataclass(frozen=True)
class CommandResult:
    """A command that exited 0: its status, how long it ran, its last lines of output."""

    returncode: int
    seconds: float
    tail: tuple[str, ...]


class CommandFailed(RuntimeError):
    """The command exited non-zero, could not start, or ran past its timeout."""

    def __init__(self, message: str, returncode: int | None, tail: Sequence[str]) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.tail = tuple(tail)


class CommandInterrupted(RuntimeError):
    """A stop was requested while the command ran; it was terminated."""


def substitute(args: Sequence[str], checkpoint: Checkpoint, directory: str) -> list[str]:
    """The command line for ``checkpoint`` (see the module docs)."""
    values = {
        "{checkpoint}": checkpoint.path,
        "{step}": "" if checkpoint.step is None else str(checkpoint.step),
        "{dir}": directory,
        "{name}": checkpoint.name,
    }
    if not any(token in arg for arg in args for token in PLACEHOLDERS):
        return [*args, checkpoint.path]
    out = []
    for arg in args:
        for token, value in values.items():
            arg = arg.replace(token, value)
        out.append(arg)
    return out


class CommandRunner:
    """Callable as ``evaluate(checkpoint)``: runs the command for it; see the module docs."""

    def __init__(
        self,
        args: Sequence[str],
        directory: str,
        *,
        stop: Waitable,
        timeout: float | None = None,
        on_line: Callable[[Checkpoint, str], None] | None = None,
        on_attempt_failed: Callable[[Checkpoint, int, CommandFailed], None] | None = None,
        kill_grace: float = 5.0,
    ) -> None:
        if not args:
            raise ValueError("'command' must name a program to run; got nothing")
        self._args = tuple(args)
        self._directory = directory
        self._stop = stop
        self._timeout = check_optional_nonnegative("command_timeout", timeout)
        self._on_line = on_line
        self._on_attempt_failed = on_attempt_failed
        self._kill_grace = kill_grace
        self._attempts: Counter[str] = Counter()
        self.started_at: float | None = None  # when the command in progress started

    def __call__(self, checkpoint: Checkpoint) -> CommandResult:
        self._attempts[checkpoint.path] += 1
        attempt = self._attempts[checkpoint.path]
        try:
            return self._run(checkpoint, attempt)
        except CommandFailed as failure:
            if self._on_attempt_failed is not None:
                self._on_attempt_failed(checkpoint, attempt, failure)
            raise
        finally:
            self.started_at = None

    def _run(self, checkpoint: Checkpoint, attempt: int) -> CommandResult:
        argv = substitute(self._args, checkpoint, self._directory)
        env = dict(
            os.environ,
            TICKWORK_CHECKPOINT=checkpoint.path,
            TICKWORK_STEP="" if checkpoint.step is None else str(checkpoint.step),
            TICKWORK_DIR=self._directory,
            TICKWORK_ATTEMPT=str(attempt),
        )
        started = self.started_at = MONOTONIC.now()
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                errors="replace",
                start_new_session=_POSIX,  # its own process group: a stop ends its children too
            )
        except OSError as exc:
            raise CommandFailed(f"could not run {argv[0]!r}: {exc}", None, ()) from exc
        program = os.path.basename(argv[0])
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        reader = threading.Thread(
            target=self._read,
            args=(process, checkpoint, tail),
            name=thread_name(f"follow output ({checkpoint.name})"),
            daemon=True,
        )
        reader.start()
        timed_out = interrupted = False
        try:
            while process.poll() is None:
                if self._stop.is_set():
                    interrupted = True
                    self._end(process, program)
                    break
                if self._timeout is not None and MONOTONIC.now() - started > self._timeout:
                    timed_out = True
                    self._end(process, program)
                    break
                MONOTONIC.wait(self._stop, _POLL)
        except BaseException:  # a second Ctrl-C (KeyboardInterrupt): leave nothing running
            _signal(process, _KILL)
            process.wait()
            raise
        reader.join(_READER_JOIN)
        seconds = MONOTONIC.now() - started
        code = process.returncode
        if interrupted:
            raise CommandInterrupted(f"{program!r} was terminated by a stop after {seconds:.1f} s")
        if timed_out:
            raise CommandFailed(
                f"{program!r} ran past --command-timeout ({self._timeout:g} s) and was terminated",
                code,
                tail,
            )
        if code != 0:
            raise CommandFailed(f"{program!r} exited with status {code}", code, tail)
        return CommandResult(code, seconds, tuple(tail))

    def _read(
        self, process: subprocess.Popen[str], checkpoint: Checkpoint, tail: deque[str]
    ) -> None:
        stream = process.stdout
        if stream is None:
            return
        with stream:
            for raw in stream:
                line = raw.rstrip("\n")
                tail.append(line)
                if self._on_line is not None:
                    self._on_line(checkpoint, line)

    def _end(self, process: subprocess.Popen[str], program: str) -> None:
        """SIGTERM to the command's process group (its children too), then SIGKILL if it is
        still there after the grace period."""
        _signal(process, signal.SIGTERM)
        deadline = MONOTONIC.now() + self._kill_grace
        while process.poll() is None and MONOTONIC.now() < deadline:
            MONOTONIC.wait(None, _POLL)  # the stop is already set: a plain timed wait
        if process.poll() is None:
            logger.warning(
                "the command %r (pid %d) was still running %g s after SIGTERM: sent %s to its "
                "process group",
                program,
                process.pid,
                self._kill_grace,
                signal.Signals(_KILL).name,
            )
            _signal(process, _KILL)
            process.wait()


def _signal(process: subprocess.Popen[str], signum: int) -> None:
    """Send ``signum`` to the command's process group (POSIX), else to the command."""
    try:
        if _POSIX:
            os.killpg(process.pid, signum)
        else:  # pragma: no cover - Windows has no process groups to signal
            process.send_signal(signum)
    except ProcessLookupError:
        pass  # it ended meanwhile
