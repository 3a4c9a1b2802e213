"""Running `tickwork follow`: the evaluator, the command per checkpoint, progress and exit status.

A :class:`tickwork.SidecarEvaluator` whose ``evaluate`` runs the command (:mod:`._command`), so
its retries, done marker, stall limit, state file and stop apply; SIGINT and SIGTERM request a
clean stop (:func:`tickwork.stop_on_signals`). Progress: one line per checkpoint (and the
command's output, unless ``--quiet``), a live status line on a terminal, a summary at the end.

Exit status (:func:`exit_status`):

* 0: every checkpoint handed out was evaluated (the run ended on the done marker, ``--timeout``,
  ``--max-evaluations`` or ``--until-step``);
* 1: at least one checkpoint failed every attempt;
* 2: bad usage (an option, the directory, the command);
* 3: ``--stall``: no new checkpoint for that long (training seems to have died);
* 128 + the signal number (130 for SIGINT, 143 for SIGTERM): stopped by a signal.

Failures win over a signal, and a signal over a stall.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .. import (
    Checkpoint,
    CheckpointFound,
    EndReason,
    Evaluated,
    Evaluating,
    Evaluation,
    FollowOptions,
    Outcome,
    ProgressEvent,
    SidecarEvaluator,
    SidecarStats,
    Waiting,
    stop_on_signals,
)
from .._checkpoints._sidecar_policy import RetryPolicy
from .._clock import MONOTONIC
from .._done_marker import read_training_end
from .._naming import thread_name
from ._command import CommandFailed, CommandInterrupted, CommandRunner
from ._console import console as console_for

__all__ = [
    "EXIT_FAILED",
    "EXIT_STALLED",
    "EXIT_USAGE",
    "FollowConfig",
    "exit_status",
    "follow",
    "one_line",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STALLED = 3

_LOOP_LOGGER = "tickwork._checkpoints._sidecar_loop"
_ENDINGS = {
    EndReason.DONE: "training is done (done marker)",
    EndReason.TIMEOUT: "no new checkpoint within --timeout",
    EndReason.STALLED: "no new checkpoint within --stall: training seems to have died",
    EndReason.MAX_EVALUATIONS: "--max-evaluations reached",
    EndReason.UNTIL_STEP: "--until-step reached",
    EndReason.FAILED: "a checkpoint failed every attempt (--fail-fast)",
    EndReason.STOPPED: "stopped",
    EndReason.ERROR: "an unexpected error",
}


@dataclass(frozen=True)
class FollowConfig:
    """What ``tickwork follow`` was asked to do: how to follow (``follow``, passed whole to the
    evaluator), how to retry, and the evaluator's other arguments (``options``)."""

    directory: str
    command: tuple[str, ...]
    follow: FollowOptions = field(default_factory=lambda: FollowOptions(skip_to_latest=False))
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    options: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    command_timeout: float | None = None
    verbose: int = 0


def exit_status(stats: SidecarStats, signals: Sequence[int]) -> int:
    """The exit status for a run that ended with ``stats`` after ``signals`` (see module docs)."""
    if stats.failed:
        return EXIT_FAILED
    if signals:
        return 128 + int(signals[0])
    if stats.end_reason is EndReason.STALLED:
        return EXIT_STALLED
    return EXIT_OK


def one_line(exc: BaseException) -> str:
    """An error as one line, each thing said once: an OSError whose message already names its
    path is shown without the ``[Errno N]`` prefix and the path repeated after it."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None and str(exc.filename) not in text:
            text = f"{text}: {exc.filename!r}"
    return " ".join(text.split())


def parse_storage_options(text: str | None) -> dict[str, Any] | None:
    """``--storage-options``: a JSON object, or None."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f"'--storage-options' must be a JSON object; got {text!r} ({exc})"
        ) from exc
    if not isinstance(value, dict):
        raise ValueError(f"'--storage-options' must be a JSON object; got {text!r}")
    return value


