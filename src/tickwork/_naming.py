"""Names for the threads tickwork starts, so a thread dump says who started what."""

from __future__ import annotations

__all__ = ["callable_name"]


def callable_name(fn: object) -> str:
    """``Trainer.log`` for a method, ``report`` for a function (local-scope prefixes dropped)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return str(name).rsplit("<locals>.", 1)[-1]
