"""The demo's settings, apart from the demo itself: the command line reads their defaults without
importing numpy (the ``demo`` extra), which only ``tickwork demo`` needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoConfig"]


@dataclass(frozen=True)
class DemoConfig:
    steps: int = 40000
    seed: int = 0
    batch: int = 128
    report_every: float = 1.0
    checkpoint_every: int = 4000
    loaders: int = 2
    workdir: Path | None = None
    inject_failure: str | None = None