class _QuietCommandErrors(logging.Filter):
    """The evaluator logs each failed attempt with its traceback; for a command that traceback
    says nothing the CLI's own line does not, so those records are dropped (``-v`` keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        args = record.args if isinstance(record.args, tuple) else ()
        quiet = (CommandFailed, CommandInterrupted)
        return not (isinstance(exc, quiet) or any(isinstance(a, quiet) for a in args))


def _step(checkpoint: Checkpoint) -> str:
    return "?" if checkpoint.step is None else str(checkpoint.step)


class _Reporter:
    """Prints what happens: command output, failed attempts, finished checkpoints, status. The
    evaluator's progress events (``on_progress``) drive it: the result lines and the status
    line's "doing" part come from them, the counts from the evaluator's statistics."""

    def __init__(
        self, console: Console, config: FollowConfig, policy: RetryPolicy, stop: threading.Event
    ) -> None:
        self.console = console
        self.config = config
        self.policy = policy
        self.stop = stop
        self.evaluator: SidecarEvaluator[Any] | None = None
        self.runner: CommandRunner | None = None
        self._spinner = Spinner("dots", text="starting")
        self._last: ProgressEvent | None = None  # the latest event: what is being done

    def progress(self, event: ProgressEvent) -> None:
        """The evaluator's ``on_progress``: note what it does; print each finished checkpoint."""
        self._last = event
        if isinstance(event, Evaluated):
            self.result(event.evaluation)

    def line(self, checkpoint: Checkpoint, line: str) -> None:
        if not self.config.quiet:
            self.console.print(Text.assemble((f"{_step(checkpoint):>9} │ ", "dim"), line))

    def attempt_failed(self, checkpoint: Checkpoint, attempt: int, failure: CommandFailed) -> None:
        if self.stop.is_set() or attempt >= self.policy.max_attempts:
            return  # an interruption, or the last attempt: the result line says it
        delay = self.policy.delay(attempt)
        self.console.print(
            Text.assemble(
                ("↻ ", "yellow"),
                f"step {_step(checkpoint)}: attempt {attempt} of {self.policy.max_attempts} "
                f"failed ({failure}); trying again in {delay:g} s",
            )
        )
        self._tail(failure)

    def _tail(self, failure: CommandFailed) -> None:
        if self.config.quiet:  # the output was not shown as it came: show how it ended
            for line in failure.tail[-5:]:
                self.console.print(Text.assemble(("          │ ", "dim"), line))

    def result(self, evaluation: Evaluation[Any]) -> None:
        checkpoint, step = evaluation.checkpoint, _step(evaluation.checkpoint)
        tries = f" after {evaluation.attempts} attempts" if evaluation.attempts > 1 else ""
        if evaluation.outcome is Outcome.EVALUATED:
            text = Text.assemble(
                ("✓ ", "green"),
                f"step {step}  {checkpoint.name}  {evaluation.seconds:.2f} s{tries}",
            )
        elif evaluation.outcome is Outcome.FAILED:
            text = Text.assemble(
                ("✗ ", "bold red"),
                f"step {step}  {checkpoint.name}  failed{tries}: {evaluation.error}",
            )
            if isinstance(evaluation.error, CommandFailed):
                self._tail(evaluation.error)
        else:
            text = Text.assemble(
                ("- ", "yellow"), f"step {step}  {checkpoint.name}  deleted before it was evaluated"
            )
        self.console.print(text)

    def __rich__(self) -> Spinner:
        """The live status line (terminals only)."""
        evaluator, runner = self.evaluator, self.runner
        if evaluator is None or runner is None:
            return self._spinner
        stats = evaluator.statistics()
        event = self._last
        if isinstance(event, Evaluating):
            started = runner.started_at
            took = f" {MONOTONIC.now() - started:.1f} s" if started is not None else ""
            doing = f"evaluating step {_step(event.checkpoint)} (attempt {event.attempt}){took}"
        elif isinstance(event, CheckpointFound):
            doing = f"found step {_step(event.checkpoint)}"
        elif isinstance(event, Waiting) and event.missing:
            doing = f"waiting for {self.config.directory} to appear (it does not exist yet)"
        elif stats.done_seen:
            doing = "training is done: evaluating what is left"
        else:
            doing = f"waiting for checkpoints ({stats.follower.mode})"
        counts = f"{stats.evaluated} evaluated, {stats.failed} failed, {stats.retries} retried"
        self._spinner.update(text=Text(f"{doing} · {counts}", style="cyan"))
        return self._spinner


