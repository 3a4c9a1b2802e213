"""The consoles the CLI prints through. Markup is off: what tickwork prints (an error message, a
path, a checkpoint's name, a command line, a done marker's text) is data, and rich would read
``[/path/pair.cc:553]`` in it as a closing tag. Styles come from :class:`rich.text.Text`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

__all__ = ["console"]


def console(**options: Any) -> Console:
    """A :class:`rich.console.Console` that prints text as it is (no markup, no highlighting)."""
    return Console(markup=False, highlight=False, **options)
