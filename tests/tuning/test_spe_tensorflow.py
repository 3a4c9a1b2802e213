"""The seed's own custom training loop, unchanged, with real TensorFlow and Keras 3.

A tf.Variable for steps-per-execution, a Keras optimizer as the step counter, a tf.function that
runs that many steps with tf.range: the tuner must work there as tf_keras's does, and keep tuning
after a stop() and start().
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tickwork import StepsPerExecutionTuner

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")


def _seed_loop() -> tuple[Any, Any, Callable[[], None]]:
    """The example of tf_keras's StepsPerExecutionTuner docs (MNIST shapes, random data)."""
    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = keras.layers.Dense(10, name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    optimizer = keras.optimizers.SGD(learning_rate=1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(0)
    x_train = rng.random((4096, 784), dtype=np.float32)
    y_train = rng.integers(0, 10, 4096)
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).repeat().batch(64)
    iterator = iter(dataset)
    steps_per_execution = tf.Variable(
        1, dtype="int64", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
    )

    function: Callable[[Callable[..., None]], Callable[..., None]] = tf.function  # a typed edge

    @function
    def step_fn(iterator: Any) -> None:
        batch_data, labels = next(iterator)
        with tf.GradientTape() as tape:
            logits = model(batch_data, training=True)
            loss_value = loss_fn(labels, logits)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))

    @function
    def multi_step_train_fn(iterator: Any, steps_per_execution: Any) -> None:
        for _ in tf.range(steps_per_execution):
            step_fn(iterator)

    def train_once() -> None:
        multi_step_train_fn(iterator, steps_per_execution)

    return optimizer, steps_per_execution, train_once


def _train_until(
    tuner: StepsPerExecutionTuner, train: Callable[[], None], done: Callable[[], bool], limit: float
) -> list[int]:
    """Call the training function until ``done()`` or ``limit`` real seconds; returns the spe
    values seen between calls."""
    seen = []
    deadline = time.monotonic() + limit
    while not done() and time.monotonic() < deadline:
        train()
        seen.append(int(tuner.steps_per_execution.numpy()))
    return seen


def test_seed_training_loop_is_tuned_and_restartable() -> None:
    """In the seed's loop the tuner raises spe from 1 in powers of two, keeps the variable's
    int64 dtype, raises nothing, and after stop() and start() measures and decides again."""
    optimizer, steps_per_execution, train_once = _seed_loop()
    train_once()  # trace once, as a warm loop would be
    tuner = StepsPerExecutionTuner(optimizer, steps_per_execution)
    assert tuner.steps_per_execution is steps_per_execution
    start_iterations = int(optimizer.iterations.numpy())

    def decisions() -> int:
        return sum(r.decision in ("probe", "settle") for r in tuner.history.records())

    tuner.start()
    try:
        seen = _train_until(tuner, train_once, lambda: decisions() >= 2, limit=60.0)
    finally:
        assert tuner.stop(timeout=30)
    assert decisions() >= 2, tuner.history.to_csv()
    assert max(seen) > 1
    assert set(seen) <= {1 << k for k in range(17)}
    assert steps_per_execution.dtype == tf.int64
    assert int(optimizer.iterations.numpy()) - start_iterations >= len(seen)
    assert tuner.errors == ()

    # The anchor never tunes again after its first stop(); this one does.
    before = len(tuner.history)
    tuner.start()
    try:

        def estimates_after_restart() -> int:
            later = tuner.history.records()[before:]
            return sum(r.decision in ("probe", "settle", "stay", "retune") for r in later)

        _train_until(tuner, train_once, lambda: estimates_after_restart() >= 1, limit=60.0)
    finally:
        assert tuner.stop(timeout=30)
    later = tuner.history.records()[before:]
    assert later[0].decision == "start"
    assert any(r.decision in ("probe", "settle", "stay", "retune") for r in later)
    assert tuner.errors == ()


def test_keras_variable_as_the_target() -> None:
    """A Keras 3 Variable is an spe target: the tuner reads it and assigns to it."""
    variable = keras.Variable(1, dtype="int64", trainable=False)
    count = {"steps": 0}
    tuner = StepsPerExecutionTuner(
        lambda: count["steps"], variable, min_spe=2, candidates=(2, 4, 8)
    )
    tuner.start()
    assert tuner.stop(timeout=30)
    assert int(variable.numpy()) == 2  # 1 is below min_spe: the smallest candidate is assigned
    assert tuner.current_spe == 2
