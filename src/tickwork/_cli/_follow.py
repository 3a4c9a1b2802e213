"""The ``tickwork follow`` sub-command: its options, mapped onto :class:`SidecarEvaluator`'s
arguments (the running and reporting are :mod:`._follow_run`'s)."""

from __future__ import annotations

import math
from typing import Any

import click
from click.core import ParameterSource
from rich.text import Text

from .. import CheckpointPattern, FollowOptions, Layout, Watch
from .._checkpoints._sidecar_policy import RetryPolicy
from ._command import check_program
from ._console import console as console_for
from ._follow_run import EXIT_USAGE, FollowConfig, follow, one_line, parse_storage_options

__all__ = ["follow_command"]

# Every default is the library's: the follower's record and the evaluator's retry policy.
_F = FollowOptions(skip_to_latest=False)
_R = RetryPolicy()


class _Number(click.ParamType):  # type: ignore[type-arg]
    """A finite number at or above ``minimum`` (above it with ``open``); a bad value is a usage
    error naming the option (click's FloatRange lets nan and inf through to the library)."""

    name = "number"

    def __init__(self, minimum: float, *, open: bool = False) -> None:
        self.minimum = minimum
        self.open = open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        low = number <= self.minimum if self.open else number < self.minimum
        if not math.isfinite(number) or low:
            rule = f"{'>' if self.open else '>='} {self.minimum:g}"
            self.fail(f"must be a finite number {rule}; got {value!r}", param, ctx)
        return number


_SECONDS = _Number(0)
_POSITIVE_SECONDS = _Number(0, open=True)

EPILOG = """\b
Placeholders in CMD ARGS: {checkpoint} (the path), {step}, {dir}, {name}; with none,
the path is appended. The command also gets TICKWORK_CHECKPOINT, TICKWORK_STEP,
TICKWORK_DIR and TICKWORK_ATTEMPT in its environment. It runs without a shell.

\b
Exit status: 0 every checkpoint evaluated; 1 some checkpoint failed every attempt;
2 bad usage; 3 --stall reached (training seems to have died); 128+N stopped by
signal N (130 SIGINT, 143 SIGTERM). Failures win over a signal, a signal over a stall.

\b
Example:
  tickwork follow runs/a --done-marker DONE --state-file eval.json \\
      -- python eval.py --weights {checkpoint} --step {step}
"""


