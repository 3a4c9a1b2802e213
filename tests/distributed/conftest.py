"""Fixtures for the multi-process tests: jobs that are always killed at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed._dist_harness import Job
else:  # pytest runs them with this folder on sys.path
    from _dist_harness import Job


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Callable[..., Job]]:
    """job(launcher, world, scenario=..., ...) starts the ranks; all are killed at teardown."""
    jobs: list[Job] = []

    def start(launcher: str, world: int, **cfg: Any) -> Job:
        out = tmp_path / f"job{len(jobs)}"
        out.mkdir()
        j = Job(launcher, world, out, **cfg)
        jobs.append(j)
        return j.start()

    try:
        yield start
    finally:
        for j in jobs:
            j.kill()
