"""The ``tickwork`` command line (needs the ``cli`` extra: click and rich)."""

from __future__ import annotations

import signal
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tickwork`` script."""
    try:
        from ._app import cli
    except ImportError as exc:  # click or rich missing
        sys.stderr.write(
            f"tickwork's command line needs the 'cli' extra ({exc.name} is missing): "
            "pip install 'tickwork[cli]'\n"
        )
        return 2
    import click

    try:
        return int(cli.main(args=argv, prog_name="tickwork", standalone_mode=False) or 0)
    except click.ClickException as exc:  # bad usage: the message, not a traceback
        exc.show()
        if isinstance(exc, click.NoSuchOption) and not exc.possibilities:
            # An option no sub-command knows is most often the command's own, given without --.
            sys.stderr.write("Hint: put -- before the command and its options: DIR -- CMD ARGS\n")
        return exc.exit_code
    except click.Abort:  # Ctrl-C that reached Python's KeyboardInterrupt
        sys.stderr.write("Aborted.\n")
        return 128 + signal.SIGINT
