"""The tuner driving the real multi-step runners (JAX on CPU, PyTorch eager on CPU): the contract
StepsPerExecutionTuner(runner.counter, runner.spe, candidates=runner.candidates) end to end.

Real training and the real clock: assertions are about what the tuner did (values, warm-ups,
consistency), never about how fast this machine is; each run is bounded by a generous deadline.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import pytest

from tickwork import StepsPerExecutionTuner

DEADLINE_SECONDS = 90.0  # real time allowed for the tuner to make two probes; needs ~3 s here


def drive(runner: Any, tuner: StepsPerExecutionTuner) -> int:
    """Train with the runner until the tuner has probed twice (or the deadline); return steps."""
    steps = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    with tuner:
        while time.monotonic() < deadline:
            steps += runner.run()
            probes = [r for r in tuner.history.records() if r.decision == "probe"]
            if len(probes) >= 2:
                break
    runner.sync()
    return steps


def changes(records: Any) -> list[int]:
    """The values the tuner assigned, in order (its decisions, not the windows after them)."""
    decided = ("probe", "settle", "retune", "clamp")
    return [r.next_spe for r in records if r.decision in decided and r.next_spe != r.spe]


def check_contract(runner: Any, tuner: StepsPerExecutionTuner, steps: int) -> None:
    records = tuner.history.records()
    assigned = changes(records)
    assert len([r for r in records if r.decision == "probe"]) >= 2, tuner.history.to_csv()
    # Every value the tuner assigned is one the runner compiles as a single call.
    assert assigned
    assert set(assigned) <= set(runner.candidates)
    # After each change, windows are discarded (the call in flight at the old value, then a
    # warm-up window holding the compilation) before any counts as evidence. A compilation that
    # takes longer than 4 ticks (a loaded machine) leaves a gap in the counter: its window is
    # discarded as a pause, which takes precedence over warm-up.
    for change in (r for r in records if r.decision == "probe"):
        after = [r for r in records if r.time > change.time]
        evidence = next((i for i, r in enumerate(after) if r.decision != "discard"), len(after))
        if evidence < len(after):
            discarded = after[:evidence]
            assert any("(warmup)" in r.reason or "(pause)" in r.reason for r in discarded), (
                tuner.history.to_csv()
            )
    # The runner counted every step it ran, and compiled each value the tuner chose (the last
    # one may not have run yet when the loop ended).
    assert runner.counter() == steps
    assert set(assigned[:-1]) <= set(runner.compile_log.compiled())
    tuner.raise_errors()


@pytest.mark.jax
@pytest.mark.slow
def test_tuner_drives_the_jax_runner() -> None:
    """On real JAX the tuner climbs from spe 1 through the runner's powers of two, discards the
    compilation window after each change, and the runner's counter stays exact."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    from tickwork.integrations.jax import MultiStepRunner

    def loss(params: dict[str, Any], x: Any, y: Any) -> Any:
        logits = jax.nn.relu(x @ params["w1"]) @ params["w2"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    def step(params: dict[str, Any], batch: Any) -> tuple[dict[str, Any], Any]:
        value, grads = jax.value_and_grad(loss)(params, *batch)
        return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads), value

    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.normal(size=(32, 64)) * 0.1, jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(64, 10)) * 0.1, jnp.float32),
    }
    data = [
        (rng.random((64, 32), dtype=np.float32), rng.integers(0, 10, 64).astype(np.int32))
        for _ in range(32)
    ]
    runner = MultiStepRunner(step, params, itertools.cycle(data), max_spe=32)
    tuner = StepsPerExecutionTuner(runner.counter, runner.spe, candidates=runner.candidates)
    check_contract(runner, tuner, drive(runner, tuner))


@pytest.mark.torch
@pytest.mark.slow
def test_tuner_drives_the_torch_runner() -> None:
    """Same contract with PyTorch's eager runner (what runs on a CPU)."""
    torch = pytest.importorskip("torch")
    from tickwork.integrations.torch import MultiStepRunner

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(batch: tuple[Any, Any]) -> Any:
        x, y = batch
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(model(x), y)
        value.backward()
        optimizer.step()
        return value.detach()

    data = [(torch.randn(64, 32), torch.randint(0, 10, (64,))) for _ in range(32)]
    runner = MultiStepRunner(step, itertools.cycle(data), mode="eager", max_spe=32)
    tuner = StepsPerExecutionTuner(runner.counter, runner.spe, candidates=runner.candidates)
    steps = drive(runner, tuner)
    records = tuner.history.records()
    assigned = changes(records)
    assert len([r for r in records if r.decision == "probe"]) >= 2, tuner.history.to_csv()
    assert set(assigned) <= set(runner.candidates)
    assert runner.counter() == steps
    tuner.raise_errors()
