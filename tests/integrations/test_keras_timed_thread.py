"""The seed's example: a TimedThread that is also a keras.callbacks.Callback, in model.fit(),
with real Keras 3 on each backend (a fresh interpreter per backend: Keras picks it at import)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np
    import keras
    import tickwork

    # Exactly the shape of the seed's LogThreadCallback; only the import changed.
    class LogThreadCallback(tickwork.TimedThread, keras.callbacks.Callback):
        def __init__(self, interval):
            self._epoch = 0
            self._batches_done = 0
            self.seen = []          # optimizer iterations observed from the timed thread
            self.observed = threading.Event()
            tickwork.TimedThread.__init__(self, interval)
            keras.callbacks.Callback.__init__(self)

        def on_interval(self):
            if keras.backend.backend() == "jax":
                # Keras 3 on JAX: the Callback.model property runs jax_state_sync(), which must
                # not run beside the train step (its buffers are donated). Read only what the
                # callback methods recorded.
                iterations = self._batches_done
            else:
                model = self.model
                if model is None or model.optimizer is None:
                    return
                iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            self.seen.append((self._epoch, iterations))
            if iterations > 0:
                self.observed.set()

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self._batches_done = getattr(self, "_batches_done", 0) + 1
            # Hold training until the timed thread has seen it progress (bounded), so the
            # test does not depend on how fast this machine trains.
            if batch == 2 and self._epoch == 1:
                assert self.observed.wait(60), "on_interval never observed training"

    inputs = keras.Input(shape=(784,))
    x = keras.layers.Dense(64, activation="relu")(inputs)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    data = rng.random((640, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 640)

    with LogThreadCallback(interval=0.01) as thread_callback:
        assert thread_callback.is_alive()
        model.fit(data, labels, batch_size=64, epochs=2, verbose=0, callbacks=[thread_callback])
    assert not thread_callback.is_alive(), "the with block must leave the thread stopped"
    thread_callback.raise_errors()
    assert any(it > 0 for _, it in thread_callback.seen), thread_callback.seen
    assert thread_callback._epoch == 1
    stats = thread_callback.statistics()
    assert stats.calls >= len(thread_callback.seen) and stats.errors == 0
    print("ok", keras.backend.backend(), stats.calls)
    """
)


@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("tensorflow", marks=pytest.mark.tensorflow),
        pytest.param("jax", marks=pytest.mark.jax),
        pytest.param("torch", marks=pytest.mark.torch),
    ],
)
def test_timed_thread_mixes_with_a_keras_callback_in_fit(backend: str) -> None:
    """The seed's TimedThread + Callback subclass runs beside model.fit() and stops cleanly."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok {backend}" in result.stdout