def follow(config: FollowConfig, console: Console) -> int:
    """Run ``tickwork follow``; print to ``console``; return the exit status."""
    stop = threading.Event()
    policy = config.retry
    try:
        reporter = _Reporter(console, config, policy, stop)
        runner = CommandRunner(
            config.command,
            config.directory,
            stop=stop,
            timeout=config.command_timeout,
            on_line=reporter.line,
            on_attempt_failed=reporter.attempt_failed,
        )
        evaluator: SidecarEvaluator[Any] = SidecarEvaluator(
            config.directory,
            runner,
            stop=stop,
            on_progress=reporter.progress,
            name=thread_name(f"follow ({config.directory})"),
            options=config.follow,
            max_attempts=policy.max_attempts,
            backoff=policy.backoff,
            backoff_factor=policy.backoff_factor,
            backoff_max=policy.backoff_max,
            **config.options,
        )
    except (ValueError, TypeError, OSError, ImportError) as exc:
        console_for(stderr=True, soft_wrap=True).print(
            Text.assemble(("tickwork follow: ", "bold red"), one_line(exc))
        )
        return EXIT_USAGE
    reporter.evaluator, reporter.runner = evaluator, runner
    console.print(
        Text.assemble(
            ("following ", "bold"),
            config.directory,
            " → ",
            " ".join(config.command),
            ("  (Ctrl-C to stop)", "dim"),
        )
    )
    quiet_filter = _QuietCommandErrors()
    loop_logger = logging.getLogger(_LOOP_LOGGER)
    if config.verbose == 0:
        loop_logger.addFilter(quiet_filter)
    try:
        with stop_on_signals(stop) as signals:
            if console.is_terminal:
                with Live(reporter, console=console, refresh_per_second=8, transient=True):
                    stats = evaluator.run()
            else:
                stats = evaluator.run()
    finally:
        loop_logger.removeFilter(quiet_filter)
    status = exit_status(stats, [int(s) for s in signals.received])
    _summary(console, config, evaluator, stats, status, signals.received)
    return status


def _summary(
    console: Console,
    config: FollowConfig,
    evaluator: SidecarEvaluator[Any],
    stats: SidecarStats,
    status: int,
    received: Sequence[signal.Signals],
) -> None:
    ending = _ending(config, stats, received)
    missing = _missing(config, stats)
    table = Table(title="tickwork follow", show_header=False)
    table.add_row("directory", config.directory + (" (does not exist)" if missing else ""))
    table.add_row("command", " ".join(config.command))
    table.add_row("ended", ending)
    table.add_row("evaluated", str(stats.evaluated))
    table.add_row("failed", str(stats.failed))
    table.add_row("retries", str(stats.retries))
    table.add_row("skipped (--newest-only)", str(stats.skipped))
    table.add_row("deleted before evaluated", str(stats.deleted_before_reached))
    table.add_row("interrupted", str(stats.interrupted))
    table.add_row("last step", "-" if stats.last_step is None else str(stats.last_step))
    table.add_row("exit status", str(status))
    console.print(table)
    failed = [e for e in evaluator.results() if e.outcome is Outcome.FAILED]
    for evaluation in failed[:20]:
        console.print(
            Text.assemble(
                ("failed: ", "bold red"),
                f"step {_step(evaluation.checkpoint)} {evaluation.checkpoint.path}: "
                f"{evaluation.error}",
            )
        )
    style = "bold green" if status == EXIT_OK else "bold red"
    console.print(Text.assemble(("ended: ", style), f"{ending} (exit status {status})"))


def _ending(config: FollowConfig, stats: SidecarStats, received: Sequence[signal.Signals]) -> str:
    """Why the run ended and what was left undone, as the last line says it: "every checkpoint
    was evaluated" only when none failed and none was deleted first."""
    reason = stats.end_reason
    ending = _ENDINGS.get(reason, str(reason)) if reason is not None else "?"
    if received:
        ending = f"stopped by {received[0].name}"
    elif reason is EndReason.DONE:
        if not (stats.failed or stats.deleted_before_reached):
            ending += " and every checkpoint was evaluated"
        if config.options.get("done_marker"):
            ending += f"; {_training_end(config)}"
    if stats.failed and reason is not EndReason.FAILED:
        ending += f"; {_count(stats.failed, 'checkpoint')} failed every attempt"
    if stats.deleted_before_reached:
        ending += f"; {_count(stats.deleted_before_reached, 'checkpoint')} deleted before evaluated"
    missing = _missing(config, stats)
    if missing:
        ending += f"; {missing}"
    return ending


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _missing(config: FollowConfig, stats: SidecarStats) -> str:
    """What the summary says of a directory missing at the end ("" when it is there)."""
    if not stats.follower.missing:
        return ""
    if stats.follower.scans == 0:
        return f"nothing was found: the directory {config.directory} never appeared"
    return f"the directory {config.directory} is gone"


def _training_end(config: FollowConfig) -> str:
    """How training ended, as its done marker says."""
    options = config.options
    try:
        end = read_training_end(
            config.directory,
            options["done_marker"],
            storage_options=config.follow.storage_options,
        )
    except Exception as exc:  # the run is over; a marker that cannot be read is reported, not fatal
        return f"the done marker could not be read ({type(exc).__name__}: {exc})"
    return "the done marker is gone" if end is None else end.describe()
