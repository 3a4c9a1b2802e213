"""tickwork.integrations.jax.MultiStepRunner on real JAX (CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from tickwork._tuning._spe import StepsPerExecution  # noqa: E402
from tickwork.integrations import SpeRunner  # noqa: E402
from tickwork.integrations.jax import MultiStepRunner  # noqa: E402
from tickwork.testing import FakeClock  # noqa: E402

pytestmark = pytest.mark.jax

Batch = tuple[np.ndarray, np.ndarray]


def _loss(params: dict[str, Any], x: Any, y: Any) -> Any:
    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def _train_step(params: dict[str, Any], batch: Batch) -> tuple[dict[str, Any], Any]:
    loss, grads = jax.value_and_grad(_loss)(params, *batch)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss


def _params() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {
        "w1": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
        "b1": jnp.zeros(16, jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
    }


def _batches(count: int, size: int = 4, seed: int = 0) -> list[Batch]:
    rng = np.random.default_rng(seed)
    return [
        (rng.random((size, 8), dtype=np.float32), rng.integers(0, 3, size).astype(np.int32))
        for _ in range(count)
    ]


def _one_step_at_a_time(batches: list[Batch]) -> tuple[dict[str, Any], Any]:
    step = jax.jit(_train_step)
    params, loss = _params(), None
    for batch in batches:
        params, loss = step(params, batch)
    return params, loss


def _assert_same_params(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-6, atol=1e-6)


class TestResults:
    @pytest.mark.parametrize("spe", [1, 4, 13])
    def test_n_steps_per_call_give_the_params_of_n_single_steps(self, spe: int) -> None:
        """Any spe (a candidate or a decomposed one) trains like one jitted step per call."""
        batches = _batches(26)
        runner = MultiStepRunner(_train_step, _params(), batches, max_spe=8, spe=spe)
        while runner.run():
            pass
        expected, last_loss = _one_step_at_a_time(batches)
        _assert_same_params(runner.state, expected)
        np.testing.assert_allclose(float(runner.output), float(last_loss), rtol=1e-6)

    def test_changing_spe_between_calls_changes_the_next_call_only(self) -> None:
        """run() reads spe at each call; the params still match single steps."""
        batches = _batches(20)
        spe = StepsPerExecution(2)
        runner = MultiStepRunner(_train_step, _params(), batches, max_spe=8, spe=spe)
        assert runner.spe is spe
        ran = [runner.run()]
        spe.assign(8)
        ran.append(runner.run())
        spe.assign(3)
        ran += [runner.run(), runner.run(), runner.run()]
        assert ran == [2, 8, 3, 3, 3]
        _assert_same_params(runner.state, _one_step_at_a_time(batches[:19])[0])

    def test_a_short_last_batch_runs_in_a_call_of_its_own_shape(self) -> None:
        """A batch of another shape is compiled for its own shape instead of failing to stack."""
        batches = [*_batches(5, size=4), *_batches(1, size=2, seed=9)]
        runner = MultiStepRunner(_train_step, _params(), batches, max_spe=8, spe=8)
        assert runner.run() == 6
        _assert_same_params(runner.state, _one_step_at_a_time(batches)[0])
        signatures = {record.signature for record in runner.compile_log.records}
        assert len(signatures) == 2


class TestCounting:
    def test_counter_trails_by_at_most_the_calls_in_flight(self) -> None:
        """counter() counts finished calls: at most max_in_flight calls behind; sync() settles."""
        runner = MultiStepRunner(_train_step, _params(), _batches(12), max_spe=8, spe=5)
        assert runner.counter() == 0
        assert runner.run() == 5  # calls of 4 and 1
        assert runner.steps_dispatched == 5
        assert runner.counter() in (0, 4, 5)  # 0 only if both calls are still queued
        assert runner.run() == 5
        assert runner.steps_dispatched == 10
        assert runner.counter() in (5, 9, 10)  # the two calls of the first run() are done
        runner.sync()
        assert runner.counter() == runner.steps_dispatched == 10
        assert runner.run() == 2
        assert runner.run() == 0
        runner.sync()
        assert runner.counter() == 12

    def test_with_no_call_in_flight_the_counter_is_exact_after_each_run(self) -> None:
        """max_in_flight=0 waits for every call, so counter() == steps_dispatched at all times."""
        runner = MultiStepRunner(
            _train_step, _params(), _batches(12), max_spe=8, spe=5, max_in_flight=0
        )
        while runner.run():
            assert runner.counter() == runner.steps_dispatched
        assert runner.counter() == 12

    def test_max_steps_bounds_a_call(self) -> None:
        """max_steps (e.g. steps left in an epoch) caps the call; 0 runs nothing."""
        runner = MultiStepRunner(_train_step, _params(), _batches(10), max_spe=8, spe=8)
        assert runner.run(max_steps=3) == 3
        assert runner.run(max_steps=0) == 0
        assert runner.run() == 7
        runner.sync()
        assert runner.counter() == 10


class TestCompilation:
    def test_each_size_is_traced_and_compiled_once(self) -> None:
        """Repeated calls reuse the compiled sizes: no retracing, whatever spe decomposes into."""
        traces = 0

        def counting_step(params: dict[str, Any], batch: Batch) -> tuple[dict[str, Any], Any]:
            nonlocal traces
            traces += 1  # runs only while JAX traces
            return _train_step(params, batch)

        runner = MultiStepRunner(counting_step, _params(), _batches(80), max_spe=8, spe=13)
        runner.run()
        assert runner.compile_log.compiled() == (1, 4, 8)
        traced, records = traces, len(runner.compile_log.records)
        for _ in range(4):
            runner.run()
        runner.sync()
        assert runner.counter() == 65
        assert traces == traced
        assert len(runner.compile_log.records) == records == 3

    def test_precompile_pays_every_candidate_before_training(self) -> None:
        """precompile() compiles every candidate from a peeked batch, consuming none."""
        batches = _batches(9)
        runner = MultiStepRunner(_train_step, _params(), batches, max_spe=4)
        records = runner.precompile()
        assert [r.spe for r in records] == [1, 2, 4]
        assert all(r.seconds >= 0 for r in records)
        assert runner.precompile([3]) == ()  # 3 = 2 + 1, both already compiled
        runner.spe.assign(4)
        while runner.run():
            pass
        runner.sync()
        assert runner.counter() == 9
        assert len(runner.compile_log.records) == 3
        _assert_same_params(runner.state, _one_step_at_a_time(batches)[0])

    def test_records_carry_the_runners_clock(self) -> None:
        """Compile records are stamped with the runner's clock, so windows can be matched."""
        clock = FakeClock(start=100.0)
        runner = MultiStepRunner(_train_step, _params(), _batches(2), spe=2, clock=clock)
        runner.run()
        [record] = runner.compile_log.records
        assert (record.spe, record.started, record.seconds) == (2, 100.0, 0.0)
        assert runner.compile_log.seconds_by_spe() == {2: 0.0}

    def test_precompile_without_batches_says_why(self) -> None:
        """precompile() on an empty source is a ValueError naming the problem."""
        runner = MultiStepRunner(_train_step, _params(), [])
        with pytest.raises(ValueError, match="'batches' is empty"):
            runner.precompile()


