"""The click application: one sub-command per job."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from rich.text import Text

from ._console import console as console_for
from ._demo_config import DemoConfig
from ._follow import follow_command

__all__ = ["cli"]


class _MissingExtra(click.ClickException):
    """A sub-command whose extra is not installed: one line naming it, exit status 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-v: info, -vv: debug).")
@click.version_option(package_name="tickwork")
def cli(verbose: int) -> None:
    """tickwork: the work that runs beside a training loop."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


@cli.command()
@click.option(
    "--steps",
    default=DemoConfig.steps,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training steps to run.",
)
@click.option(
    "--checkpoint-every",
    default=DemoConfig.checkpoint_every,
    show_default=True,
    type=click.IntRange(min=1),
    help="Steps between checkpoints.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option(
    "--report-every",
    default=DemoConfig.report_every,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between progress reports.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the checkpoints and the tuner's history (CSV, PNG) here (default: a temporary "
    "directory, removed at the end).",
)
@click.option(
    "--inject-failure",
    type=click.Choice(["loader", "report", "evaluator"]),
    default=None,
    hidden=True,
    help="Make one part fail, to show (and test) the error path.",
)
def demo(
    steps: int,
    checkpoint_every: int,
    seed: int,
    report_every: float,
    workdir: Path | None,
    inject_failure: str | None,
) -> int:
    """Train a small numpy model with all of tickwork around it; exit 1 if anything failed."""
    console = console_for(stderr=False)
    config = DemoConfig(
        steps=steps,
        checkpoint_every=checkpoint_every,
        seed=seed,
        report_every=report_every,
        workdir=workdir,
        inject_failure=inject_failure,
    )
    try:
        # numpy (the `demo` extra) is imported here only: every other command starts without it.
        from ._demo import run_demo
    except ImportError as exc:
        raise _MissingExtra(
            f"tickwork demo needs the 'demo' extra ({exc.name} is missing): "
            "pip install 'tickwork[cli,demo]'"
        ) from exc
    result = run_demo(config, console)
    if not result.ok:
        console.print(Text.assemble(("demo failed: ", "bold red"), "; ".join(result.failures)))
        sys.exit(1)
    console.print(Text("demo ok", style="bold green"))
    return 0


cli.add_command(follow_command)
