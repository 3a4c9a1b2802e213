"""Ranks on separate simulated machines (network namespaces joined by a bridge), the store reached
through a relay that adds a one-way delay: a stop still reaches every rank, across the links.

How fast is the business of benchmarks/distributed_netns.py (figures in benchmarks/RESULTS.md);
here only what must hold whatever the load: every rank sees every stop, and the relay really
delays (a store round trip through it takes at least two one-way delays).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # mypy names this folder's modules from the repository root
    from tests.distributed._netns import Network, available, run_latency_job
else:  # the tests run with this folder on sys.path
    from _netns import Network, available, run_latency_job

pytest.importorskip("torch.distributed")

pytestmark = [pytest.mark.distributed, pytest.mark.torch, pytest.mark.timeout(240)]

DELAY = 0.02  # seconds, one way


@pytest.fixture
def network() -> Iterator[Network]:
    reason = available()
    if reason is not None:
        pytest.skip(reason)
    with Network(3) as net:
        yield net


def test_a_stop_crosses_the_delayed_links_to_every_rank(network: Network, tmp_path: Path) -> None:
    """3 ranks on 3 namespaces, 20 ms each way to the store: every stop of 4 rounds reaches
    every rank, and never sooner than the two one-way delays the relay imposes."""
    results = run_latency_job(network, tmp_path, world=3, rounds=4, delay=DELAY)
    for r in results.values():
        assert "crash" not in r, r["crash"]
    for i in range(4):
        rounds = [results[r]["rounds"][i] for r in range(3)]
        stopper = rounds[0]["stopper"]
        began = results[stopper]["rounds"][i]["began"]
        assert began is not None
        for rank, seen in enumerate(rounds):
            assert seen["seen"] is not None, f"rank {rank} never saw stop {i}"
        # The non-host, non-stopping rank hears of it through the relay twice (set, wake-up).
        other = ({1, 2} - {stopper}).pop()
        assert rounds[other]["seen"] - began >= 2 * DELAY * 0.95
