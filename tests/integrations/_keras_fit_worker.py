"""A Keras 3 fit() (torch backend) in its own process, for the TickworkCallback tests:
``complete``, ``raise`` (an uncaught exception at batch 5: the error path goes through
sys.excepthook) or ``sigterm`` (waits at batch 5 for the test's SIGTERM).
Prints what the callback did as JSON when fit() returns."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

os.environ["KERAS_BACKEND"] = "torch"

import keras
import numpy as np

from tickwork.integrations.keras import TickworkCallback


class Pace(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises at batch 5 (``raise``) or waits there for SIGTERM (``sigterm``), bounded."""

    def __init__(self, mode: str, ready: str | None) -> None:
        super().__init__()
        self.mode = mode
        self.ready = ready
        self.sigterm = False

    def on_train_batch_begin(self, batch: int, logs: object = None) -> None:
        if batch != 4:
            return
        if self.mode == "raise":
            raise ValueError("loss is nan")
        if self.mode == "sigterm" and self.ready is not None:
            with open(self.ready, "w") as file:
                file.write("ready")
            limit = time.monotonic() + 60.0
            while not self.sigterm and time.monotonic() < limit:
                time.sleep(0.01)  # a test worker waiting for the test's signal, bounded


def main() -> None:
    mode, run_dir = sys.argv[1], sys.argv[2]
    ready = sys.argv[3] if len(sys.argv) > 3 else None
    pace = Pace(mode, ready)
    calls: list[int] = []

    def before(signum: int, frame: object) -> None:
        calls.append(signum)
        pace.sigterm = True

    signal.signal(signal.SIGTERM, before)
    hook = sys.excepthook
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    checkpointing = keras.callbacks.ModelCheckpoint(f"{run_dir}/model-{{batch}}.keras", save_freq=2)
    callback = TickworkCallback(model_checkpoint=checkpointing, save_deadline=30.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 1))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[pace, checkpointing, callback])
    print(
        json.dumps(
            {
                "before_calls": calls,
                "handler_restored": signal.getsignal(signal.SIGTERM) is before,
                "excepthook_restored": sys.excepthook is hook,
                "final_checkpoint": callback.final_checkpoint,
                "stopped": callback.stopped,
                "stop_training": model.stop_training,
            }
        )
    )


if __name__ == "__main__":
    main()