class TestContract:
    def test_offers_what_the_tuner_needs(self) -> None:
        """counter is a zero-argument callable returning an int; spe a holder; candidates rise."""
        runner = MultiStepRunner(_train_step, _params(), _batches(1), max_spe=100)
        assert isinstance(runner, SpeRunner)
        assert isinstance(runner.counter(), int)
        assert isinstance(runner.spe, StepsPerExecution)
        assert runner.candidates == (1, 2, 4, 8, 16, 32, 64)

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"max_spe": 0}, ValueError, "'max_spe' must be an int >= 1; got 0"),
            ({"spe": 0}, ValueError, "'spe' must be an int >= 1; got 0"),
            ({"unroll": 0}, ValueError, "'unroll' must be an int >= 1; got 0"),
            ({"max_in_flight": -1}, ValueError, "'max_in_flight' must be an int >= 0; got -1"),
            ({"donate_state": "yes"}, TypeError, "'donate_state' must be None or a bool"),
        ],
    )
    def test_bad_arguments_are_named(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Each bad argument is refused with its name, the rule and the value."""
        with pytest.raises(error, match=message):
            MultiStepRunner(_train_step, _params(), [], **kwargs)

    def test_bad_step_fn_batches_and_max_steps_are_named(self) -> None:
        """A non-callable step, a non-iterable source and a negative max_steps are refused."""
        with pytest.raises(TypeError, match="'step_fn' must be a callable"):
            MultiStepRunner(42, _params(), [])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'batches' must be an iterable"):
            MultiStepRunner(_train_step, _params(), 42)  # type: ignore[arg-type]
        runner = MultiStepRunner(_train_step, _params(), _batches(1))
        with pytest.raises(ValueError, match="'max_steps' must be an int >= 0; got -1"):
            runner.run(max_steps=-1)