@click.command(
    "follow",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("directory")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--layout",
    type=click.Choice([layout.value for layout in Layout]),
    default=Layout(_F.layout).value,
    show_default=True,
    help="Checkpoint layout (auto: detected from the first checkpoints).",
)
@click.option(
    "--pattern",
    metavar="REGEX",
    default=None,
    help="A user layout: files whose whole name matches REGEX; the step is its 'step' group.",
)
@click.option(
    "--newest-only",
    is_flag=True,
    help="Evaluate only the newest checkpoint each time (tf_keras's SidecarEvaluator).",
)
@click.option("--done-marker", metavar="NAME", help="End once training writes DIR/NAME.")
@click.option(
    "--stall",
    type=_POSITIVE_SECONDS,
    metavar="SECONDS",
    help="End (exit 3) after this long without a new checkpoint.",
)
@click.option(
    "--timeout",
    type=_SECONDS,
    metavar="SECONDS",
    help="End (exit 0) after this long without a new checkpoint (TensorFlow's timeout).",
)
@click.option(
    "--max-evaluations",
    type=click.IntRange(min=1),
    metavar="N",
    help="End after N checkpoints are finished.",
)
@click.option(
    "--until-step",
    type=int,
    metavar="STEP",
    help="End after the checkpoint at STEP or later (tf_keras's max_evaluations).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=_R.max_attempts,
    show_default=True,
    help="Attempts per checkpoint, the first included.",
)
@click.option(
    "--backoff",
    type=_SECONDS,
    default=_R.backoff,
    show_default=True,
    metavar="SECONDS",
    help="Wait before the second attempt.",
)
@click.option(
    "--backoff-factor",
    type=_Number(1),
    default=_R.backoff_factor,
    show_default=True,
    help="Each further wait is this many times the one before.",
)
@click.option(
    "--backoff-max",
    type=_SECONDS,
    default=_R.backoff_max,
    show_default=True,
    metavar="SECONDS",
    help="The longest wait between attempts.",
)
@click.option(
    "--fail-fast", is_flag=True, help="End (exit 1) when a checkpoint failed every attempt."
)
@click.option(
    "--command-timeout",
    type=_POSITIVE_SECONDS,
    metavar="SECONDS",
    help="Terminate a command running longer; the attempt counts as failed.",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False),
    help="Record progress here; a restart neither repeats nor skips a checkpoint.",
)
@click.option(
    "--watch",
    type=click.Choice([watch.value for watch in Watch]),
    default=_F.watch.value,
    show_default=True,
    help="Local directories: filesystem events or polling (network filesystems).",
)
@click.option(
    "--poll-interval",
    type=_SECONDS,
    default=_F.poll_interval,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between listings when polling (0: back to back, as the library allows); the "
    "done marker is looked for as often.",
)
@click.option(
    "--max-poll-interval",
    type=_POSITIVE_SECONDS,
    metavar="SECONDS",
    help="Ceiling of the remote polling backoff (default: 10 x --poll-interval).",
)
@click.option(
    "--settle",
    type=_SECONDS,
    default=_F.settle_secs,
    show_default=True,
    metavar="SECONDS",
    help="Files whose format cannot be checked count as complete once unchanged this long.",
)
@click.option(
    "--hold", is_flag=True, help="Hard-link each checkpoint so training cannot delete it."
)
@click.option(
    "--storage-options",
    metavar="JSON",
    help='fsspec options for remote directories, e.g. \'{"endpoint_url": "http://..."}\'.',
)
@click.option("-q", "--quiet", is_flag=True, help="Do not show the command's output.")
@click.pass_context
def follow_command(
    ctx: click.Context,
    directory: str,
    command: tuple[str, ...],
    layout: str,
    pattern: str | None,
    newest_only: bool,
    done_marker: str | None,
    stall: float | None,
    timeout: float | None,
    max_evaluations: int | None,
    until_step: int | None,
    max_attempts: int,
    backoff: float,
    backoff_factor: float,
    backoff_max: float,
    fail_fast: bool,
    command_timeout: float | None,
    state_file: str | None,
    watch: str,
    poll_interval: float,
    max_poll_interval: float | None,
    settle: float,
    hold: bool,
    storage_options: str | None,
    quiet: bool,
) -> int:
    """Run CMD ARGS for every checkpoint written to DIRECTORY, in step order.

    Failed commands are retried with backoff; the run ends when training is done (done
    marker), stalls, or on Ctrl-C / SIGTERM. Put -- before the command.
    """
    console = console_for(soft_wrap=True)  # long lines stay whole in logs
    # The default ceiling follows a larger --backoff; one given explicitly is checked as given.
    explicit_max = ctx.get_parameter_source("backoff_max") is not ParameterSource.DEFAULT
    try:
        check_program(command[0])
        chosen: Layout | str | CheckpointPattern = (
            CheckpointPattern(pattern) if pattern is not None else layout
        )
        if pattern is not None and layout != "auto":
            raise ValueError(f"'--pattern' replaces '--layout'; got both ({layout!r})")
        followed = FollowOptions(
            layout=chosen,  # type: ignore[arg-type] # checked (and converted) by the record
            skip_to_latest=newest_only,
            state_file=state_file,
            hold=hold,
            watch=watch,  # type: ignore[arg-type]
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            settle_secs=settle,
            storage_options=parse_storage_options(storage_options),
        )
        retry = RetryPolicy(
            max_attempts,
            backoff,
            backoff_factor,
            backoff_max if explicit_max else max(backoff_max, backoff),
        )
    except (ValueError, TypeError) as exc:
        console_for(stderr=True, soft_wrap=True).print(
            Text.assemble(("tickwork follow: ", "bold red"), one_line(exc))
        )
        return EXIT_USAGE
    options: dict[str, Any] = {
        "done_marker": done_marker,
        "stall_timeout": stall,
        "timeout": timeout,
        "max_evaluations": max_evaluations,
        "until_step": until_step,
        "on_error": "stop" if fail_fast else "continue",
    }
    parent = ctx.parent.params if ctx.parent is not None else {}
    config = FollowConfig(
        directory=directory,
        command=command,
        follow=followed,
        retry=retry,
        options=options,
        quiet=quiet,
        command_timeout=command_timeout,
        verbose=int(parent.get("verbose", 0) or 0),
    )
    return follow(config, console)
